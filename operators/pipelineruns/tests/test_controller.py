"""The pipeline-run controller against the real API server (Job backend)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock
from kubeforge.operators.pipelineruns.clients.reconciler import RunReconciler
from kubeforge.operators.settings import OperatorSettings
from kubeforge.testing.builders import PipelineRunBuilder, main_pipeline_ir, pipelinerun
from kubeforge.testing.fixtures import Kubectl

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).parents[3] / "manifests" / "examples"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
SETTINGS = OperatorSettings(
    image="registry.example/kubeforge:test", tracking_uri="http://mlflow.kf:5000"
)


def _reconciler(api_client: Any) -> tuple[RunReconciler, ManualClock]:
    clock = ManualClock(NOW)
    return RunReconciler(api_client, SETTINGS, clock), clock


def _get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    out = kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def _jobs(api_client: Any, namespace: str) -> list[Any]:
    from kubernetes import client

    return list(client.BatchV1Api(api_client).list_namespaced_job(namespace).items)


def _events(kubectl: Kubectl, namespace: str, name: str) -> str:
    return kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
        "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
    ).stdout  # fmt: skip


def _set_job_status(api_client: Any, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Play the Job controller: write the Job's status as it would."""
    from kubernetes import client

    client.BatchV1Api(api_client).patch_namespaced_job_status(name, namespace, {"status": status})


def test_applied_examples_run_as_exactly_one_job_whose_status_the_run_follows(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str
) -> None:
    from kubernetes import client

    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    reconciler, clock = _reconciler(api_client)
    reconciler.reconcile_pipeline(_get(kubectl, "pipeline", "digits", namespace))
    status = _get(kubectl, "pipeline", "digits", namespace)["status"]
    assert status["phase"] == "Ready"
    assert {"name": "data_uri", "type": "STRING", "required": True} in status["parameters"]

    run = _get(kubectl, "pipelinerun", "digits-1", namespace)
    reconciler.reconcile_run(run)
    for _ in range(2):  # a repeated reconcile, and a restarted operator with no status yet
        reconciler.reconcile_run(_get(kubectl, "pipelinerun", "digits-1", namespace))
        reconciler.reconcile_run(run)
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))  # re-applying changes nothing
    reconciler.reconcile_run(_get(kubectl, "pipelinerun", "digits-1", namespace))

    jobs = _jobs(api_client, namespace)
    assert [j.metadata.name for j in jobs] == ["digits-1"]
    container = jobs[0].spec.template.spec.containers[0]
    assert container.image == "registry.example/kubeforge:test"
    assert container.args[:2] == ["run", "/etc/kubeforge/pipeline/pipeline.yaml"]
    args = " ".join(container.args)
    # The Pipeline's defaults, overridden by the run's own values, typed as the pipeline declares.
    assert "-p data_uri=s3://my-team-data/digits/digits.csv" in args
    assert "-p epochs=10" in args and "-p gold_budget=0.05" in args
    assert "--experiment digits" in args
    assert {e.name: e.value for e in container.env}["MLFLOW_TRACKING_URI"] == SETTINGS.tracking_uri
    ir = client.CoreV1Api(api_client).read_namespaced_config_map("digits-1-ir", namespace)
    assert "kubeforge-main" in ir.data["pipeline.yaml"]

    run = _get(kubectl, "pipelinerun", "digits-1", namespace)
    assert run["status"]["phase"] == "Pending"
    assert run["status"]["backend"] == "job" and run["status"]["jobName"] == "digits-1"
    assert "Started" in _events(kubectl, namespace, "digits-1")

    _set_job_status(
        api_client, namespace, "digits-1", {"active": 1, "startTime": "2026-01-01T00:00:00Z"}
    )
    clock.at = NOW + 42
    reconciler.reconcile_run(run)
    run = _get(kubectl, "pipelinerun", "digits-1", namespace)
    assert (run["status"]["phase"], run["status"]["duration"]) == ("Running", "42s")

    # The pod finishes and leaves its summary as the termination message, as a kubelet would.
    pod = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": "digits-1-abcde",
                "labels": {"kubeforge.io/pipelinerun": "digits-1"},
            },
            "spec": {"containers": [{"name": "pipeline", "image": "x"}]},
        },
    )
    client.CoreV1Api(api_client).patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
        {"status": {"containerStatuses": [{
            "name": "pipeline", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": '{"mlflow_run_id": "abc123"}'}},
        }]}},
    )  # fmt: skip
    _set_job_status(
        api_client,
        namespace,
        "digits-1",
        {
            "active": 0,
            "succeeded": 1,
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:03:12Z",
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"},
            ],
        },
    )
    clock.at = NOW + 5 * 60
    reconciler.reconcile_run(run)
    row = kubectl("get", "kfrun", "digits-1", "-n", namespace).stdout.splitlines()[1].split()
    assert row[:3] == ["digits-1", "kubeforge-main", "Succeeded"]
    assert row[4:6] == ["3m12s", "abc123"]  # row[3] is "Started", shown as an age
    run = _get(kubectl, "pipelinerun", "digits-1", namespace)
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["mlflowRunId"] == "abc123"
    assert run["status"]["duration"] == "3m12s"
    assert "Succeeded" in _events(kubectl, namespace, "digits-1")

    # Past ttlSecondsAfterFinished the run deletes itself; cleanup removes the Job and IR.
    clock.at = NOW + 8 * 24 * 3600
    reconciler.reconcile_run(run)
    assert kubectl("get", "pipelinerun", "digits-1", "-n", namespace, check=False).returncode != 0
    reconciler.delete_run(run)
    assert _jobs(api_client, namespace) == []
    cms = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
    assert "digits-1-ir" not in [c.metadata.name for c in cms]


