"""MLflow helpers shared by every component: connect, fail clearly, nest runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from kubeforge.core.config import default_tracking_uri, home
from kubeforge.core.errors import KubeforgeError

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


@contextlib.contextmanager
def stage_run(stage: str, tracking_uri: str, parent_run_id: str = "") -> Iterator[Any]:
    """An MLflow run for one pipeline stage, nested under ``parent_run_id`` when given."""
    import mlflow

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
        except KubeforgeError as exc:
            # The local runner only sees a failed subprocess; leave the message for the CLI.
            (home() / "last_error.txt").write_text(f"{stage}: {exc}\n")
            mlflow.set_tag("kubeforge.error", str(exc)[:5000])
            raise
