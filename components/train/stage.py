"""The train stage as the component runs it: check, train here or on a cluster, log.

On a cluster (``backend=pytorchjob`` or ``trainjob``) the pods share no disk with the step: the
step puts the config and the data under one root URI, the workers read them, checkpoint and write
the model there, and the step fetches the model back. The root is the MLflow artifact store
(``mlflow-artifacts:``, served by ``mlflow server --serve-artifacts``) or, when the KFP pipeline
root is an object store, beside the step's own output artifact (fsspec).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from kubeforge.components.common.constraints import BACKENDS
from kubeforge.components.common.params import parse_hidden, parse_selector, parse_tolerations
from kubeforge.components.common.splits import load_split
from kubeforge.components.train.jobs import (
    JobKind,
    job_gpu_hours,
    job_pods,
    job_run_seconds,
    submit_job,
    wait_for_job,
)
from kubeforge.components.train.runtime import (
    RUN_SECONDS,
    TRAIN_FEATURES,
    TRAIN_ROWS,
    RuntimeEstimate,
    estimate_runtime,
    parse_expected_runtime,
)
from kubeforge.components.train.store import Store, is_remote, join
from kubeforge.components.train.trainer import (
    WORKER_MODULE,
    TrainConfig,
    TrainParams,
    TrainResult,
    read_result,
    run_local,
)
from kubeforge.core.config import IMAGE, home
from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.core.tracking import stage_run

CLUSTER_BACKENDS = ("pytorchjob", "trainjob")


def run_train(
    params: TrainParams,
    train_path: str,
    val_path: str,
    model_out: Any,
    metrics_out: Any,
    tracking_uri: str,
    parent_run_id: str,
    train_uri: str = "",
    val_uri: str = "",
) -> TrainResult:
    """Train and fill the KFP outputs; checkpoints live under the run's config hash to resume.

    ``train_uri``/``val_uri`` are the input artifacts' own URIs: on a cluster, workers read an
    object-store URI directly instead of a copy in the MLflow artifact store.
    """
    import mlflow

    if params.backend not in BACKENDS:
        raise KubeforgeError(
            f"backend must be one of {BACKENDS}, got {params.backend!r}", "backend"
        )
    for name in ("epochs", "batch_size", "nproc"):
        value = getattr(params, name)
        if value < 1:
            raise KubeforgeError(f"{name} must be at least 1, got {value}", name)
    parse_hidden(params.hidden)  # refuse bad widths here, before any process starts
    config = TrainConfig(train_path=train_path, val_path=val_path, output_dir="", params=params)
    # Same config and same data -> same checkpoint folder, so a retried step resumes (the
    # declared run time only informs the GPU pool: changing it keeps the checkpoints).
    settings = {
        **asdict(config),
        "train_path": "",
        "val_path": "",
        "params": {**asdict(params), "expected_runtime": ""},
    }
    digest = hashlib.sha256(json.dumps(settings).encode())
    for path in (train_path, val_path):
        digest.update(Path(path).read_bytes())
    key = digest.hexdigest()[:16]
    config.output_dir = str(home() / "train" / key)
    runtime_setting = parse_expected_runtime(params.expected_runtime)  # refused before any work
    split = load_split(train_path)
    rows, features = int((split.label_indices() >= 0).sum()), len(split.feature_columns)
    with stage_run("train", tracking_uri, parent_run_id) as run:
        mlflow.log_params(asdict(params))
        mlflow.log_metrics({TRAIN_ROWS: rows, TRAIN_FEATURES: features})
        expected = estimate_runtime(
            runtime_setting, asdict(params), rows, features, run.info.experiment_id
        )
        mlflow.set_tag("kubeforge.expected_runtime", expected.source)
        if expected.seconds is not None:
            mlflow.log_metric("expected_runtime_seconds", expected.seconds)
        if params.backend in CLUSTER_BACKENDS:
            root = remote_root(str(getattr(model_out, "uri", "")), key)
            config_uri = prepare_remote(config, root, train_uri, val_uri)
            client = api_client()
            job = run_on_cluster(config_uri, params, client=client, expected=expected)
            # What the job's pods held on the cluster: the run's cost reads it from here.
            pods = job_pods(client, job_kind(params.backend), params.namespace, job)
            held = job_gpu_hours(pods)
            if held is not None:
                mlflow.log_metric("gpu_hours_held", held)
            ran = job_run_seconds(pods)
            result = collect_remote(root, Path(config.output_dir))
        else:
            started = time.monotonic()
            result = run_local(config)
            ran = time.monotonic() - started
        if ran is not None:
            mlflow.log_metric(RUN_SECONDS, ran)  # what later runs learn their run time from
        mlflow.log_metrics(
            {
                "val_accuracy": result.val_accuracy,
                "train_loss": result.train_loss,
                "samples_per_second": result.samples_per_second,
                "resumed_from_epoch": result.resumed_from_epoch,
                "resumed_from_step": result.resumed_from_step,
            }
        )
        log_training_curve(result)
        mlflow.log_artifact(str(Path(config.output_dir) / "model.pt"), "teacher")
        shutil.copyfile(Path(config.output_dir) / "model.pt", model_out.path)
        model_out.metadata.update(
            {"val_accuracy": result.val_accuracy, "parameters": result.parameters}
        )
        for key_name in ("val_accuracy", "train_loss", "samples_per_second"):
            metrics_out.log_metric(key_name, float(getattr(result, key_name)))
    return result


def log_training_curve(result: TrainResult) -> None:
    """Per-epoch ``epoch_train_loss`` / ``epoch_val_accuracy`` and their PNG, in the active run."""
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.entities import Metric

    from kubeforge.components.common.figures import curve_figure

    run = mlflow.active_run()
    if not result.history or run is None:
        return
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"epoch_{name}", float(point[name]), now, int(point["epoch"]))
        for point in result.history
        for name in ("train_loss", "val_accuracy")
    ]
    # One request per 1000 metrics (MLflow's log_batch limit).
    for start in range(0, len(metrics), 1000):
        mlflow.tracking.MlflowClient().log_batch(
            run.info.run_id, metrics=metrics[start : start + 1000]
        )
    figure = curve_figure(
        {
            "train loss (mean over ranks)": [p["train_loss"] for p in result.history],
            "validation accuracy": [p["val_accuracy"] for p in result.history],
        },
        "epoch",
        f"teacher training: {result.world_size} worker(s) on {result.device}, "
        f"val accuracy {result.val_accuracy:.3f}",
    )
    mlflow.log_figure(figure, "figures/teacher_training_curve.png")
    plt.close(figure)


def remote_root(model_uri: str, key: str) -> str:
    """Where a cluster run's pods exchange files with the step, keyed by config and data.

    Beside the step's output artifact when the KFP pipeline root is an object store; otherwise
    under the MLflow experiment's artifact root (``mlflow-artifacts:`` with the chart's server).

    Raises:
        KubeforgeError: neither is reachable from pods (MLflow stores artifacts on local disk).
    """
    import mlflow

    if is_remote(model_uri):
        return join(model_uri.rstrip("/").rpartition("/")[0], f"train-{key}")
    artifacts = mlflow.get_artifact_uri()  # <experiment root>/<run id>/artifacts
    if not is_remote(artifacts):
        raise KubeforgeError(
            f"a cluster backend hands data to its pods through the MLflow artifact store, but "
            f"MLflow keeps artifacts on this machine ({artifacts}): set mlflow_tracking_uri to an "
            "`mlflow server --serve-artifacts` (the chart runs one), or use an object-store "
            "pipeline root",
            "mlflow_tracking_uri",
        )
    experiment_root = artifacts.rstrip("/").rsplit("/", 2)[0]
    return join(experiment_root, f"kubeforge-train/{key}")


def prepare_remote(config: TrainConfig, root: str, train_uri: str = "", val_uri: str = "") -> str:
    """Put the data (unless already remote) and the workers' config under ``root``.

    Returns:
        The config's URI: the one argument of the workers' command.
    """
    store = Store(root)
    sources = {}
    for name, path, uri in (
        ("train", config.train_path, train_uri),
        ("val", config.val_path, val_uri),
    ):
        if is_remote(uri):
            sources[name] = uri  # an object-store pipeline root: the artifact itself
        else:
            # A KFP artifact's file may have no suffix: the workers look for ``*.parquet``.
            local = Path(path)
            store.upload(
                local, f"inputs/{name}/{name}.parquet" if local.is_file() else f"inputs/{name}"
            )
            sources[name] = join(root, f"inputs/{name}")
    remote = replace(config, train_path=sources["train"], val_path=sources["val"], output_dir=root)
    store.write_bytes("config.json", remote.to_json().encode())
    return join(root, "config.json")


def collect_remote(root: str, local_dir: Path) -> TrainResult:
    """The workers' result; their model copied to ``local_dir/model.pt``."""
    store = Store(root)
    result = read_result(store)
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / "model.pt").write_bytes(store.read_bytes("model.pt"))
    return result


