"""The pipeline-run controller (Job backend) against the real API server, controllers and kwok.

The reconciler is called directly, as the operator's loop would call it; the real Job controller
creates the run's pod, kwok runs it on the plain kwok node and the garbage collector follows the
owner references. No test here writes a Job's status or creates a pod.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock, parse_rfc3339
from kubeforge.operators.pipelineruns.clients.reconciler import RunReconciler
from kubeforge.operators.pipelineruns.core.manifests import RUN_LABEL
from kubeforge.operators.settings import OperatorSettings
from kubeforge.testing.builders import PipelineRunBuilder, main_pipeline_ir, pipelinerun
from kubeforge.testing.controllers import FAILING_IMAGE
from kubeforge.testing.fixtures import Kubectl, wait_for

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).parents[3] / "manifests" / "examples"
SETTINGS = OperatorSettings(
    image="registry.example/kubeforge:test", tracking_uri="http://mlflow.kf:5000"
)
WEEK = 7 * 24 * 3600


def _reconciler(
    api_client: Any, settings: OperatorSettings = SETTINGS
) -> tuple[RunReconciler, ManualClock]:
    clock = ManualClock()
    return RunReconciler(api_client, settings, clock), clock


def _get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    out = kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def _jobs(api_client: Any, namespace: str) -> list[Any]:
    from kubernetes import client

    return list(client.BatchV1Api(api_client).list_namespaced_job(namespace).items)


def _pods_of_job(api_client: Any, namespace: str, job: str) -> list[Any]:
    """The pods the Job controller made for ``job`` (found by owner, not by the run's label)."""
    from kubernetes import client

    return [
        pod
        for pod in client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
        if any(
            o.kind == "Job" and o.name == job and o.controller
            for o in pod.metadata.owner_references or []
        )
    ]


def _config_maps(api_client: Any, namespace: str) -> list[str]:
    from kubernetes import client

    items = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
    return [c.metadata.name for c in items]


def _events(kubectl: Kubectl, namespace: str, name: str) -> str:
    return kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
        "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
    ).stdout  # fmt: skip


def _follow(
    reconciler: RunReconciler,
    namespace: str,
    name: str,
    until: str,
    before_each: Callable[[], None] = lambda: None,
) -> list[str]:
    """Reconcile the run, as the operator's loop does, until its phase is ``until``.

    Returns the phases it went through, in order, each once, starting from the one it had.
    """
    run = reconciler.get_run(namespace, name)
    assert run is not None
    seen = [str(run["status"]["phase"])]

    def reached() -> bool:
        before_each()
        run = reconciler.get_run(namespace, name)
        assert run is not None
        phase = str(reconciler.reconcile_run(run).status.phase)
        if seen[-1] != phase:
            seen.append(phase)
        return phase == until

    wait_for(reached, timeout=90, interval=0.05)
    return seen


def _leave_summary(api_client: Any, namespace: str, job: str, summary: dict[str, Any]) -> None:
    """Write ``summary`` as the termination message of the Job's finished pod.

    The kubelet copies what the container wrote to /dev/termination-log into its status; kwok,
    which runs the pod in its place, completes it without one. This one write stands in for
    the kubelet: no controller of the test cluster can make it.
    """
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    for pod in _pods_of_job(api_client, namespace, job):
        statuses = api_client.sanitize_for_serialization(pod.status.container_statuses or [])
        terminated = [(s.get("state") or {}).get("terminated") or {} for s in statuses]
        if pod.status.phase != "Succeeded" or not terminated or terminated[0].get("message"):
            continue
        terminated[0]["message"] = json.dumps(summary)
        core.patch_namespaced_pod_status(
            pod.metadata.name, namespace, {"status": {"containerStatuses": statuses}}
        )


