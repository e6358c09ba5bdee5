"""A PipelineRun on the real node: the main pipeline in the project image, training over the pods.

``kubectl apply`` of the example Pipeline and PipelineRun (this cluster's data and small
settings). The operator (a kopf process here, as ``make dev`` runs it) starts the run's Job; its
pod runs the main pipeline with the image's ``kubeforge run``, tracking to an MLflow server that
runs in the cluster (a pod of the image, ``mlflow server --serve-artifacts``). Its ``train`` step
creates a PyTorchJob that the real training operator runs as a Master and a Worker pod; their DDP
processes rendezvous through the Master's Service name (CoreDNS) and train; the model comes back
through MLflow's artifact store (no volume is shared by any two pods). ``deploy`` applies a
Deployment and a Service, and the served model answers through the Service's ClusterIP.

The real node is tainted so that other tests' pods stay off it; the pods this run creates (the
Job's, the PyTorchJob's, the Deployment's) carry no toleration, so the test lifts the taint while
it runs and checks that every pod ran on the real node.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.controllers import TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for
from kubeforge.testing.node import NODE_NAME
from kubeforge.testing.pipelinerun import (
    answers,
    diagnose,
    example_objects,
    http,
    prepare_run,
    ready_pods,
    run_status,
)

pytestmark = pytest.mark.cluster

# Small settings: the test proves the path through the cluster, not the model's quality.
PARAMETERS = {
    "train_backend": "pytorchjob",
    "workers": 1,  # + the Master: two DDP processes in two pods
    "gpus_per_replica": 0,
    "node_selector": "kubeforge.io/node=real",
    "teacher_hidden": "64",
    "epochs": 4,
    "batch_size": 128,
    "student_hidden": "16",
    "distill_epochs": 4,
    "min_retention": 0.5,
    "min_accuracy": 0.5,
    "deploy_target": "deployment",
    "model_name": "digits-node",
}
RUN_TIMEOUT_S = 1500
RUN_TIMEOUT_S = 1500


@pytest.mark.timeout(3600)  # the image's cold build (in the setup) plus the run itself
def test_pipelinerun_trains_on_a_pytorchjob_over_the_pod_network_and_serves_in_cluster(
    untainted_node: str,
    project_image: str,
    training_operator: TrainingOperator,
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    namespace: str,
    digits_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kopf.testing import KopfRunner

    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    # MLflow in the cluster; this test reaches it through its ClusterIP (kube-proxy, on the host).
    # The data: uploaded through MLflow's artifact proxy, read by the run's pod over HTTP.
    outside, inside, data_uri = prepare_run(
        kubectl, api_client, namespace, project_image, digits_csv, kubeconfig,
        monkeypatch.setenv, lambda name: monkeypatch.delenv(name, raising=False),
    )  # fmt: skip

    started = time.monotonic()
    args = ["run", "--standalone", "-A", "-m", "kubeforge.operators.main"]
    with KopfRunner(args, timeout=120) as runner:
        objects = example_objects(namespace, data_uri, PARAMETERS)
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))
        try:
            wait_for(
                lambda: (
                    run_status(kubectl, namespace, "digits-1").get("phase")
                    in ("Succeeded", "Failed")
                ),
                timeout=RUN_TIMEOUT_S,
                interval=5,
            )
        except AssertionError:
            raise AssertionError(
                f"{run_status(kubectl, namespace, 'digits-1')}\n{diagnose(kubectl, namespace)}"
            ) from None
        status = run_status(kubectl, namespace, "digits-1")
    elapsed = time.monotonic() - started
    job_pod = core.list_namespaced_pod(namespace, label_selector="job-name=digits-1").items[0]
    assert status["phase"] == "Succeeded", f"{status}\n{diagnose(kubectl, namespace)}"
    assert runner.exception is None
    print(f"PipelineRun digits-1 Succeeded in {elapsed:.0f}s", flush=True)
    assert status["mlflowRunId"]
    listed = kubectl("get", "kfrun", "digits-1", "-n", namespace).stdout
    assert "Succeeded" in listed and status["mlflowRunId"] in listed

    # The training operator ran a Master and a Worker in pods of the image, on the real node.
    jobs = kubectl("get", "pytorchjobs", "-n", namespace, "-o", "json").stdout
    (job,) = json.loads(jobs)["items"]
    conditions = {c["type"]: c["status"] for c in job["status"]["conditions"]}
    assert conditions.get("Succeeded") == "True", job["status"]
    name = job["metadata"]["name"]
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"training.kubeflow.org/job-name={name}"
    ).items
    roles = sorted(p.metadata.labels["training.kubeflow.org/replica-type"] for p in pods)
    assert roles == ["master", "worker"]
    for pod in [*pods, job_pod]:
        assert pod.spec.node_name == NODE_NAME
        assert pod.status.phase == "Succeeded"
        assert pod.status.container_statuses[0].image.endswith(project_image.split("/")[-1])
    (worker,) = [
        p for p in pods if p.metadata.labels["training.kubeflow.org/replica-type"] == "worker"
    ]
    master_addr = {e.name: e.value for e in worker.spec.containers[0].env}["MASTER_ADDR"]
    assert master_addr == f"{name}-master-0"  # a Service name, resolved by CoreDNS in the pod

    # Both ranks trained (world size 2); the model came back through MLflow's artifact store.
    import mlflow

    mlflow.set_tracking_uri(outside)
    mlflow_client = mlflow.MlflowClient()
    experiment = mlflow_client.get_experiment_by_name("digits")
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string="tags.mlflow.runName = 'train'"
    )
    (train_run,) = runs
    assert train_run.data.params["backend"] == "pytorchjob"
    assert train_run.data.metrics["val_accuracy"] > 0.5
    teacher = [f.path for f in mlflow_client.list_artifacts(train_run.info.run_id, "teacher")]
    assert teacher == ["teacher/model.pt"]
    from kubeforge.components.train.store import Store

    root = Store(f"mlflow-artifacts:/{experiment.experiment_id}/kubeforge-train")
    (key,) = root.names("")
    result = json.loads(root.read_bytes(f"{key}/result.json"))
    assert result["world_size"] == 2
    assert result["epochs_run"] == PARAMETERS["epochs"]

    # deploy: a Deployment + Service serving the registered model; it answers through the Service.
    selector = "app.kubernetes.io/managed-by=kubeforge"
    (deployment,) = apps.list_namespaced_deployment(namespace, label_selector=selector).items
    served = deployment.metadata.name
    try:
        wait_for(lambda: bool(ready_pods(core, namespace, selector)), timeout=300)
    except AssertionError:
        raise AssertionError(diagnose(kubectl, namespace)) from None
    (server_pod,) = ready_pods(core, namespace, selector)
    assert server_pod.spec.node_name == NODE_NAME
    service = core.read_namespaced_service(served, namespace)
    port = service.spec.ports[0].port
    import pandas as pd

    rows = pd.read_csv(digits_csv).head(100)
    body = {"instances": rows.drop(columns=["label"]).to_numpy().tolist()}
    base = f"http://{service.spec.cluster_ip}:{port}"
    ready = f"{base}/v2/health/ready"
    wait_for(lambda: answers(ready, lambda body: json.loads(body)["ready"] is True), timeout=60)
    url = f"{base}/v1/models/{served}:predict"
    answer = json.loads(http(url, json.dumps(body).encode(), method="POST"))
    predictions = answer["predictions"]
    assert len(predictions) == 100
    correct = sum(int(p) == int(y) for p, y in zip(predictions, rows["label"], strict=True))
    assert correct >= 50, predictions  # the student scored 0.70 in a rehearsal in the image
