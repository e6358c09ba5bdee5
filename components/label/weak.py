"""Weak supervision: labelling functions, a label model that learns their accuracies, and reports.

A labelling function (LF) takes the feature matrix and returns one vote per row: a class index,
or :data:`ABSTAIN`. The label model is Dawid-Skene: per LF, a class-conditional confusion matrix
learned by EM, with the gold rows clamped to their known class. The report always carries the
majority-vote baseline beside it, because a label model does not always win.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubeforge.core.errors import KubeforgeError

ABSTAIN = -1

Votes = np.ndarray
LabelingFunctionFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LabelingFunction:
    """A named callable that votes a class index per row, or abstains with -1."""

    name: str
    fn: LabelingFunctionFn

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Apply to ``features``; check the shape and range of the votes."""
        votes = np.asarray(self.fn(features), dtype=np.int64)
        if votes.shape != (len(features),):
            raise KubeforgeError(
                f"labelling function {self.name!r} returned shape {votes.shape}, "
                f"expected ({len(features)},)",
                "labeling_functions",
            )
        return votes


LfFactory = Callable[[np.ndarray, np.ndarray, np.ndarray, int], list[LabelingFunction]]


def load_factory(spec: str) -> LfFactory:
    """Import ``module:function`` that builds the LFs from (gold X, gold y, all X, n_classes)."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "labeling_functions"
    try:
        module = importlib.import_module(module_name)
        factory: LfFactory = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise KubeforgeError(
            f"cannot import labelling functions {spec!r}: {exc}", "labeling_functions"
        ) from exc
    return factory


def fixed_votes(name: str, votes: np.ndarray) -> LabelingFunctionFn:
    """A vote function that returns ``votes`` computed beforehand for exactly these rows."""
    fixed = np.asarray(votes, dtype=np.int64)

    def vote(features: np.ndarray) -> np.ndarray:
        if len(features) != len(fixed):
            raise KubeforgeError(
                f"labelling function {name!r} was computed for {len(fixed)} rows, "
                f"not {len(features)}",
                "labeling_functions",
            )
        return fixed

    return vote


def confidence_lf(name: str, probabilities: np.ndarray, threshold: float) -> LabelingFunction:
    """An LF that votes the argmax of precomputed class probabilities above ``threshold``."""
    best = probabilities.argmax(axis=1)
    confident = probabilities.max(axis=1) >= threshold
    return LabelingFunction(name, fixed_votes(name, np.where(confident, best, ABSTAIN)))


def gold_classifier(gold_x: np.ndarray, gold_y: np.ndarray, seed: int) -> Any:
    """A logistic regression on standardised features, fit on the gold rows only.

    The model-assisted LF and the gold-only baseline are this one model, so the report compares
    weak supervision with exactly what the gold rows alone would give.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return model.fit(np.nan_to_num(gold_x), gold_y)


