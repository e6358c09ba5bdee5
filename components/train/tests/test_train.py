from __future__ import annotations

import io
import math
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from kubeforge.components.common.model import accuracy, load
from kubeforge.components.common.splits import load_split
from kubeforge.components.train.jobs import (
    job_gpu_hours,
    job_pods,
    job_run_seconds,
    pod_gpu_seconds,
    pod_run_seconds,
    submit_job,
    wait_for_job,
)
from kubeforge.components.train.pytorchjob import (
    GROUP,
    METRICS_PORT,
    METRICS_PORT_NAME,
    PLURAL,
    PYTORCHJOB,
    VERSION,
    build_pytorchjob,
    submit_pytorchjob,
)
from kubeforge.components.train.runtime import RuntimeEstimate
from kubeforge.components.train.stage import run_on_cluster
from kubeforge.components.train.store import Store, join
from kubeforge.components.train.trainer import (
    WORKER_MODULE,
    LocalDdpRun,
    TrainConfig,
    TrainingInterrupted,
    TrainParams,
    TrainResult,
    latest_checkpoint,
    run_local,
    train_worker,
)
from kubeforge.components.train.trainjob import GRACE_PERIOD_S, TRAINJOB, build_trainjob
from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.core.errors import KubeforgeError
from kubeforge.testing.artifacts import LocalArtifact
from kubeforge.testing.builders import pytorchjob
from kubeforge.testing.controllers import Kwok, Trainer, TrainingOperator
from kubeforge.testing.controlplane import free_port


def _config(
    digits_labelled: Path, digits_splits: Path, out: Path, epochs: int, nproc: int = 1
) -> TrainConfig:
    return TrainConfig(
        train_path=str(digits_labelled / "train.parquet"),
        val_path=str(digits_splits / "val.parquet"),
        output_dir=str(out),
        params=TrainParams.defaults(hidden="64", epochs=epochs, grad_accum_steps=2, nproc=nproc),
    )


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_a_usable_model(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path
) -> None:
    result = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=20, nproc=2))
    assert result.world_size == 2
    assert result.device == "cpu"
    assert result.val_accuracy > 0.85
    test = load_split(digits_splits / "test.parquet")
    model = load(tmp_path / "model.pt")
    assert accuracy(model, test.features(), test.label_indices()) > 0.85
    assert list(model.spec.classes) == [str(i) for i in range(10)]


def test_resumes_from_the_last_checkpoint(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path
) -> None:
    first = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=3))
    assert first.resumed_from_epoch == 0
    assert latest_checkpoint(Store(str(tmp_path))) == f"checkpoints/step-{first.optimizer_steps}.pt"
    second = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=5))
    assert second.resumed_from_epoch == 3
    assert second.resumed_from_step == first.optimizer_steps
    assert second.epochs_run == 2
    # Two more epochs of the same number of steps each.
    assert second.optimizer_steps == first.optimizer_steps * 5 // 3
    assert (
        latest_checkpoint(Store(str(tmp_path))) == f"checkpoints/step-{second.optimizer_steps}.pt"
    )
    # The per-epoch curve travels with the checkpoint: the resumed run's starts at epoch 1.
    assert [p["epoch"] for p in second.history] == [1, 2, 3, 4, 5]
    assert second.history[:3] == first.history
    assert second.history[-1]["val_accuracy"] == pytest.approx(second.val_accuracy, abs=1e-6)