def _apply(kubectl: Kubectl, run: PipelineRunBuilder) -> dict[str, Any]:
    kubectl("apply", "-f", "-", stdin=run.json())
    meta = run.obj()["metadata"]
    return _get(kubectl, "pipelinerun", meta["name"], meta["namespace"])


MAIN = {"name": "main"}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"pipeline": MAIN, "parameters": {"data_uri": "x", "epoch": 3}}, "spec.parameters.epoch"),
        ({"pipeline": MAIN, "parameters": {"data_uri": 1}}, "spec.parameters.data_uri"),
        ({"pipeline": MAIN}, "missing required parameter(s) data_uri"),
        ({"pipeline": {**MAIN, "version": "9.9"}, "parameters": {}}, "spec.pipeline.version"),
        ({"pipelineRef": {"name": "absent"}}, "spec.pipelineRef.name: Pipeline"),
        ({"pipeline": {"ir": "not: a pipeline"}}, "spec.pipeline.ir"),
        ({"pipeline": {"configMap": {"name": "absent"}}}, "spec.pipeline.configMap.name"),
    ],
    ids=["undeclared", "wrong-type", "missing", "version", "no-pipeline", "not-ir", "no-configmap"],
)  # fmt: skip
def test_invalid_runs_fail_naming_the_field_post_an_event_and_start_nothing(
    pipeline_crds: None,
    kubectl: Kubectl,
    api_client: Any,
    namespace: str,
    spec: dict[str, Any],
    field: str,
) -> None:
    run = _apply(kubectl, pipelinerun("bad", namespace).spec(**spec))
    _reconciler(api_client)[0].reconcile_run(run)
    status = _get(kubectl, "pipelinerun", "bad", namespace)["status"]
    assert status["phase"] == "Failed"
    assert field in status["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and field in failed["message"]
    events = _events(kubectl, namespace, "bad")
    assert "Warning" in events and field.split(":")[0] in events
    assert _jobs(api_client, namespace) == []


def test_a_run_waiting_for_its_configmap_starts_once_the_configmap_exists(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str
) -> None:
    from kubernetes import client

    reconciler, _ = _reconciler(api_client)
    run = (
        pipelinerun("later", namespace).pipeline(configMap={"name": "ir"}).parameters(data_uri="x")
    )
    reconciler.reconcile_run(_apply(kubectl, run))
    assert _get(kubectl, "pipelinerun", "later", namespace)["status"]["phase"] == "Failed"
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "ir"}, "data": {"pipeline.yaml": main_pipeline_ir()}}
    )
    reconciler.reconcile_run(_get(kubectl, "pipelinerun", "later", namespace))
    status = _get(kubectl, "pipelinerun", "later", namespace)["status"]
    assert (status["phase"], status["jobName"]) == ("Pending", "later")
    assert [j.metadata.name for j in _jobs(api_client, namespace)] == ["later"]


def test_a_job_of_the_same_name_that_is_not_the_runs_own_is_left_alone(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str
) -> None:
    from kubernetes import client

    client.BatchV1Api(api_client).create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "taken"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}
                }
            },
        },
    )
    run = pipelinerun("taken", namespace).pipeline("main").parameters(data_uri="x")
    _reconciler(api_client)[0].reconcile_run(_apply(kubectl, run))
    status = _get(kubectl, "pipelinerun", "taken", namespace)["status"]
    assert status["phase"] == "Failed" and "is not this run's" in status["message"]
    assert (
        client.BatchV1Api(api_client)
        .read_namespaced_job("taken", namespace)
        .spec.template.spec.containers[0]
        .image
        == "x"
    )