def class_probabilities(model: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """``model.predict_proba`` spread over all ``n_classes`` columns (absent classes get 0)."""
    probs = np.zeros((len(features), n_classes))
    probs[:, model.classes_] = model.predict_proba(np.nan_to_num(features))
    return probs


def model_assisted_lf(
    gold_x: np.ndarray, gold_y: np.ndarray, features: np.ndarray, threshold: float, seed: int
) -> LabelingFunction:
    """Model-assisted labels: a classifier fit on the gold rows, kept above ``threshold``."""
    model = gold_classifier(gold_x, gold_y, seed)
    n_classes = int(max(gold_y.max() + 1, len(model.classes_)))
    return confidence_lf(
        "model_assisted", class_probabilities(model, features, n_classes), threshold
    )


def majority_vote(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Class counts per row normalised to a distribution; all-abstain rows get uniform."""
    counts = np.zeros((votes.shape[0], n_classes))
    for j in range(votes.shape[1]):
        voted = votes[:, j] >= 0
        np.add.at(counts, (np.where(voted)[0], votes[voted, j]), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / n_classes)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), uniform)


@dataclass
class LabelModel:
    """Dawid-Skene label model: learns each LF's confusion matrix by EM.

    Attributes:
        n_classes: Number of classes.
        max_iter: EM iterations at most.
        smoothing: Dirichlet pseudo-count on every confusion-matrix cell.
    """

    n_classes: int
    max_iter: int = 100
    smoothing: float = 0.5
    confusion_: np.ndarray | None = None
    prior_: np.ndarray | None = None

    def fit_predict(self, votes: np.ndarray, clamp: np.ndarray | None = None) -> np.ndarray:
        """Fit on ``votes`` (rows × LFs) and return class posteriors per row.

        Args:
            votes: LF votes; -1 is an abstention.
            clamp: Per row a known class index (gold) or -1; known rows keep their class.
        """
        n_rows, n_lfs = votes.shape
        k = self.n_classes
        post = majority_vote(votes, k)
        known = clamp if clamp is not None else np.full(n_rows, -1)
        post = self._clamp(post, known)
        one_hot = [
            np.eye(k + 1)[np.where(votes[:, j] >= 0, votes[:, j], k)][:, :k] for j in range(n_lfs)
        ]
        for _ in range(self.max_iter):
            prior = post.mean(axis=0) + 1e-6
            prior /= prior.sum()
            # confusion[j, true, voted] = P(LF j votes `voted` | true class), given it voted.
            confusion = np.stack([post.T @ one_hot[j] + self.smoothing for j in range(n_lfs)])
            confusion /= confusion.sum(axis=2, keepdims=True)
            log_post = np.tile(np.log(prior), (n_rows, 1))
            for j in range(n_lfs):
                log_post += one_hot[j] @ np.log(confusion[j]).T
            log_post -= log_post.max(axis=1, keepdims=True)
            new = np.exp(log_post)
            new /= new.sum(axis=1, keepdims=True)
            new = self._clamp(new, known)
            delta = float(np.abs(new - post).max())
            post = new
            if delta < 1e-5:
                break
        self.confusion_, self.prior_ = confusion, prior
        return post

    def lf_accuracies(self) -> np.ndarray:
        """Learned accuracy of each LF when it votes: sum over classes of prior × diagonal."""
        if self.confusion_ is None or self.prior_ is None:
            raise RuntimeError("fit the label model first")
        diag = np.stack([np.diag(c) for c in self.confusion_])
        return np.asarray(diag @ self.prior_)

    def _clamp(self, post: np.ndarray, known: np.ndarray) -> np.ndarray:
        rows = np.where(known >= 0)[0]
        if len(rows):
            post = post.copy()
            post[rows] = 0.0
            post[rows, known[rows]] = 1.0
        return post


def lf_stats(
    names: list[str],
    votes: np.ndarray,
    learned: np.ndarray,
    held_out_accuracy: list[float] | None,
) -> list[dict[str, float | str]]:
    """Per-LF coverage, conflict, learned accuracy and accuracy on gold rows it did not see.

    ``held_out_accuracy`` comes from cross-fitting (the LF rebuilt without each gold fold); the
    LFs are built from the gold rows, so their accuracy on those rows would say nothing.
    """
    voted = votes >= 0
    stats: list[dict[str, float | str]] = []
    for j, name in enumerate(names):
        mine = voted[:, j]
        others = np.delete(votes, j, axis=1)
        disagree = ((others >= 0) & (others != votes[:, [j]])).any(axis=1)
        stats.append(
            {
                "name": name,
                "coverage": float(mine.mean()),
                "conflict": float((mine & disagree).mean()),
                "accuracy_on_known": held_out_accuracy[j] if held_out_accuracy else np.nan,
                "learned_accuracy": float(learned[j]),
            }
        )
    return stats


def likely_label_errors(
    features: np.ndarray, labels: np.ndarray, n_classes: int, seed: int, threshold: float = 0.1
) -> np.ndarray:
    """Rows whose label gets out-of-fold probability below ``threshold`` while another class wins.

    Confident-learning style: a classifier trained on the other folds disagrees strongly.
    """
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(labels), n_classes))
    counts = np.bincount(labels, minlength=n_classes)
    folds = int(min(5, counts[counts > 0].min()))
    if folds < 2:
        return np.zeros(len(labels), dtype=bool)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(features, labels):
        model = gold_classifier(features[train_idx], labels[train_idx], seed)
        probs[test_idx] = class_probabilities(model, features[test_idx], n_classes)
    given = probs[np.arange(len(labels)), labels]
    return np.asarray((given < threshold) & (probs.argmax(axis=1) != labels))
