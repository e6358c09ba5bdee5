"""MLflow helpers shared by every component: connect, fail clearly, nest runs."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubeforge.core.config import default_tracking_uri, home
from kubeforge.core.errors import KubeforgeError, describe_failure

EXPERIMENT = "kubeforge"


def connect(tracking_uri: str = "", experiment: str = EXPERIMENT) -> str:
    """Point MLflow at ``tracking_uri`` (or the default) and ``experiment``; prove it answers.

    Returns:
        The tracking URI in use.

    Raises:
        KubeforgeError: The tracking server or store cannot be reached.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    # An unreachable server should fail in seconds, not after minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means "unreachable"
        raise KubeforgeError(
            f"MLflow tracking store {uri!r} is unreachable: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            parameter="mlflow_tracking_uri",
        ) from exc
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        artifacts = home() / "mlartifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment)
    return uri


def error_file() -> Path:
    """Where a failed stage leaves its one-line error for the CLI (the run's log folder)."""
    run_dir = os.environ.get("KUBEFORGE_RUN_DIR")
    return Path(run_dir) / "error.txt" if run_dir else home() / "last_error.txt"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (torchrun's workers), user + system."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _gpu_devices() -> int:
    """GPUs this process used: CUDA initialised here (without importing torch for it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return 0
    return int(torch.cuda.device_count())


def stage_cost(started: float) -> dict[str, float]:
    """The stage's cost so far: wall seconds, CPU seconds, GPU seconds (wall x GPUs used)."""
    wall = time.perf_counter() - started
    return {
        "stage_seconds": round(wall, 3),
        "cpu_seconds": round(_cpu_seconds(), 3),
        "gpu_seconds": round(wall * _gpu_devices(), 3),
    }


@contextlib.contextmanager
def stage_run(stage: str, tracking_uri: str, parent_run_id: str = "") -> Iterator[Any]:
    """An MLflow run for one pipeline stage, nested under ``parent_run_id`` when given.

    Logs the stage's cost (``stage_seconds``, ``cpu_seconds`` since the process started,
    ``gpu_seconds``) whether it succeeds or fails. Any failure leaves one line for the CLI
    (:func:`error_file`): a Kubeforge error's message, or another exception's type, message and
    the user's file and line; the traceback stays in the task's log.
    """
    import mlflow

    started = time.perf_counter()
    connect(tracking_uri)
    tags = {"kubeforge.stage": stage}
    experiment_id = None
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
        # A stage lands in its pipeline run's experiment, whichever the run was started in.
        experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    with mlflow.start_run(run_name=stage, tags=tags, experiment_id=experiment_id) as run:
        try:
            yield run
        except Exception as exc:
            # The local runner only sees a failed subprocess; leave the message for the CLI.
            line = describe_failure(exc)
            path = error_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{stage}: {line}\n")
            mlflow.set_tag("kubeforge.error", line[:5000])
            raise
        finally:
            mlflow.log_metrics(stage_cost(started))
