"""A KFP output artifact as a stage function sees it, for calling a stage outside a pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LocalArtifact:
    """A local ``path``, no ``uri``, ``metadata`` to fill, and the metrics logged on it."""

    def __init__(self, path: str | Path) -> None:
        self.path, self.uri = str(path), ""
        self.metadata: dict[str, Any] = {}
        self.logged: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        """Keep the metric, as a KFP ``Metrics`` artifact does."""
        self.logged[name] = value
