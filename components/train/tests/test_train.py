from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.ingest.ingest import load_split
from kubeforge.components.train.model import accuracy, load
from kubeforge.components.train.pytorchjob import (
    GROUP,
    PLURAL,
    VERSION,
    build_pytorchjob,
    submit_pytorchjob,
)
from kubeforge.components.train.stage import parse_hidden, parse_selector
from kubeforge.components.train.trainer import TrainConfig, latest_checkpoint, run_local
from kubeforge.core.errors import KubeforgeError


def _config(digits_labelled: Path, digits_splits: Path, out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        train_path=str(digits_labelled / "train.parquet"),
        val_path=str(digits_splits / "val.parquet"),
        output_dir=str(out),
        hidden=[64],
        epochs=epochs,
        grad_accum_steps=2,
    )


def test_ddp_with_two_cpu_processes_trains_a_usable_model(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path
) -> None:
    result = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=20), nproc=2)
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
    first = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=3), nproc=1)
    assert first.resumed_from_epoch == 0
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.name == "epoch-3.pt"
    second = run_local(_config(digits_labelled, digits_splits, tmp_path, epochs=5), nproc=1)
    assert second.resumed_from_epoch == 3
    assert second.epochs_run == 2
    assert latest_checkpoint(tmp_path / "checkpoints").name == "epoch-5.pt"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "parameter"), [("", "hidden"), ("64,x", "hidden"), ("0", "hidden")], ids=str
)
def test_bad_hidden_sizes(text: str, parameter: str) -> None:
    with pytest.raises(KubeforgeError) as excinfo:
        parse_hidden(text)
    assert excinfo.value.parameter == parameter


def test_node_selector_parsing() -> None:
    assert parse_selector("pool=a100, zone=z1") == {"pool": "a100", "zone": "z1"}
    with pytest.raises(KubeforgeError):
        parse_selector("novalue")


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
