"""The train stage as the component runs it."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubeforge.components.train.trainer import TrainConfig, TrainResult, run_local
from kubeforge.core.config import IMAGE, home
from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.core.tracking import stage_run

BACKENDS = ("local", "pytorchjob")


def parse_hidden(hidden: str) -> list[int]:
    """``"256,256"`` -> ``[256, 256]``."""
    try:
        sizes = [int(s) for s in hidden.split(",") if s.strip()]
    except ValueError as exc:
        raise KubeforgeError(
            f"hidden must be comma-separated integers, got {hidden!r}", "hidden"
        ) from exc
    if not sizes or min(sizes) <= 0:
        raise KubeforgeError(f"hidden must list positive widths, got {hidden!r}", "hidden")
    return sizes


def parse_selector(text: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}``."""
    out = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise KubeforgeError(f"node_selector entry {pair!r} is not key=value", "node_selector")
        out[key] = value
    return out


def run_train(
    train_path: str,
    val_path: str,
    hidden: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    grad_accum_steps: int,
    nproc: int,
    backend: str,
    namespace: str,
    workers: int,
    gpus_per_replica: int,
    node_selector: str,
    seed: int,
    tracking_uri: str,
    parent_run_id: str,
    model_out: Any,
    metrics_out: Any,
) -> TrainResult:
    """Train and fill the KFP outputs; checkpoints live under the run's config hash to resume."""
    import mlflow

    if backend not in BACKENDS:
        raise KubeforgeError(f"backend must be one of {BACKENDS}, got {backend!r}", "backend")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("nproc", nproc)):
        if value < 1:
            raise KubeforgeError(f"{name} must be at least 1, got {value}", name)
    config = TrainConfig(
        train_path=train_path,
        val_path=val_path,
        output_dir="",
        hidden=parse_hidden(hidden),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        grad_accum_steps=grad_accum_steps,
        seed=seed,
    )
    # Same config and same data -> same checkpoint folder, so a retried step resumes.
    settings = {**asdict(config), "train_path": "", "val_path": ""}
    digest = hashlib.sha256(json.dumps([settings, nproc, backend]).encode())
    for path in (train_path, val_path):
        digest.update(Path(path).read_bytes())
    key = digest.hexdigest()[:16]
    config.output_dir = str(home() / "train" / key)
    with stage_run("train", tracking_uri, parent_run_id):
        mlflow.log_params(
            {
                "hidden": hidden,
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": learning_rate,
                "grad_accum_steps": grad_accum_steps,
                "nproc": nproc,
                "backend": backend,
            }
        )
        if backend == "pytorchjob":
            result = _run_pytorchjob(config, namespace, workers, gpus_per_replica, node_selector)
        else:
            result = run_local(config, nproc=nproc)
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


def _run_pytorchjob(
    config: TrainConfig, namespace: str, workers: int, gpus: int, node_selector: str
) -> TrainResult:
    """Run training as a PyTorchJob; the pods must share ``output_dir`` (a volume) with us."""
    from kubeforge.components.train.pytorchjob import (
        build_pytorchjob,
        submit_pytorchjob,
        wait_for_pytorchjob,
    )

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config)))
    client = api_client()
    name = f"kubeforge-train-{out.name}"
    manifest = build_pytorchjob(
        name,
        namespace,
        IMAGE,
        ["python", "-m", "kubeforge.components.train.trainer", str(out / "config.json")],
        workers=workers,
        gpus_per_replica=gpus,
        node_selector=parse_selector(node_selector),
    )
    submit_pytorchjob(client, manifest)
    outcome = wait_for_pytorchjob(client, namespace, name, timeout=6 * 3600)
    if outcome != "Succeeded":
        raise KubeforgeError(f"PyTorchJob {namespace}/{name} {outcome}")
    return TrainResult(**json.loads((out / "result.json").read_text()))
