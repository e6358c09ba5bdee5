"""Labelling a split: gold rows, LFs, label model, label errors, Label Studio round trip."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kubeforge.components.common.params import StageParams
from kubeforge.components.common.splits import LoadedSplit, write_split_frame
from kubeforge.components.label.crossfit import (
    CrossFit,
    cross_fit,
    end_model_probabilities,
    weak_labels,
    wilson_interval,
)
from kubeforge.components.label.weak import (
    class_probabilities,
    gold_classifier,
    lf_stats,
    likely_label_errors,
    load_factory,
)
from kubeforge.core.errors import KubeforgeError


@dataclass(frozen=True)
class LabelParams(StageParams):
    """The label component's parameters; defaults and documentation: ``component.py``."""

    component = "kubeforge.components.label.component:label"

    labeling_functions: str
    gold_budget: float
    confidence_threshold: float
    min_confidence: float
    review_count: int
    human_labels: str
    seed: int


@dataclass
class LabelReport:
    """What the label stage did and how good its labels are."""

    rows: int
    gold_rows: int
    human_rows: int
    weak_rows: int
    dropped_low_confidence: int
    gold_fraction: float
    labeling_functions: list[dict[str, Any]]
    estimated_accuracy: float | None
    estimated_accuracy_interval: list[float] | None = None
    estimate_method: str = ""
    estimated_majority_vote_accuracy: float | None = None
    estimated_gold_only_accuracy: float | None = None
    estimated_end_model_accuracy: float | None = None
    end_model_beats_gold_only: bool | None = None
    label_model_accuracy: float | None = None
    majority_vote_accuracy: float | None = None
    gold_only_accuracy: float | None = None
    end_model_accuracy: float | None = None
    label_model_coverage: float = 0.0
    likely_label_errors: int = 0
    exported_for_review: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The report as indented JSON (NaN written as null)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str).replace(
            "NaN", "null"
        )


def row_ids(split: LoadedSplit) -> np.ndarray:
    """A stable id per row: the hash of its feature values."""
    hashes = pd.util.hash_pandas_object(split.frame[split.feature_columns], index=False)
    return np.asarray([f"{h:016x}" for h in hashes.to_numpy()])


def choose_gold(
    known: np.ndarray, n_classes: int, budget: float, seed: int, min_per_class: int
) -> np.ndarray:
    """Pick the gold rows: at most ``budget`` of all rows, stratified over the known labels."""
    if not 0.0 < budget <= 1.0:
        raise KubeforgeError(f"gold_budget must be in (0, 1], got {budget}", "gold_budget")
    rng = np.random.default_rng(seed)
    labelled = np.where(known >= 0)[0]
    cap = int(np.floor(budget * len(known)))
    if len(labelled) <= cap:
        gold = labelled
    else:
        # Stratified: an equal share of the budget per class, never more than the budget.
        per_class = cap // n_classes
        picks = [
            rng.choice(rows, size=min(per_class, len(rows)), replace=False)
            for rows in (labelled[known[labelled] == c] for c in range(n_classes))
        ]
        gold = np.sort(np.concatenate(picks))
    counts = np.bincount(known[gold], minlength=n_classes)
    short = [i for i, n in enumerate(counts) if n < min_per_class]
    if short:
        raise KubeforgeError(
            f"too few gold labels for class(es) {short}: each class needs at least "
            f"{min_per_class} (got {counts.tolist()} within a budget of {cap} rows)",
            "gold_budget",
        )
    return np.asarray(gold)


def read_label_studio_export(path: str) -> dict[str, str]:
    """Human labels from a Label Studio JSON export: ``row_id -> label``."""
    try:
        tasks = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KubeforgeError(
            f"cannot read Label Studio export {path!r}: {exc}", "human_labels"
        ) from exc
    labels: dict[str, str] = {}
    for task in tasks:
        row_id = str(task.get("data", {}).get("row_id", ""))
        for annotation in task.get("annotations", []):
            if annotation.get("was_cancelled"):
                continue
            for result in annotation.get("result", []):
                choices = result.get("value", {}).get("choices", [])
                if row_id and choices:
                    labels[row_id] = str(choices[0])
    return labels