def test_a_stop_on_an_epochs_last_step_keeps_that_epoch_in_the_history(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on the real node: a Worker pod deleted as epoch 168 ended; the resumed run's curve
    # had epochs 1..167 and 169.. (the stop saved "resume at epoch 168" without its point).
    from kubeforge.components.train import trainer

    config = _config(digits_labelled, digits_splits, tmp_path, epochs=4)
    rows = len(load_split(digits_labelled / "train.parquet").label_indices())
    per_epoch = math.ceil(
        math.ceil(rows / config.params.batch_size) / config.params.grad_accum_steps
    )
    calls = [0]

    def stop_after_epoch_two(*_args: Any) -> bool:
        calls[0] += 1  # once per optimizer step: the last step of epoch 2 asks to stop
        return calls[0] == 2 * per_epoch

    monkeypatch.setattr(trainer, "_stop_requested", stop_after_epoch_two)
    with pytest.raises(TrainingInterrupted):
        train_worker(config)
    ckpt = latest_checkpoint(Store(str(tmp_path)))
    assert ckpt == f"checkpoints/step-{2 * per_epoch}.pt"
    state = torch.load(io.BytesIO(Store(str(tmp_path)).read_bytes(ckpt)), weights_only=False)
    assert (state["epoch"], state["step"]) == (2, 0)
    assert [p["epoch"] for p in state["history"]] == [1, 2]
    monkeypatch.undo()
    result = train_worker(config)
    assert result.resumed_from_epoch == 2
    assert [p["epoch"] for p in result.history] == [1, 2, 3, 4]


def test_train_stage_logs_the_teacher_training_curve_to_its_mlflow_run(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path, mlflow_home: str
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from kubeforge.components.train.stage import run_train

    with mlflow.start_run() as parent:
        pass  # the pipeline's run; the stage nests its own under it
    run_train(
        TrainParams.defaults(hidden="32", epochs=6, nproc=1),
        str(digits_labelled / "train.parquet"),
        str(digits_splits / "val.parquet"),
        LocalArtifact(tmp_path / "model.pt"),
        LocalArtifact(tmp_path / "metrics"),
        mlflow_home,
        parent.info.run_id,
    )
    client = MlflowClient(mlflow_home)
    [run] = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    losses = client.get_metric_history(run.info.run_id, "epoch_train_loss")
    accuracies = client.get_metric_history(run.info.run_id, "epoch_val_accuracy")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4, 5, 6]
    assert sorted(m.step for m in accuracies) == [1, 2, 3, 4, 5, 6]
    by_epoch = sorted((m.step, m.value) for m in losses)
    assert by_epoch[-1][1] < by_epoch[0][1]  # the teacher learned something
    png = client.download_artifacts(
        run.info.run_id, "figures/teacher_training_curve.png", str(tmp_path)
    )
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_stage_learns_the_run_time_it_declares_from_its_own_history(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path, mlflow_home: str
) -> None:
    """Each run logs how long it ran; the next with the same settings declares that, scaled."""
    from mlflow.tracking import MlflowClient

    from kubeforge.components.train.stage import run_train

    def train(run: str, **changes: Any) -> Any:
        out = tmp_path / run
        out.mkdir()
        run_train(
            TrainParams.defaults(hidden="32", nproc=1, **changes),
            str(digits_labelled / "train.parquet"),
            str(digits_splits / "val.parquet"),
            LocalArtifact(out / "model.pt"),
            LocalArtifact(out / "metrics"),
            mlflow_home,
            "",
        )
        client = MlflowClient(mlflow_home)
        experiment = client.get_experiment_by_name("kubeforge")
        assert experiment is not None
        [latest] = client.search_runs(
            [experiment.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return latest.data

    first = train("first", epochs=2)
    assert first.tags["kubeforge.expected_runtime"] == (
        "not declared: no finished train run with these settings"
    )
    rows = first.metrics["train_rows"]
    labelled = load_split(digits_labelled / "train.parquet").label_indices()
    assert rows == (labelled >= 0).sum() and first.metrics["train_features"] == 64
    assert first.metrics["job_run_seconds"] > 0
    second = train("second", epochs=4)  # twice the work of the one run it can learn from
    assert second.tags["kubeforge.expected_runtime"] == (
        "learnt from 1 finished train run(s) with these settings"
    )
    assert second.metrics["expected_runtime_seconds"] == pytest.approx(
        first.metrics["job_run_seconds"] * 2
    )
    # Other settings: the history says nothing about them.
    other = train("other", epochs=4, batch_size=16)
    assert "expected_runtime_seconds" not in other.metrics
    # A bad setting is refused before any training, naming the parameter.
    with pytest.raises(KubeforgeError, match="expected_runtime"):
        train("bad", expected_runtime="soon")
    assert not (tmp_path / "bad" / "model.pt").exists()


@pytest.mark.slow
def test_worker_serves_its_throughput_on_metrics_while_it_trains(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("KUBEFORGE_METRICS_PORT", str(port))
    monkeypatch.setenv("KUBEFORGE_METRICS_ADDR", "127.0.0.1")
    epochs = 60
    config = _config(digits_labelled, digits_splits, tmp_path, epochs=epochs)
    config.checkpoint_interval_s = 3600.0
    results: list[TrainResult] = []
    worker = threading.Thread(target=lambda: results.append(train_worker(config)), daemon=True)
    worker.start()
    seen: list[float] = []

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except (urllib.error.URLError, OSError):
            return False
        found = re.search(r'^kubeforge_train_samples_total\{rank="0"\} (\S+)$', text, re.M)
        if found and float(found.group(1)) > 0:
            seen.append(float(found.group(1)))
        return bool(seen)

    # A plain poll: kubeforge.testing.fixtures (wait_for) builds on other components.
    deadline = time.monotonic() + 60
    while not scraped():
        assert time.monotonic() < deadline, "no throughput served within 60 s"
        time.sleep(0.05)
    worker.join(timeout=300)
    assert results and results[0].epochs_run == epochs
    rows = len(load_split(digits_labelled / "train.parquet").label_indices())
    assert 0 < seen[0] <= rows * epochs
    # The endpoint closes when training ends, so the port is free for the next run.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_pytorchjob_manifest_for_a_gpu_pool() -> None:
    job = build_pytorchjob(
        "train-1",
        "ml",
        "example/kubeforge:1",
        ["python", "-m", "kubeforge.components.train.trainer", "/cfg.json"],
        workers=3,
        gpus_per_replica=8,
        node_selector={"kubeforge.io/pool": "a100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    pod = specs["Worker"]["template"]["spec"]
    assert pod["containers"][0]["name"] == "pytorch"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert pod["nodeSelector"] == {"kubeforge.io/pool": "a100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_every_pytorchjob_replica_serves_its_throughput_on_the_named_metrics_port() -> None:
    job = build_pytorchjob("train-1", "ml", "img", ["train"], workers=2, env={"SEED": "7"})
    for role in ("Master", "Worker"):
        (container,) = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        # One trainer per pod, LOCAL_RANK unset: it listens on the port itself, which the pod
        # declares under the name the chart's training PodMonitor scrapes.
        assert env == {"SEED": "7", "KUBEFORGE_METRICS_PORT": str(METRICS_PORT)}
        assert "LOCAL_RANK" not in env
        assert container["ports"] == [
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}
        ]


def test_pytorchjob_env_cannot_move_the_metrics_port() -> None:
    with pytest.raises(KubeforgeError) as err:
        build_pytorchjob("t", "ml", "img", ["train"], env={"KUBEFORGE_METRICS_PORT": "1234"})
    assert err.value.parameter == "env"


@pytest.mark.cluster
def test_pytorchjob_is_created_for_real_and_read_back(
    api_client: Any, pytorchjob_crd: str, namespace: str
) -> None:
    from kubernetes import client

    job = build_pytorchjob(
        "teacher",
        namespace,
        "example/kubeforge:1",
        ["python", "train.py"],
        workers=1,
        gpus_per_replica=2,
        node_selector={"kubeforge.io/pool": "h100"},
    )
    created = submit_pytorchjob(api_client, job)
    again = submit_pytorchjob(api_client, job)  # get-or-create: no error, same object
    assert again["metadata"]["uid"] == created["metadata"]["uid"]
    stored = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "teacher"
    )
    worker = stored["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert worker["nodeSelector"] == {"kubeforge.io/pool": "h100"}
    # The API server keeps the metrics port and env (the CRD's pod schema does not prune them).
    for role in ("Master", "Worker"):
        stored_pod = stored["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]
        assert stored_pod["containers"][0]["ports"][0]["name"] == METRICS_PORT_NAME
        assert {"name": "KUBEFORGE_METRICS_PORT", "value": str(METRICS_PORT)} in stored_pod[
            "containers"
        ][0]["env"]


def test_trainjob_manifest_for_a_gpu_pool() -> None:
    job = build_trainjob(
        "train-1",
        "ml",
        "example/kubeforge:1",
        ["torchrun", "-m", WORKER_MODULE, "mlflow-artifacts:/1/kubeforge-train/k/config.json"],
        nodes=4,
        gpus_per_node=8,
        node_selector={"kubeforge.io/pool": "a100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        env={"MLFLOW_TRACKING_URI": "http://mlflow.ml:5000"},
    )
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert trainer["env"] == [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.ml:5000"}]
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert node["name"] == "node"
    assert pod["nodeSelector"] == {"kubeforge.io/pool": "a100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["terminationGracePeriodSeconds"] == GRACE_PERIOD_S


@pytest.mark.parametrize(
    ("nodes", "gpus", "parameter"), [(0, 1, "workers"), (1, -1, "gpus_per_replica")], ids=str
)
def test_trainjob_refuses_impossible_sizes(nodes: int, gpus: int, parameter: str) -> None:
    with pytest.raises(KubeforgeError) as err:
        build_trainjob("t", "ml", "img", ["train"], nodes=nodes, gpus_per_node=gpus)
    assert err.value.parameter == parameter


def test_train_stage_runs_its_trainjob_through_the_real_trainer_controller(
    api_client: Any, namespace: str, kwok: Kwok, trainer: Trainer
) -> None:
    """The stage's own TrainJob (kubeflow SDK models) is accepted and run by Trainer v2 + JobSet.

    kwok plays the kubelet only (the pods' containers do not run): the Trainer controller makes
    the JobSet, the JobSet controller its Jobs, the Job controller the pods, the scheduler binds
    them to the pool's nodes, and the TrainJob reaches Complete.
    """
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    pool = f"tj-{secrets.token_hex(3)}"
    nodes = []
    for _ in range(2):
        name = f"{pool}-{secrets.token_hex(3)}"
        core.create_node(
            {
                "metadata": {
                    "name": name,
                    "labels": {"kubeforge.io/pool": pool, "type": "kwok"},
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
                # The pool's nodes are tainted: only pods that tolerate it land there.
                "spec": {
                    "taints": [
                        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
                    ]
                },
            }
        )
        amounts = {"nvidia.com/gpu": "8", "cpu": "64", "memory": "512Gi", "pods": "110"}
        core.patch_node_status(name, {"status": {"capacity": amounts, "allocatable": amounts}})
        nodes.append(name)
    params = TrainParams.defaults(
        backend="trainjob",
        namespace=namespace,
        workers=1,
        gpus_per_replica=8,
        node_selector=f"kubeforge.io/pool={pool}",
        tolerations="nvidia.com/gpu=present:NoSchedule",
    )
    config_uri = "mlflow-artifacts:/1/kubeforge-train/0123456789abcdef/config.json"
    try:
        started = time.monotonic()
        expected = RuntimeEstimate(5400, "given by expected_runtime")
        name = run_on_cluster(config_uri, params, client=api_client, timeout=180, expected=expected)
        wall = time.monotonic() - started
        # The train stage's cost: read from the JobSet's pods (2 nodes x 8 GPUs) through the API.
        pods_json = job_pods(api_client, TRAINJOB, namespace, name)
        held = job_gpu_hours(pods_json)
        assert held is not None and 0.0 <= held <= 16 * (wall + 2) / 3600
        # How long its pods ran: what the next run with these settings learns to declare.
        ran = job_run_seconds(pods_json)
        assert ran is not None and 0.0 <= ran <= wall + 2
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"jobset.sigs.k8s.io/jobset-name={name}"
        ).items
        assert len(pods) == 2
        assert {p.spec.node_name for p in pods} == set(nodes)
        for pod in pods:
            (container,) = [c for c in pod.spec.containers if c.name == "node"]
            assert container.command == ["torchrun", "-m", WORKER_MODULE, config_uri]
            env = {e.name: e.value for e in container.env}
            # Trainer's torch policy sets torchrun's rendezvous; the stage adds MLflow's URI.
            assert env["PET_NNODES"] == "2" and env["PET_NPROC_PER_NODE"] == "8"
            assert "MLFLOW_TRACKING_URI" in env
            assert container.resources.limits["nvidia.com/gpu"] == "8"
            assert pod.spec.termination_grace_period_seconds == GRACE_PERIOD_S
            # Trainer and JobSet carry the declared run time to the pods the GPU pool reads.
            assert pod.metadata.annotations[EXPECTED_RUNTIME_ANNOTATION] == "5400"
            assert [(t.key, t.value, t.effect) for t in pod.spec.tolerations or []][:1] == [
                ("nvidia.com/gpu", "present", "NoSchedule")
            ]
    finally:
        for node in nodes:
            core.delete_node(node)


def _gpu_pod(gpus: tuple[int, ...], scheduled: str, finished: tuple[str, ...]) -> dict[str, Any]:
    """A pod's JSON as the API returns it: containers asking GPUs (by limit), its timestamps."""
    return {
        "spec": {
            "containers": [
                {"name": f"c{i}", "resources": {"limits": {"nvidia.com/gpu": str(n)}}}
                for i, n in enumerate(gpus)
            ]
        },
        "status": {
            "phase": "Succeeded" if finished else "Running",
            "startTime": "2026-12-02T10:00:05Z",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled}
            ],
            "containerStatuses": [
                {"state": {"terminated": {"finishedAt": f}} if f else {"running": {}}}
                for f in finished or ("",) * len(gpus)
            ],
        },
    }


NOW = datetime(2026, 12, 2, 10, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pod", "seconds"),
    [
        # 4 + 4 GPUs held from binding until the later container ended: 8 x 90 s.
        (
            _gpu_pod(
                (4, 4), "2026-12-02T10:00:00Z", ("2026-12-02T10:01:00Z", "2026-12-02T10:01:30Z")
            ),
            720.0,
        ),
        # Still running: held until now.
        (_gpu_pod((8,), "2026-12-02T10:00:00Z", ()), 8 * 300.0),
        # No GPUs asked: nothing held, however long it ran.
        (_gpu_pod((0,), "2026-12-02T10:00:00Z", ("2026-12-02T10:01:00Z",)), 0.0),
    ],
    ids=["finished-two-containers", "running", "no-gpus"],
)
def test_a_pod_holds_its_gpus_from_binding_until_its_containers_end(
    pod: dict[str, Any], seconds: float
) -> None:
    assert pod_gpu_seconds(pod, NOW) == seconds


@pytest.mark.parametrize(
    ("finished", "seconds"),
    [
        # From startTime (10:00:05) to the later container's end: what the pod declares next time.
        (("2026-12-02T10:01:00Z", "2026-12-02T10:01:35Z"), 90.0),
        # A container still running: no run time yet.
        (("2026-12-02T10:01:00Z", ""), None),
    ],
    ids=["finished", "running"],
)
def test_a_pod_runs_from_its_start_until_its_last_container_ends(
    finished: tuple[str, ...], seconds: float | None
) -> None:
    assert pod_run_seconds(_gpu_pod((4, 4), "2026-12-02T10:00:00Z", finished)) == seconds


def test_an_unscheduled_pod_holds_no_gpus() -> None:
    pod = _gpu_pod((8,), "", ())
    pod["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False"}],
    }
    assert pod_gpu_seconds(pod, NOW) == 0.0


def test_gpu_hours_held_by_a_pytorchjob_are_read_from_its_pods(
    api_client: Any, namespace: str, kwok: Kwok, training_operator: TrainingOperator
) -> None:
    """The real training operator runs a 2-replica, 8-GPU-each job on kwok GPU nodes for 3 s."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    pool = f"held-{secrets.token_hex(3)}"
    nodes = []
    for _ in range(2):
        node = f"{pool}-{secrets.token_hex(3)}"
        core.create_node(
            {
                "metadata": {
                    "name": node,
                    "labels": {"kubeforge.io/pool": pool, "type": "kwok"},
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                }
            }
        )
        amounts = {"nvidia.com/gpu": "8", "cpu": "64", "memory": "512Gi", "pods": "110"}
        core.patch_node_status(node, {"status": {"capacity": amounts, "allocatable": amounts}})
        nodes.append(node)
    name = f"held-{secrets.token_hex(3)}"
    job = pytorchjob(name).namespace(namespace).workers(1).gpus(8).pool(pool).runs_for("3s")
    try:
        started = time.monotonic()
        submit_job(api_client, PYTORCHJOB, job.obj())
        assert wait_for_job(api_client, PYTORCHJOB, namespace, name, 180) == "Succeeded"
        wall = time.monotonic() - started
        held = job_gpu_hours(job_pods(api_client, PYTORCHJOB, namespace, name))
        # The master alone held 8 GPUs for at least 3 s (API timestamps keep whole seconds, so
        # at least 2 s show); both replicas together at most 16 GPUs for the whole wait.
        assert held is not None
        assert 8 * 2 / 3600 <= held <= 16 * (wall + 2) / 3600, (held, wall)
    finally:
        for node in nodes:
            core.delete_node(node)


def _scrape_steps(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0
    found = re.search(r'^kubeforge_train_optimizer_steps_total\{rank="0"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_sigterm_saves_the_step_in_flight_and_a_rerun_resumes_there(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = _config(digits_labelled, digits_splits, out, epochs=100_000, nproc=2)
    config.checkpoint_interval_s = 3600.0  # no checkpoint but the one SIGTERM asks for
    store = Store(str(out))
    store.write_bytes("config.json", config.to_json().encode())
    port = free_port()
    run = LocalDdpRun(
        join(store.root, "config.json"),
        2,
        tmp_path / "logs",
        env={"KUBEFORGE_METRICS_PORT": str(port), "KUBEFORGE_METRICS_ADDR": "127.0.0.1"},
    )
    deadline = time.monotonic() + 300
    while (done := _scrape_steps(port)) < 20:
        assert time.monotonic() < deadline, f"no training within 300 s:\n{run.log_tail()}"
        time.sleep(0.05)
    run.terminate()  # SIGTERM to torchrun and both workers, as a kubelet stops a pod
    assert not run.wait()
    ckpt = latest_checkpoint(store)
    assert ckpt is not None
    state = torch.load(io.BytesIO(store.read_bytes(ckpt)), weights_only=False)
    saved = int(state["global_step"])
    # Every step rank 0 had finished before the signal is in the checkpoint (only the one in
    # flight may be lost), and both ranks stopped after that same step.
    assert saved >= done
    log = run.log_tail(200)
    for rank in (0, 1):
        assert (
            f"[{rank}]:training stopped by SIGTERM; checkpoint saved at optimizer step {saved}"
            in (log)
        )
    # Resume to the end of the interrupted epoch plus one: exactly the steps not yet taken.
    resumed = replace(config, params=replace(config.params, epochs=int(state["epoch"]) + 1))
    result = run_local(resumed)
    assert result.resumed_from_step == saved
    assert result.resumed_from_epoch == int(state["epoch"])
    rows = len(load_split(digits_labelled / "train.parquet").label_indices())
    micro = math.ceil(math.ceil(rows / 2) / config.params.batch_size)
    per_epoch = math.ceil(micro / config.params.grad_accum_steps)
    assert result.optimizer_steps == (int(state["epoch"]) + 1) * per_epoch
