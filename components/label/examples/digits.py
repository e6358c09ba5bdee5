"""Labelling functions for scikit-learn's digits (8x8 grey images as 64 pixel features).

Each LF sees the whole feature matrix and votes a class index per row or abstains (-1). They are
built from the small gold set: that is how a team with a few labels writes useful LFs for images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kubeforge.components.label.weak import ABSTAIN, LabelingFunction, confidence_lf


def labeling_functions(
    gold_x: np.ndarray, gold_y: np.ndarray, features: np.ndarray, n_classes: int
) -> list[LabelingFunction]:
    """Build the digits LFs: clusters named by gold, label spreading, nearest gold prototype."""
    from sklearn.cluster import KMeans
    from sklearn.semi_supervised import LabelSpreading

    scale = float(max(features.max(), 1e-9))
    x_all, x_gold = features / scale, gold_x / scale
    lfs: list[LabelingFunction] = []

    # Clusters of all rows, each named by the gold rows that fall into it (abstain if none).
    for wanted, seed in ((60, 0), (40, 1)):
        n_clusters = min(wanted, len(x_all))  # never more clusters than rows
        km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(x_all)
        gold_clusters = km.predict(x_gold)
        names = np.full(n_clusters, ABSTAIN)
        for cluster in range(n_clusters):
            members = gold_y[gold_clusters == cluster]
            if len(members):
                counts = np.bincount(members, minlength=n_classes)
                if counts.max() / counts.sum() >= 0.6:
                    names[cluster] = counts.argmax()
        votes = names[km.labels_]
        lfs.append(
            confidence_lf(f"kmeans_{n_clusters}", np.eye(n_classes + 1)[votes][:, :n_classes], 0.5)
        )

    # Label spreading over a k-NN graph of all rows, seeded with the gold labels.
    stacked = np.vstack([x_gold, x_all])
    seeds = np.concatenate([gold_y, np.full(len(x_all), -1)])
    spread = LabelSpreading(kernel="knn", n_neighbors=7, alpha=0.2, max_iter=100).fit(
        stacked, seeds
    )
    probs = np.zeros((len(x_all), n_classes))
    probs[:, spread.classes_[spread.classes_ >= 0]] = spread.label_distributions_[len(x_gold) :]
    lfs.append(confidence_lf("label_spreading", probs, 0.6))

    # Nearest gold prototype, only when it is clearly nearer than the nearest other class.
    dists = ((x_all[:, None, :] - x_gold[None, :, :]) ** 2).sum(axis=2)
    order = np.argsort(dists, axis=1)
    nearest = gold_y[order[:, 0]]
    best = dists[np.arange(len(x_all)), order[:, 0]]
    other = np.where(gold_y[None, :] != nearest[:, None], dists, np.inf).min(axis=1)
    votes = np.where(best < 0.7 * other, nearest, ABSTAIN)
    lfs.append(LabelingFunction("nearest_prototype", _fixed_votes(votes)))
    return lfs


def _fixed_votes(votes: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def vote(features: np.ndarray) -> np.ndarray:
        return votes

    return vote