def job_kind(backend: str) -> JobKind:
    """The training job kind of a cluster ``backend`` (``pytorchjob`` or ``trainjob``)."""
    if backend == "trainjob":
        from kubeforge.components.train.trainjob import TRAINJOB

        return TRAINJOB
    from kubeforge.components.train.pytorchjob import PYTORCHJOB

    return PYTORCHJOB


def worker_env() -> dict[str, str]:
    """What workers need to reach the store (the tracking URI resolves ``mlflow-artifacts:``)."""
    import mlflow

    return {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}


def run_on_cluster(
    config_uri: str,
    params: TrainParams,
    client: Any = None,
    timeout: float = 6 * 3600,
    expected: RuntimeEstimate | None = None,
) -> str:
    """Run the workers as a PyTorchJob or a TrainJob and wait until it succeeds.

    ``expected`` is the run time the job's pods declare to the GPU pool (none when None).

    Returns:
        The job's name (get-or-create: a retried step finds the job it started).

    Raises:
        KubeforgeError: the job failed, or did not finish within ``timeout`` seconds.
    """
    client = client or api_client()
    name = f"kubeforge-train-{hashlib.sha256(config_uri.encode()).hexdigest()[:12]}"
    selector = parse_selector(params.node_selector)
    tolerations = parse_tolerations(params.tolerations)
    kind = job_kind(params.backend)
    if params.backend == "trainjob":
        from kubeforge.components.train.trainjob import build_trainjob

        manifest = build_trainjob(
            name,
            params.namespace,
            IMAGE,
            ["torchrun", "-m", WORKER_MODULE, config_uri],
            nodes=params.workers + 1,
            gpus_per_node=params.gpus_per_replica,
            node_selector=selector,
            tolerations=tolerations,
            env=worker_env(),
            pod_annotations=expected.annotations() if expected else None,
        )
    else:
        from kubeforge.components.train.pytorchjob import build_pytorchjob

        manifest = build_pytorchjob(
            name,
            params.namespace,
            IMAGE,
            ["python", "-m", WORKER_MODULE, config_uri],
            workers=params.workers,
            gpus_per_replica=params.gpus_per_replica,
            node_selector=selector,
            tolerations=tolerations,
            env=worker_env(),
            pod_annotations=expected.annotations() if expected else None,
        )
    submit_job(client, kind, manifest)
    outcome = wait_for_job(client, kind, params.namespace, name, timeout)
    if outcome != kind.succeeded:
        raise KubeforgeError(f"{kind.kind} {params.namespace}/{name} {outcome}")
    return name
