"""Where Kubeforge keeps local state, and the embedded defaults used when no cluster is around."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE = os.environ.get("KUBEFORGE_IMAGE", "ghcr.io/kubeforge/kubeforge:0.1.0")
"""The project image: holds the components' runtime and the operator (see the Dockerfile)."""

EXPECTED_RUNTIME_ANNOTATION = "kubeforge.io/expected-runtime-seconds"
"""Seconds a training pod is expected to run from its ``startTime``: train declares it on its
jobs' pod templates, the GPU pool's planner reads it to know when the pod's node frees."""


def home() -> Path:
    """Local state directory: ``$KUBEFORGE_HOME`` or ``.kubeforge/`` under the working directory."""
    return Path(os.environ.get("KUBEFORGE_HOME", ".kubeforge")).resolve()


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else MLflow on SQLite under :func:`home`."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    path = home() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"
