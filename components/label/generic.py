"""Default labelling functions for any numeric data: built from the gold rows, on standard scores.

No feature is assumed to share a scale with another (pixels, money and ratios side by side), so
every function works on features standardised over all rows. Each one reads the small gold set
in its own way, so their mistakes differ and the label model can weigh them:

- ``nearest_prototype``: the nearest class centroid of the gold rows, when clearly nearest;
- ``knn_gold``: the k nearest gold rows, when most of them agree;
- ``label_spreading``: gold labels spread over a k-NN graph of all rows;
- ``clusters_<n>``: k-means clusters of all rows, each named by the gold rows inside it; the
  cluster counts adapt to the number of rows and classes and never exceed what the data allows.

The label stage adds the model-assisted function (a classifier fit on the gold rows) to these.
"""

from __future__ import annotations

import numpy as np

from kubeforge.components.label.weak import ABSTAIN, LabelingFunction, fixed_votes


def standardise(features: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standard scores of ``features`` and ``others`` with the mean/std of ``features``.

    A constant column gets scale 1 (it stays constant); non-finite values become the mean.
    """
    x = np.asarray(features, dtype=np.float64)
    finite = np.isfinite(x)
    mean = np.nanmean(np.where(finite, x, np.nan), axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    centred = np.where(finite, x, mean) - mean
    std = centred.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)

    def scale(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        return np.asarray((np.where(np.isfinite(v), v, mean) - mean) / std)

    return [centred / std, *(scale(o) for o in others)]


def squared_distances(rows: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, rows x points, without a rows x points x features array."""
    from sklearn.metrics import pairwise_distances

    return np.asarray(pairwise_distances(rows, points, metric="sqeuclidean"))


def cluster_counts(n_rows: int, n_classes: int, n_gold: int) -> list[int]:
    """Two k-means granularities that adapt to the data: a coarse and a finer one.

    Coarse: about one cluster per class; finer: a few per class, bounded by ``sqrt(rows)`` and by
    the gold rows that can name clusters. Never more clusters than rows (nor fewer than two).
    """
    upper = max(2, n_rows // 2)
    coarse = min(max(2, n_classes), upper)
    finer = min(max(coarse + 1, int(round(np.sqrt(n_rows))), 3 * n_classes), n_gold * 2, upper)
    return sorted({coarse, max(finer, coarse)})


def labeling_functions(
    gold_x: np.ndarray, gold_y: np.ndarray, features: np.ndarray, n_classes: int
) -> list[LabelingFunction]:
    """Build the default LFs from (gold X, gold y, all X, number of classes)."""
    x_all, x_gold = standardise(features, gold_x)
    lfs = [
        nearest_prototype(x_gold, gold_y, x_all, n_classes),
        knn_gold(x_gold, gold_y, x_all, n_classes),
        label_spreading(x_gold, gold_y, x_all, n_classes),
    ]
    for n_clusters in cluster_counts(len(x_all), n_classes, len(x_gold)):
        lfs.append(clusters_named_by_gold(x_gold, gold_y, x_all, n_classes, n_clusters))
    return lfs


def nearest_prototype(
    x_gold: np.ndarray, gold_y: np.ndarray, x_all: np.ndarray, n_classes: int, margin: float = 0.9
) -> LabelingFunction:
    """Vote the class whose gold centroid is nearest, when it is nearer by ``margin``."""
    present = np.unique(gold_y)
    centroids = np.stack([x_gold[gold_y == c].mean(axis=0) for c in present])
    dists = squared_distances(x_all, centroids)
    order = np.argsort(dists, axis=1)
    rows = np.arange(len(x_all))
    best = dists[rows, order[:, 0]]
    second = dists[rows, order[:, 1]] if len(present) > 1 else np.full(len(x_all), np.inf)
    votes = np.where(best < margin * second, present[order[:, 0]], ABSTAIN)
    return LabelingFunction("nearest_prototype", fixed_votes("nearest_prototype", votes))


def knn_gold(
    x_gold: np.ndarray, gold_y: np.ndarray, x_all: np.ndarray, n_classes: int
) -> LabelingFunction:
    """Vote the majority of the k nearest gold rows when at least 2/3 of them agree."""
    k = int(min(5, max(1, np.bincount(gold_y).max()), len(x_gold)))
    dists = squared_distances(x_all, x_gold)
    nearest = np.argsort(dists, axis=1)[:, :k]
    counts = np.zeros((len(x_all), n_classes))
    np.add.at(counts, (np.repeat(np.arange(len(x_all)), k), gold_y[nearest].ravel()), 1.0)
    agree = counts.max(axis=1) / k >= 2 / 3 - 1e-9
    votes = np.where(agree, counts.argmax(axis=1), ABSTAIN)
    return LabelingFunction("knn_gold", fixed_votes("knn_gold", votes))


def label_spreading(
    x_gold: np.ndarray, gold_y: np.ndarray, x_all: np.ndarray, n_classes: int
) -> LabelingFunction:
    """Gold labels spread over a k-NN graph of all rows; votes above 0.6 of the spread mass."""
    from sklearn.semi_supervised import LabelSpreading

    stacked = np.vstack([x_gold, x_all])
    seeds = np.concatenate([gold_y, np.full(len(x_all), -1)])
    neighbours = int(min(7, len(stacked) - 1))
    spread = LabelSpreading(kernel="knn", n_neighbors=neighbours, alpha=0.2, max_iter=100)
    spread.fit(stacked, seeds)
    dist = np.zeros((len(x_all), n_classes))
    known = spread.classes_[spread.classes_ >= 0]
    dist[:, known] = spread.label_distributions_[len(x_gold) :]
    dist = np.nan_to_num(dist)
    confident = dist.max(axis=1) >= 0.6
    votes = np.where(confident, dist.argmax(axis=1), ABSTAIN)
    return LabelingFunction("label_spreading", fixed_votes("label_spreading", votes))


def clusters_named_by_gold(
    x_gold: np.ndarray,
    gold_y: np.ndarray,
    x_all: np.ndarray,
    n_classes: int,
    n_clusters: int,
    purity: float = 0.6,
) -> LabelingFunction:
    """k-means clusters of all rows; a cluster votes the class of its gold rows if pure enough."""
    from sklearn.cluster import KMeans

    n_clusters = int(min(n_clusters, len(x_all)))
    km = KMeans(n_clusters=n_clusters, n_init=3, random_state=0).fit(x_all)
    gold_clusters = km.predict(x_gold)
    names = np.full(n_clusters, ABSTAIN)
    for cluster in range(n_clusters):
        members = gold_y[gold_clusters == cluster]
        if len(members):
            counts = np.bincount(members, minlength=n_classes)
            if counts.max() / counts.sum() >= purity:
                names[cluster] = counts.argmax()
    name = f"clusters_{n_clusters}"
    return LabelingFunction(name, fixed_votes(name, names[km.labels_]))
