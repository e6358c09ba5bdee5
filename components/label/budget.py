"""The label budget curve: label accuracy as the gold set grows (where more labels stop paying).

Each point spends a share of the training rows' labels as gold, builds the labelling functions
and the label model from it, and scores the labels on the rows whose labels it did not spend,
beside majority vote and a model trained on the gold rows only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kubeforge.components.common.splits import LoadedSplit
from kubeforge.components.label.labeling import LabelParams, label_split
from kubeforge.core.errors import KubeforgeError

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)


def budget_curve(
    train: LoadedSplit, params: LabelParams, work: Path, fractions: tuple[float, ...] = FRACTIONS
) -> list[dict[str, Any]]:
    """One point per gold fraction; a fraction too small for 2 gold rows per class says so.

    Raises:
        KubeforgeError: The split has fewer than two labelled classes, or no fraction could be
            measured.
    """
    known = train.label_indices()
    if len(np.unique(known[known >= 0])) < 2:
        raise KubeforgeError(
            "the label budget curve needs labelled rows of at least two classes", "label_column"
        )
    points: list[dict[str, Any]] = []
    for fraction in fractions:
        point: dict[str, Any] = {"fraction": fraction}
        try:
            report = label_split(
                train, work / f"gold-{fraction}", replace(params, gold_budget=fraction)
            )
        except KubeforgeError as exc:
            if exc.parameter != "gold_budget":
                raise
            point["skipped"] = str(exc)
            points.append(point)
            continue
        point.update(
            gold_rows=report.gold_rows,
            label_model_accuracy=report.label_model_accuracy,
            majority_vote_accuracy=report.majority_vote_accuracy,
            gold_only_accuracy=report.gold_only_accuracy,
            estimated_accuracy=report.estimated_accuracy,
        )
        points.append(point)
    if not any("gold_rows" in p for p in points):
        raise KubeforgeError(
            f"no gold fraction of {list(fractions)} leaves 2 gold rows per class in "
            f"{len(known)} training rows; add larger fractions",
            "fractions",
        )
    return points
