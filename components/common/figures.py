"""Figures the stages log to their MLflow runs: confusion matrices, curves, model comparisons.

Each function returns a matplotlib ``Figure`` drawn off-screen (Agg); the caller logs it with
``mlflow.log_figure`` and closes it. matplotlib is imported here only, when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_counts(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``counts[i, j]``: rows of true class ``i`` predicted as ``j`` (unlabelled rows left out)."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    keep = (truth >= 0) & (predicted >= 0)
    np.add.at(counts, (truth[keep], predicted[keep]), 1)
    return counts


def confusion_figure(
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    classes: Sequence[str],
) -> Any:
    """One confusion matrix per model (``{"teacher": pred, ...}``), side by side, with counts."""
    plt = _pyplot()
    n = len(classes)
    fig, axes = plt.subplots(
        1, len(predictions), figsize=(4.2 * len(predictions), 4.0), squeeze=False
    )
    for ax, (name, predicted) in zip(axes[0], predictions.items(), strict=True):
        counts = confusion_counts(truth, predicted, n)
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        ax.imshow(counts, cmap="Blues")
        ax.set_title(f"{name}: accuracy {accuracy:.3f} on {counts.sum()} rows", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = range(n)
        ax.set_xticks(ticks, [str(c) for c in classes], fontsize=7, rotation=90)
        ax.set_yticks(ticks, [str(c) for c in classes], fontsize=7)
        if n <= 12:
            top = counts.max() or 1
            for (i, j), value in np.ndenumerate(counts):
                if value:
                    color = "white" if value > top / 2 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return fig


def curve_figure(series: Mapping[str, Sequence[float]], xlabel: str, title: str) -> Any:
    """Lines over steps or epochs (``{"loss": [...], ...}``), one axis each."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items(), strict=True):
        ax.plot(range(1, len(values) + 1), list(values), marker="." if len(values) < 40 else "")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def comparison_figure(
    rows: Mapping[str, Mapping[str, float]], measures: Sequence[tuple[str, str]], title: str
) -> Any:
    """Bars of each measure for each model: ``rows["teacher"]["accuracy"]``.

    Args:
        rows: Model name -> measure -> value.
        measures: ``(key, axis label)`` of each measure, one panel each.
        title: The figure's title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(measures), figsize=(3.3 * len(measures), 3.2), squeeze=False)
    names = list(rows)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for ax, (key, label) in zip(axes[0], measures, strict=True):
        values = [rows[name][key] for name in names]
        bars = ax.bar(names, values, color=colors[: len(names)])
        ax.set_title(label, fontsize=9)
        for bar, value in zip(bars, values, strict=True):
            text = f"{value:.3f}" if value < 100 else f"{value:,.0f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)  # fmt: skip
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