def label_studio_tasks(
    ids: np.ndarray,
    features: np.ndarray,
    posterior: np.ndarray,
    classes: list[str],
    rows: np.ndarray,
) -> list[dict[str, Any]]:
    """Label Studio import tasks with the label model's guess as a prediction."""
    tasks = []
    for row in rows:
        guess = int(posterior[row].argmax())
        tasks.append(
            {
                "data": {"row_id": str(ids[row]), "features": features[row].round(4).tolist()},
                "predictions": [
                    {
                        "model_version": "kubeforge-label-model",
                        "score": round(float(posterior[row, guess]), 4),
                        "result": [
                            {
                                "from_name": "label",
                                "to_name": "features",
                                "type": "choices",
                                "value": {"choices": [classes[guess]]},
                            }
                        ],
                    }
                ],
            }
        )
    return tasks


# Wider than this, the report says how uncertain its estimate is (one gold row is > 3 points).
WIDE_INTERVAL = 0.1


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def label_split(
    train: LoadedSplit, out_dir: Path, params: LabelParams, min_gold_per_class: int = 2
) -> LabelReport:
    """Label the training split; write ``train.parquet``, ``report.json``, ``review.json``.

    Rows with a label beyond ``params.gold_budget`` are treated as unlabelled; their labels are
    only used to score the produced labels (``*_accuracy`` without ``estimated_``). The
    ``estimated_*`` figures come from gold rows that the labelling functions did not see
    (cross-fitting), so they exist on real data where no hidden labels do.
    """
    seed = params.seed
    features = train.features()
    known = train.label_indices()
    classes = train.classes
    k = len(classes)
    ids = row_ids(train)
    gold = choose_gold(known, k, params.gold_budget, seed, min_gold_per_class)
    clamp = np.full(len(known), -1)
    clamp[gold] = known[gold]
    human_rows = 0
    human = read_label_studio_export(params.human_labels) if params.human_labels else {}
    if human:
        index = {c: i for i, c in enumerate(classes)}
        for row_id, value in human.items():
            rows = np.where(ids == row_id)[0]
            if value not in index:
                raise KubeforgeError(
                    f"human label {value!r} for row {row_id} is not a known class {classes}",
                    "human_labels",
                )
            clamp[rows] = index[value]
            human_rows += len(rows)

    gold_mask = clamp >= 0
    factory = load_factory(params.labeling_functions)
    weak = weak_labels(features, clamp, k, factory, params.confidence_threshold, seed)
    posterior = weak.posterior
    final = posterior.argmax(axis=1)
    confidence = posterior.max(axis=1)
    keep = weak.kept(clamp, params.min_confidence)
    labels = np.where(gold_mask, clamp, final)
    fit = cross_fit(
        features, clamp, k, factory, params.confidence_threshold, params.min_confidence, seed
    )
    report = LabelReport(
        rows=len(known),
        gold_rows=int(len(gold)),
        human_rows=human_rows,
        weak_rows=int((keep & ~gold_mask).sum()),
        dropped_low_confidence=int((~keep).sum()),
        gold_fraction=round(len(gold) / len(known), 4),
        labeling_functions=lf_stats(
            weak.names,
            weak.votes,
            weak.model.lf_accuracies(),
            [fit.lf_accuracy(name) for name in weak.names] if fit else None,
        ),
        estimated_accuracy=None,
        label_model_coverage=round(float((weak.votes >= 0).any(axis=1).mean()), 4),
    )
    class_share = np.bincount(labels[keep], minlength=k) / max(1, int(keep.sum()))
    _estimates(report, fit, class_share, params.min_confidence)

    hidden = ~gold_mask & (known >= 0)
    scored = hidden & keep
    if scored.any():
        truth = known[scored]
        report.label_model_accuracy = round(float((final[scored] == truth).mean()), 4)
        mv = weak.majority.argmax(axis=1)
        report.majority_vote_accuracy = round(float((mv[scored] == truth).mean()), 4)
        gold_only = gold_classifier(features[gold_mask], clamp[gold_mask], seed)
        predicted = class_probabilities(gold_only, features[hidden], k).argmax(axis=1)
        report.gold_only_accuracy = round(float((predicted == known[hidden]).mean()), 4)
        end = end_model_probabilities(features, labels, keep, k, seed).argmax(axis=1)
        report.end_model_accuracy = round(float((end[hidden] == known[hidden]).mean()), 4)
        if report.majority_vote_accuracy > report.label_model_accuracy:
            report.notes.append("majority vote beat the label model on this data")

    errors = likely_label_errors(features[keep], labels[keep], k, seed)
    report.likely_label_errors = int(errors.sum())

    uncertain = np.argsort(confidence + gold_mask * 2.0)[
        : min(params.review_count, int((~gold_mask).sum()))
    ]
    tasks = label_studio_tasks(ids, features, posterior, classes, uncertain)
    report.exported_for_review = len(tasks)

    out = train.frame.copy()
    out[train.label_column] = [classes[i] for i in labels]
    out["_row_id"] = ids
    out["_label_source"] = np.where(clamp >= 0, "gold", "weak")
    out.loc[np.isin(ids, list(human)), "_label_source"] = "human"
    out["_label_confidence"] = np.where(gold_mask, 1.0, confidence).astype(np.float32)
    out["_likely_error"] = False
    out.loc[np.where(keep)[0][errors], "_likely_error"] = True
    out = out[keep].reset_index(drop=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_split_frame(out, out_dir / "train.parquet", train)
    (out_dir / "review.json").write_text(json.dumps(tasks, indent=1))
    (out_dir / "report.json").write_text(report.to_json())
    np.save(out_dir / "votes.npy", weak.votes)
    return report


def _estimates(
    report: LabelReport, fit: CrossFit | None, class_share: np.ndarray, min_confidence: float
) -> None:
    """Fill the report's cross-fitted estimates, their interval, and the baseline verdict."""
    if fit is None:
        report.estimate_method = "none: fewer than 2 gold rows in some class"
        report.notes.append(
            "no accuracy estimate: cross-fitting needs at least 2 gold rows per class "
            "(raise gold_budget)"
        )
        return
    everything = np.ones(len(fit.truth), dtype=bool)
    kept = fit.confidence >= min_confidence
    rows = kept if kept.any() else everything
    estimate = fit.accuracy(fit.label_model, class_share, rows)
    n = int(rows.sum())
    low, high = wilson_interval(estimate * n, n)
    report.estimated_accuracy = _rounded(estimate)
    report.estimated_accuracy_interval = [round(low, 4), round(high, 4)]
    report.estimate_method = (
        f"{fit.folds}-fold cross-fitting over {len(fit.truth)} gold rows "
        f"({n} held out above min_confidence); 95% Wilson interval"
    )
    if high - low > WIDE_INTERVAL:
        # The estimate is as good as the gold draw: say so rather than let one number stand.
        report.notes.append(
            f"estimated accuracy {estimate:.3f} rests on {n} held-out gold rows: the true value "
            f"may lie anywhere in {low:.2f}-{high:.2f} (95%); four times the gold rows "
            "(gold_budget) halve that width"
        )
    report.estimated_majority_vote_accuracy = _rounded(
        fit.accuracy(fit.majority, class_share, everything)
    )
    gold_only = fit.accuracy(fit.gold_only, class_share, everything)
    end_model = fit.accuracy(fit.end_model, class_share, everything)
    report.estimated_gold_only_accuracy = _rounded(gold_only)
    report.estimated_end_model_accuracy = _rounded(end_model)
    report.end_model_beats_gold_only = bool(end_model > gold_only)
    if not report.end_model_beats_gold_only:
        report.notes.append(
            f"a model trained on the weak labels did not beat one trained on the gold rows "
            f"alone ({end_model:.3f} vs {gold_only:.3f} on held-out gold rows)"
        )
