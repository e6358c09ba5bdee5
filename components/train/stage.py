"""The train stage as the component runs it: check, train here or as a PyTorchJob, log."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubeforge.components.common.params import parse_hidden, parse_selector
from kubeforge.components.train.trainer import TrainConfig, TrainParams, TrainResult, run_local
from kubeforge.core.config import IMAGE, home
from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.core.tracking import stage_run

BACKENDS = ("local", "pytorchjob")


def run_train(
    params: TrainParams,
    train_path: str,
    val_path: str,
    model_out: Any,
    metrics_out: Any,
    tracking_uri: str,
    parent_run_id: str,
) -> TrainResult:
    """Train and fill the KFP outputs; checkpoints live under the run's config hash to resume."""
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
    # Same config and same data -> same checkpoint folder, so a retried step resumes.
    settings = {**asdict(config), "train_path": "", "val_path": ""}
    digest = hashlib.sha256(json.dumps(settings).encode())
    for path in (train_path, val_path):
        digest.update(Path(path).read_bytes())
    config.output_dir = str(home() / "train" / digest.hexdigest()[:16])
    with stage_run("train", tracking_uri, parent_run_id):
        mlflow.log_params(asdict(params))
        result = _run_pytorchjob(config) if params.backend == "pytorchjob" else run_local(config)
        mlflow.log_metrics(
            {
                "val_accuracy": result.val_accuracy,
                "train_loss": result.train_loss,
                "samples_per_second": result.samples_per_second,
                "resumed_from_epoch": result.resumed_from_epoch,
            }
        )
        mlflow.log_artifact(str(Path(config.output_dir) / "model.pt"), "teacher")
        shutil.copyfile(Path(config.output_dir) / "model.pt", model_out.path)
        model_out.metadata.update(
            {"val_accuracy": result.val_accuracy, "parameters": result.parameters}
        )
        for key_name in ("val_accuracy", "train_loss", "samples_per_second"):
            metrics_out.log_metric(key_name, float(getattr(result, key_name)))
    return result


def _run_pytorchjob(config: TrainConfig) -> TrainResult:
    """Run training as a PyTorchJob; the pods must share ``output_dir`` (a volume) with us."""
    from kubeforge.components.train.pytorchjob import (
        build_pytorchjob,
        submit_pytorchjob,
        wait_for_pytorchjob,
    )

    params = config.params
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.to_json())
    client = api_client()
    name = f"kubeforge-train-{out.name}"
    manifest = build_pytorchjob(
        name,
        params.namespace,
        IMAGE,
        ["python", "-m", "kubeforge.components.train.trainer", str(out / "config.json")],
        workers=params.workers,
        gpus_per_replica=params.gpus_per_replica,
        node_selector=parse_selector(params.node_selector),
    )
    submit_pytorchjob(client, manifest)
    outcome = wait_for_pytorchjob(client, params.namespace, name, timeout=6 * 3600)
    if outcome != "Succeeded":
        raise KubeforgeError(f"PyTorchJob {params.namespace}/{name} {outcome}")
    return TrainResult(**json.loads((out / "result.json").read_text()))
