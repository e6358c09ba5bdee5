"""Weak labels from a gold set, and honest estimates of their accuracy by cross-fitting.

The labelling functions are built from the gold rows, so scoring them on those same rows says
nothing (every nearest-prototype vote of a gold row is its own label). Cross-fitting splits the
gold rows into folds; for each fold the functions, the label model, the gold-only baseline and
an end model on the weak labels are all built without that fold, and the fold's rows score them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kubeforge.components.label.weak import (
    LabelModel,
    LfFactory,
    class_probabilities,
    gold_classifier,
    majority_vote,
    model_assisted_lf,
)


@dataclass
class WeakLabels:
    """The LFs' votes on all rows and what the label model and majority vote make of them."""

    names: list[str]
    votes: np.ndarray
    posterior: np.ndarray
    majority: np.ndarray
    model: LabelModel

    def kept(self, clamp: np.ndarray, min_confidence: float) -> np.ndarray:
        """Rows the stage keeps: gold rows, and covered rows at or above ``min_confidence``."""
        covered = (self.votes >= 0).any(axis=1)
        return np.asarray((clamp >= 0) | (covered & (self.posterior.max(axis=1) >= min_confidence)))


def weak_labels(
    features: np.ndarray,
    clamp: np.ndarray,
    n_classes: int,
    factory: LfFactory,
    confidence_threshold: float,
    seed: int,
) -> WeakLabels:
    """Build the LFs from the rows with ``clamp >= 0``, apply them, fit the label model."""
    gold = clamp >= 0
    lfs = factory(features[gold], clamp[gold], features, n_classes)
    lfs.append(model_assisted_lf(features[gold], clamp[gold], features, confidence_threshold, seed))
    votes = np.stack([lf(features) for lf in lfs], axis=1)
    model = LabelModel(n_classes=n_classes)
    posterior = model.fit_predict(votes, clamp=clamp)
    return WeakLabels(
        [lf.name for lf in lfs], votes, posterior, majority_vote(votes, n_classes), model
    )


def end_model_probabilities(
    features: np.ndarray, labels: np.ndarray, rows: np.ndarray, n_classes: int, seed: int
) -> np.ndarray:
    """A classifier trained on ``labels[rows]`` (gold + weak), as probabilities for all rows."""
    return class_probabilities(
        gold_classifier(features[rows], labels[rows], seed), features, n_classes
    )


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) when ``n`` is 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class CrossFit:
    """Held-out predictions for every gold row, each made without that row's fold."""

    folds: int
    truth: np.ndarray
    label_model: np.ndarray
    confidence: np.ndarray
    majority: np.ndarray
    gold_only: np.ndarray
    end_model: np.ndarray
    lf_votes: dict[str, np.ndarray] = field(default_factory=dict)

    def accuracy(self, predicted: np.ndarray, weights: np.ndarray, rows: np.ndarray) -> float:
        """Accuracy over ``rows``, each true class weighted by its share ``weights``.

        The gold rows are stratified (equal per class) while the data may not be; weighting each
        class's held-out accuracy by the class share of the labelled rows corrects for that.
        """
        total, weight = 0.0, 0.0
        for c, share in enumerate(weights):
            mine = rows & (self.truth == c)
            if mine.any() and share > 0:
                total += share * float((predicted[mine] == c).mean())
                weight += share
        return total / weight if weight else float("nan")

    def lf_accuracy(self, name: str) -> float:
        """Held-out accuracy of one LF on the gold rows it voted on (nan if it never voted)."""
        votes = self.lf_votes.get(name)
        if votes is None:
            return float("nan")
        voted = votes >= 0
        return float((votes[voted] == self.truth[voted]).mean()) if voted.any() else float("nan")


def cross_fit(
    features: np.ndarray,
    clamp: np.ndarray,
    n_classes: int,
    factory: LfFactory,
    confidence_threshold: float,
    min_confidence: float,
    seed: int,
    max_folds: int = 5,
) -> CrossFit | None:
    """Predict each gold row from LFs, label model and baselines built without its fold.

    Returns None when some class has fewer than two gold rows (no fold split keeps a class on
    both sides).
    """
    from sklearn.model_selection import StratifiedKFold

    gold_rows = np.where(clamp >= 0)[0]
    truth = clamp[gold_rows]
    counts = np.bincount(truth, minlength=n_classes)
    folds = int(min(max_folds, counts[counts > 0].min()))
    if folds < 2 or (counts > 0).sum() < 2:
        return None
    n = len(gold_rows)
    out = CrossFit(
        folds,
        truth,
        np.full(n, -1),
        np.zeros(n),
        np.full(n, -1),
        np.full(n, -1),
        np.full(n, -1),
    )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, held_idx in splitter.split(gold_rows, truth):
        held = gold_rows[held_idx]
        fold_clamp = clamp.copy()
        fold_clamp[held] = -1
        weak = weak_labels(features, fold_clamp, n_classes, factory, confidence_threshold, seed)
        out.label_model[held_idx] = weak.posterior[held].argmax(axis=1)
        out.confidence[held_idx] = weak.posterior[held].max(axis=1)
        out.majority[held_idx] = weak.majority[held].argmax(axis=1)
        for j, name in enumerate(weak.names):
            votes = out.lf_votes.setdefault(name, np.full(n, -1))
            votes[held_idx] = weak.votes[held, j]
        gold_only = gold_classifier(features[gold_rows[fit_idx]], truth[fit_idx], seed)
        out.gold_only[held_idx] = class_probabilities(gold_only, features[held], n_classes).argmax(
            1
        )
        # The end model learns from what the stage would keep, never from the held-out rows.
        labels = np.where(fold_clamp >= 0, fold_clamp, weak.posterior.argmax(axis=1))
        train_rows = weak.kept(fold_clamp, min_confidence)
        train_rows[held] = False
        end = end_model_probabilities(features, labels, train_rows, n_classes, seed)
        out.end_model[held_idx] = end[held].argmax(axis=1)
    return out