def test_applied_examples_run_as_one_job_whose_real_pod_the_run_follows_to_succeeded(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str, kwok_node: str
) -> None:
    from kubernetes import client

    batch = client.BatchV1Api(api_client)
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    reconciler, clock = _reconciler(api_client)
    reconciler.reconcile_pipeline(_get(kubectl, "pipeline", "digits", namespace))
    status = _get(kubectl, "pipeline", "digits", namespace)["status"]
    assert status["phase"] == "Ready"
    assert {"name": "data_uri", "type": "STRING", "required": True} in status["parameters"]

    fresh = _get(kubectl, "pipelinerun", "digits-1", namespace)
    reconciler.reconcile_run(fresh)
    started = _get(kubectl, "pipelinerun", "digits-1", namespace)
    assert started["status"]["phase"] == "Pending"
    assert started["status"]["backend"] == "job" and started["status"]["jobName"] == "digits-1"
    assert "Started" in _events(kubectl, namespace, "digits-1")

    job = batch.read_namespaced_job("digits-1", namespace)
    container = job.spec.template.spec.containers[0]
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

    # The real Job controller runs it; the run follows, the finished pod leaving its summary.
    def job_started_42s_ago() -> None:
        start = batch.read_namespaced_job_status("digits-1", namespace).status.start_time
        if start is not None:
            clock.at = start.timestamp() + 42
        _leave_summary(api_client, namespace, "digits-1", {"mlflow_run_id": "abc123"})

    phases = _follow(reconciler, namespace, "digits-1", "Running", job_started_42s_ago)
    assert phases == ["Pending", "Running"]
    running = _get(kubectl, "pipelinerun", "digits-1", namespace)["status"]
    assert running["duration"] == "42s"
    phases = _follow(reconciler, namespace, "digits-1", "Succeeded", job_started_42s_ago)
    assert phases == ["Running", "Succeeded"]

    job = batch.read_namespaced_job_status("digits-1", namespace)
    took = int(job.status.completion_time.timestamp() - job.status.start_time.timestamp())
    pods = _pods_of_job(api_client, namespace, "digits-1")
    assert [p.status.phase for p in pods] == ["Succeeded"]
    assert pods[0].metadata.labels[RUN_LABEL] == "digits-1"  # how the operator finds its pod
    row = kubectl("get", "kfrun", "digits-1", "-n", namespace).stdout.splitlines()[1].split()
    assert row[:3] == ["digits-1", "kubeforge-main", "Succeeded"]
    assert row[4:6] == [f"{took}s", "abc123"]  # row[3] is "Started", shown as an age
    run = _get(kubectl, "pipelinerun", "digits-1", namespace)
    assert run["status"]["mlflowRunId"] == "abc123"
    assert run["status"]["startedAt"] == job.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "Succeeded" in _events(kubectl, namespace, "digits-1")

    # A repeated reconcile, a restarted operator holding the object from before it started,
    # and a re-apply: still the one Job and the one pod the Job controller made.
    reconciler.reconcile_run(_get(kubectl, "pipelinerun", "digits-1", namespace))
    reconciler.reconcile_run(fresh)
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    _follow(reconciler, namespace, "digits-1", "Succeeded")
    assert [j.metadata.name for j in _jobs(api_client, namespace)] == ["digits-1"]
    assert [p.metadata.uid for p in _pods_of_job(api_client, namespace, "digits-1")] == [
        pods[0].metadata.uid
    ]

    # Past ttlSecondsAfterFinished the run deletes itself; the garbage collector then removes
    # what it owns (Job, IR ConfigMap) and the Job's pod, through their owner references.
    finished = parse_rfc3339(run["status"]["finishedAt"])
    clock.at = finished + WEEK
    reconciler.reconcile_run(run)
    assert kubectl("get", "pipelinerun", "digits-1", "-n", namespace, check=False).returncode != 0
    wait_for(lambda: _jobs(api_client, namespace) == [], timeout=60)
    wait_for(lambda: _pods_of_job(api_client, namespace, "digits-1") == [], timeout=60)
    wait_for(lambda: "digits-1-ir" not in _config_maps(api_client, namespace), timeout=60)


def test_a_run_whose_pod_fails_fails_with_the_pods_message_and_its_cleanup_takes_the_pod(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str, kwok_node: str
) -> None:
    # The operator's image is one whose pods fail once running (exit code 1, "container failed").
    reconciler, _ = _reconciler(api_client, OperatorSettings(image=FAILING_IMAGE))
    run = pipelinerun("doomed", namespace).pipeline("main").parameters(data_uri="x")
    reconciler.reconcile_run(_apply(kubectl, run))
    _follow(reconciler, namespace, "doomed", "Failed")

    status = _get(kubectl, "pipelinerun", "doomed", namespace)["status"]
    assert status["message"] == "the pipeline failed: container failed"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Started"]["status"] == "True"
    assert (conditions["Failed"]["status"], conditions["Failed"]["reason"]) == ("True", "RunFailed")
    assert "Warning" in _events(kubectl, namespace, "doomed")
    pods = _pods_of_job(api_client, namespace, "doomed")
    assert [p.status.phase for p in pods] == ["Failed"]  # backoffLimit 0: tried once

    # What the operator's finalizer does before the run goes: the Job, its pod and the IR.
    reconciler.delete_run(_get(kubectl, "pipelinerun", "doomed", namespace))
    wait_for(lambda: _pods_of_job(api_client, namespace, "doomed") == [], timeout=60)
    assert _jobs(api_client, namespace) == []
    assert "doomed-ir" not in _config_maps(api_client, namespace)


def test_a_run_whose_pod_no_node_can_take_stays_pending_saying_why(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str, kwok_node: str
) -> None:
    from kubernetes import client

    # The namespace asks more CPU per container than any node has: the pod waits for a node.
    client.CoreV1Api(api_client).create_namespaced_limit_range(
        namespace,
        {
            "metadata": {"name": "greedy"},
            "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "2k"}}]},
        },
    )
    reconciler, _ = _reconciler(api_client)
    run = pipelinerun("stuck", namespace).pipeline("main").parameters(data_uri="x")
    reconciler.reconcile_run(_apply(kubectl, run))

    def unschedulable() -> bool:
        pods = _pods_of_job(api_client, namespace, "stuck")
        conditions = [c for p in pods for c in p.status.conditions or []]
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

    wait_for(unschedulable, timeout=60)
    job = client.BatchV1Api(api_client).read_namespaced_job_status("stuck", namespace)
    assert job.status.active == 1  # the Job controller counts a pod waiting for a node
    reconciler.reconcile_run(_get(kubectl, "pipelinerun", "stuck", namespace))
    status = _get(kubectl, "pipelinerun", "stuck", namespace)["status"]
    assert status["phase"] == "Pending"
    assert status["message"].startswith("waiting for the Job's pod to start: 0/")
    assert "Insufficient cpu" in status["message"]


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
