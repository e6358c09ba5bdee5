"""A PipelineRun on the real node survives the loss of its PyTorchJob's Worker pod mid-training.

The same run as ``test_pipelinerun_node.py`` (the example Pipeline and PipelineRun, MLflow in the
cluster, the real training operator), with enough epochs that training outlasts the trainer's
wall-clock checkpoint interval. Once a checkpoint is in the artifact store (and no result yet),
the test deletes the Worker pod. The kubelet sends it SIGTERM; every rank stops after the same
optimizer step (the ranks agree on the stop), rank 0 saves that step and both exit with the
interrupted status. The replicas' ``restartPolicy: OnFailure`` makes the kubelet restart the
Master's container in place, and the training operator creates a new Worker pod; the two ranks
rendezvous again and resume from the newest checkpoint. The run still ends Succeeded, and the
trainer's result says it resumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.controllers import TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for
from kubeforge.testing.node import NODE_NAME
from kubeforge.testing.pipelinerun import (
    diagnose,
    example_objects,
    prepare_run,
    run_status,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node]

# Small model and data; many epochs so that training lasts past the trainer's 60 s checkpoint
# interval (an epoch of two DDP ranks on this node took 0.1-0.5 s, by load).
EPOCHS = 600
PARAMETERS = {
    "train_backend": "pytorchjob",
    "workers": 1,  # + the Master: two DDP processes in two pods
    "gpus_per_replica": 0,
    "node_selector": "kubeforge.io/node=real",
    "teacher_hidden": "64",
    "epochs": EPOCHS,
    "batch_size": 128,
    "student_hidden": "16",
    "distill_epochs": 4,
    "min_retention": 0.5,
    "min_accuracy": 0.5,
    "deploy_target": "deployment",
    "model_name": "digits-loss",
}
RUN_TIMEOUT_S = 1800
JOB_LABEL = "training.kubeflow.org/job-name"
ROLE_LABEL = "training.kubeflow.org/replica-type"


def _checkpointed_key(store_root: str) -> tuple[str, list[str]] | None:
    """The training folder that holds a checkpoint but no result yet, and its checkpoints."""
    from kubeforge.components.train.store import Store, join

    for key in Store(store_root).names(""):
        folder = Store(join(store_root, key))
        checkpoints = folder.names("checkpoints")
        if checkpoints and "result.json" not in folder.names(""):
            return key, checkpoints
    return None


def _pods(core: Any, namespace: str, job: str, role: str) -> list[Any]:
    selector = f"{JOB_LABEL}={job},{ROLE_LABEL}={role}"
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


@pytest.mark.timeout(3600)  # the image's cold build (in the setup) plus the run itself
def test_pipelinerun_succeeds_when_the_worker_pod_is_deleted_mid_training(
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
    import mlflow
    from kopf.testing import KopfRunner

    from kubeforge.components.train.store import Store

    core = client.CoreV1Api(api_client)
    outside, inside, data_uri = prepare_run(
        kubectl, api_client, namespace, project_image, digits_csv, kubeconfig,
        monkeypatch.setenv, lambda name: monkeypatch.delenv(name, raising=False),
    )  # fmt: skip
    # From this host, ``mlflow-artifacts:`` URIs name the server (the env points pods at it).
    mlflow_host = outside.removeprefix("http://")
    tracking = mlflow.MlflowClient(tracking_uri=outside)

    def fail(what: str) -> AssertionError:
        return AssertionError(
            f"{what}\n{run_status(kubectl, namespace, 'digits-1')}\n{diagnose(kubectl, namespace)}"
        )

    found: dict[str, Any] = {}

    def checkpoint_mid_training() -> bool:
        """A checkpoint of a training still running (the run must not have ended first)."""
        if run_status(kubectl, namespace, "digits-1").get("phase") in ("Succeeded", "Failed"):
            raise fail("the run ended before a checkpoint was seen mid-training")
        experiment = tracking.get_experiment_by_name("digits")
        if experiment is None:
            return False
        root = f"mlflow-artifacts://{mlflow_host}/{experiment.experiment_id}/kubeforge-train"
        hit = _checkpointed_key(root)
        if hit is None:
            return False
        found.update(root=f"{root}/{hit[0]}", checkpoints=hit[1])
        return True

    args = ["run", "--standalone", "-A", "-m", "kubeforge.operators.main"]
    with KopfRunner(args, timeout=120) as runner:
        objects = example_objects(namespace, data_uri, PARAMETERS)
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))
        try:
            wait_for(checkpoint_mid_training, timeout=RUN_TIMEOUT_S, interval=2)
        except AssertionError:
            raise fail("no checkpoint appeared in the artifact store") from None
        (job,) = json.loads(kubectl("get", "pytorchjobs", "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
        name = job["metadata"]["name"]
        conditions = {c["type"]: c["status"] for c in job["status"].get("conditions", [])}
        assert conditions.get("Succeeded") != "True", job["status"]
        (worker,) = _pods(core, namespace, name, "worker")
        (master,) = _pods(core, namespace, name, "master")
        assert worker.status.phase == "Running", worker.status
        core.delete_namespaced_pod(worker.metadata.name, namespace)

        # The training operator creates a new Worker pod (a new UID under the same name).
        def replaced() -> bool:
            pods = _pods(core, namespace, name, "worker")
            return any(p.metadata.uid != worker.metadata.uid for p in pods)

        try:
            wait_for(replaced, timeout=300, interval=1)
        except AssertionError:
            raise fail("the training operator did not recreate the Worker pod") from None
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
            raise fail("the run did not end") from None
        status = run_status(kubectl, namespace, "digits-1")
    # (KopfRunner takes this process's stdout while it runs: the prints come after it.)
    print(f"checkpoints before the Worker pod's delete: {found['checkpoints']}", flush=True)
    assert status["phase"] == "Succeeded", f"{status}\n{diagnose(kubectl, namespace)}"
    assert runner.exception is None

    # The same PyTorchJob succeeded, with the new Worker pod, on the real node.
    job = json.loads(kubectl("get", "pytorchjob", name, "-n", namespace, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in job["status"]["conditions"]}
    assert conditions.get("Succeeded") == "True", job["status"]
    (new_worker,) = _pods(core, namespace, name, "worker")
    (new_master,) = _pods(core, namespace, name, "master")
    assert new_worker.metadata.uid != worker.metadata.uid
    for pod in (new_worker, new_master):
        assert pod.spec.node_name == NODE_NAME
        assert pod.status.phase == "Succeeded"
    master_restarts = new_master.status.container_statuses[0].restart_count
    print(
        f"Master pod {'kept' if new_master.metadata.uid == master.metadata.uid else 'replaced'}, "
        f"its container restarted {master_restarts} time(s); PyTorchJob status: "
        f"{json.dumps(job['status'].get('replicaStatuses'))}",
        flush=True,
    )

    # Training resumed from a checkpoint at least as new as the one seen before the delete.
    store = Store(found["root"])
    result = json.loads(store.read_bytes("result.json"))
    seen_step = max(int(n.removesuffix(".pt").split("-")[1]) for n in found["checkpoints"])
    print(
        f"resumed from epoch {result['resumed_from_epoch']} step {result['resumed_from_step']} "
        f"(checkpoint seen at step {seen_step}); ran {result['epochs_run']} of {EPOCHS} epochs",
        flush=True,
    )
    assert result["world_size"] == 2
    assert result["resumed_from_epoch"] >= 1
    assert result["resumed_from_step"] >= seen_step > 0
    assert result["epochs_run"] == EPOCHS - result["resumed_from_epoch"] < EPOCHS
    assert [p["epoch"] for p in result["history"]] == list(range(1, EPOCHS + 1))
    experiment = tracking.get_experiment_by_name("digits")
    (train_run,) = tracking.search_runs(
        [experiment.experiment_id], filter_string="tags.mlflow.runName = 'train'"
    )
    assert train_run.data.metrics["resumed_from_epoch"] == result["resumed_from_epoch"]
    assert train_run.data.metrics["val_accuracy"] > 0.5
