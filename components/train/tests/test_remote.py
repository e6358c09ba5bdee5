"""Data between the train step and its workers without a shared folder (issue: real node).

The workers of a PyTorchJob or TrainJob read their config and data from, and write checkpoints
and the model to, a URI: MLflow's artifact proxy or the pipeline root's object store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from kubeforge.components.common.model import accuracy, load
from kubeforge.components.common.splits import load_split
from kubeforge.components.train.stage import (
    collect_remote,
    prepare_remote,
    remote_root,
    worker_env,
)
from kubeforge.components.train.store import Store, is_remote
from kubeforge.components.train.trainer import (
    LocalDdpRun,
    TrainConfig,
    TrainParams,
    latest_checkpoint,
    run_local,
)
from kubeforge.core.errors import KubeforgeError
from kubeforge.testing.controlplane import free_port


def _config(digits_labelled: Path, digits_splits: Path, epochs: int, nproc: int) -> TrainConfig:
    return TrainConfig(
        train_path=str(digits_labelled / "train.parquet"),
        val_path=str(digits_splits / "val.parquet"),
        output_dir="",  # prepare_remote points it at the store
        params=TrainParams.defaults(hidden="64", epochs=epochs, nproc=nproc),
    )


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``mlflow server --serve-artifacts`` on loopback, as the chart runs it: URL, artifact dir."""
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    log = tmp_path / "mlflow.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--serve-artifacts",
                f"--backend-store-uri=sqlite:///{tmp_path / 'mlflow.db'}",
                f"--artifacts-destination={artifacts}",
                "--host=127.0.0.1",
                f"--port={port}",
                "--workers=1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # A plain poll: kubeforge.testing.fixtures (wait_for) builds on other components.
    deadline = time.monotonic() + 180
    while not healthy():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(log.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    yield url, artifacts
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # seen under load: the server outlived 30 s after SIGTERM
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_ddp_workers_get_data_and_return_the_model_through_mlflow_artifacts(
    digits_labelled: Path,
    digits_splits: Path,
    tmp_path: Path,
    mlflow_server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    url, served = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    try:
        _train_through_the_server(digits_labelled, digits_splits, tmp_path, url, served)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: unset, for later tests


def _train_through_the_server(
    digits_labelled: Path, digits_splits: Path, tmp_path: Path, url: str, served: Path
) -> None:
    import mlflow

    mlflow.set_experiment("train-remote")
    with mlflow.start_run():
        root = remote_root("", "0123456789abcdef")  # what the stage picks under a server
        env = worker_env()
    assert root.startswith("mlflow-artifacts:")
    assert env == {"MLFLOW_TRACKING_URI": url}
    config_uri = prepare_remote(_config(digits_labelled, digits_splits, epochs=4, nproc=2), root)
    # The workers' config names URIs only: nothing on the step's disk.
    written = TrainConfig.from_json(Store(root).read_bytes("config.json").decode())
    for location in (written.train_path, written.val_path, written.output_dir):
        assert location.startswith(root)

    def train(tag: str) -> None:
        # Each run's workers get a scratch folder of their own (what a pod has).
        scratch = tmp_path / f"workers-{tag}"
        scratch.mkdir()
        run = LocalDdpRun(config_uri, 2, tmp_path / f"logs-{tag}", {**env, "TMPDIR": str(scratch)})
        assert run.wait(), run.log_tail(40)

    train("first")
    step = tmp_path / "step"
    first = collect_remote(root, step)
    assert first.world_size == 2 and first.resumed_from_step == 0
    model = load(step / "model.pt")
    val = load_split(digits_splits / "val.parquet")
    assert accuracy(model, val.features(), val.label_indices()) == pytest.approx(first.val_accuracy)
    assert first.val_accuracy > 0.6
    # The checkpoint, the model and the inputs are files of the MLflow server, not of the step.
    on_server = {p.name for p in served.rglob("*") if p.is_file()}
    assert {f"step-{first.optimizer_steps}.pt", "model.pt", "result.json"} <= on_server
    assert {"train.parquet", "val.parquet", "config.json"} <= on_server

    # A restarted worker (here: a new run of the same config, two more epochs) resumes from the
    # checkpoint in the artifact store.
    prepare_remote(_config(digits_labelled, digits_splits, epochs=6, nproc=2), root)
    train("second")
    second = collect_remote(root, step)
    assert second.resumed_from_epoch == 4
    assert second.resumed_from_step == first.optimizer_steps
    assert second.optimizer_steps == first.optimizer_steps * 6 // 4


def test_a_worker_reads_object_store_artifacts_through_fsspec_and_writes_back(
    digits_labelled: Path, digits_splits: Path
) -> None:
    """With an object-store pipeline root the inputs are read where KFP put them (fsspec)."""
    fs = fsspec.filesystem("memory")
    pipeline_root = "memory://kfp-root/run-1"
    train_uri = f"{pipeline_root}/label/train_data/train.parquet"
    val_uri = f"{pipeline_root}/ingest/val_data/val.parquet"
    fs.pipe_file(train_uri, (digits_labelled / "train.parquet").read_bytes())
    fs.pipe_file(val_uri, (digits_splits / "val.parquet").read_bytes())
    root = remote_root(f"{pipeline_root}/train/model", "feedc0ffee")
    assert root == f"{pipeline_root}/train/train-feedc0ffee"
    config = _config(digits_labelled, digits_splits, epochs=2, nproc=1)
    config_uri = prepare_remote(config, root, train_uri, val_uri)
    written = TrainConfig.from_json(Store(root).read_bytes("config.json").decode())
    assert (written.train_path, written.val_path) == (train_uri, val_uri)
    assert Store(root).names("inputs") == []  # nothing copied: the artifacts are read in place
    result = run_local(written)  # one in-process worker (memory:// is per process)
    assert config_uri == f"{root}/config.json"
    assert latest_checkpoint(Store(root)) == f"checkpoints/step-{result.optimizer_steps}.pt"
    assert fs.exists(f"{root}/model.pt")


def test_cluster_backend_refuses_an_mlflow_that_keeps_artifacts_on_local_disk(
    mlflow_home: str, tmp_path: Path
) -> None:
    import mlflow

    model = str(tmp_path / "model")  # kfp.local's pipeline root: a local folder
    assert not is_remote(model)
    with mlflow.start_run(), pytest.raises(KubeforgeError) as err:
        remote_root(model, "k")
    assert err.value.parameter == "mlflow_tracking_uri"
