"""Figures the label stage logs to MLflow: per-LF coverage/conflict, and the label budget curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def lf_figure(stats: list[dict[str, Any]], path: Path) -> Path:
    """Bars of coverage, conflict and held-out accuracy per labelling function, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [str(s["name"]) for s in stats]
    series = {
        "coverage": [float(s["coverage"]) for s in stats],
        "conflict": [float(s["conflict"]) for s in stats],
        "accuracy on held-out gold": [
            float(s["accuracy_on_known"]) if s["accuracy_on_known"] is not None else np.nan
            for s in stats
        ],
    }
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names)), 4.0))
    width = 0.8 / len(series)
    at = np.arange(len(names))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(at + (i - 1) * width, np.nan_to_num(values), width, label=label)
    ax.set_xticks(at, names, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of rows / accuracy")
    ax.set_title("Labelling functions: coverage, conflict, held-out accuracy")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def budget_figure(points: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Accuracy vs gold labels spent: label model, majority vote and gold-only model, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [p for p in points if p.get("label_model_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    spent = [p["gold_rows"] for p in measured]
    for key, label, style in (
        ("label_model_accuracy", "label model", "o-"),
        ("majority_vote_accuracy", "majority vote", "s--"),
        ("gold_only_accuracy", "model on gold rows only", "^:"),
    ):
        ax.plot(spent, [p[key] for p in measured], style, label=label)
    for p in measured:
        ax.annotate(f"{p['fraction']:.0%}", (p["gold_rows"], p["label_model_accuracy"]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(spent, [str(n) for n in spent])
    ax.minorticks_off()
    ax.set_xlabel("gold labels spent (rows, log scale)")
    ax.set_ylabel("accuracy on the rows without gold")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
