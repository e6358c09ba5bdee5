"""The classifier train builds and saves, and distill, deploy and `kubeforge serve` load."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and data contract of a saved classifier."""

    n_features: int
    hidden: tuple[int, ...]
    classes: tuple[str, ...]
    feature_columns: tuple[str, ...]


class Classifier(nn.Module):
    """Standardises raw features, then an MLP; returns class logits."""

    def __init__(self, spec: ModelSpec, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))
        layers: list[nn.Module] = []
        width = spec.n_features
        for size in spec.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, len(spec.classes)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for raw feature rows."""
        mean = self.get_buffer("mean")
        std = self.get_buffer("std")
        out: torch.Tensor = self.net((x - mean) / std)
        return out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def serialized_bytes(model: nn.Module) -> int:
    """Size of the model's state dict as saved by ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def save(model: Classifier, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Save spec + weights atomically (a quantized model is saved whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"spec": asdict(model.spec), "model": model, "extra": extra or {}}, tmp)
    tmp.replace(path)


def load(path: str | Path) -> Classifier:
    """Load a model written by :func:`save`."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=False)
    model: Classifier = blob["model"]
    model.eval()
    return model


def predict(model: nn.Module, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities for a feature matrix."""
    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            chunk = torch.tensor(features[start : start + batch_size], dtype=torch.float32)
            outs.append(torch.softmax(model(chunk), dim=1).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def accuracy(model: nn.Module, features: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on labelled rows."""
    return float((predict(model, features).argmax(axis=1) == labels).mean())
