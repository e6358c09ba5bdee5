from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.common.model import accuracy, load
from kubeforge.components.common.splits import load_split
from kubeforge.components.train.pytorchjob import (
    GROUP,
    METRICS_PORT,
    METRICS_PORT_NAME,
    PLURAL,
    VERSION,
    build_pytorchjob,
    submit_pytorchjob,
)
from kubeforge.components.train.trainer import (
    TrainConfig,
    TrainParams,
    TrainResult,
    latest_checkpoint,
    run_local,
    train_worker,
)
from kubeforge.core.errors import KubeforgeError
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
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.name == "epoch-3.pt"
    second = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=5))
    assert second.resumed_from_epoch == 3
    assert second.epochs_run == 2
    assert latest_checkpoint(tmp_path / "checkpoints").name == "epoch-5.pt"  # type: ignore[union-attr]


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
