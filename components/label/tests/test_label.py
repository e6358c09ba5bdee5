from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kubeforge.components.common.splits import LoadedSplit, load_split
from kubeforge.components.label.labeling import (
    LabelParams,
    choose_gold,
    label_split,
    read_label_studio_export,
)
from kubeforge.components.label.weak import ABSTAIN, LabelModel, majority_vote
from kubeforge.core.errors import KubeforgeError

LFS = "kubeforge.components.label.examples.digits"


def _noisy_votes(
    truth: np.ndarray, accuracies: list[float], coverage: float, k: int, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cols = []
    for acc in accuracies:
        wrong = (truth + rng.integers(1, k, size=len(truth))) % k
        votes = np.where(rng.random(len(truth)) < acc, truth, wrong)
        votes = np.where(rng.random(len(truth)) < coverage, votes, ABSTAIN)
        cols.append(votes)
    return np.stack(cols, axis=1)


def test_label_model_learns_lf_accuracies_and_beats_majority_vote() -> None:
    k, n = 4, 4000
    truth = np.random.default_rng(0).integers(0, k, size=n)
    # Three poor LFs that share nothing, one good LF: majority vote trusts them equally.
    votes = _noisy_votes(truth, [0.95, 0.45, 0.45, 0.45], coverage=0.9, k=k, seed=1)
    model = LabelModel(n_classes=k)
    posterior = model.fit_predict(votes)
    learned = model.lf_accuracies()
    # EM's estimates are close, not exact; what matters is that it tells good from poor.
    assert learned[0] == pytest.approx(0.95, abs=0.07)
    assert learned[1:] == pytest.approx([0.45, 0.45, 0.45], abs=0.07)
    lm_acc = (posterior.argmax(1) == truth).mean()
    mv_acc = (majority_vote(votes, k).argmax(1) == truth).mean()
    assert lm_acc > mv_acc + 0.05


def test_gold_rows_are_clamped() -> None:
    votes = np.array([[0, 0], [0, 0], [1, 1]])
    post = LabelModel(n_classes=2).fit_predict(votes, clamp=np.array([1, -1, -1]))
    assert post[0].tolist() == [0.0, 1.0]


@pytest.mark.slow
def test_digits_with_five_percent_gold(digits_splits: Path, tmp_path: Path) -> None:
    train = load_split(digits_splits / "train.parquet")
    params = LabelParams.defaults(labeling_functions=LFS, gold_budget=0.05, review_count=20)
    report = label_split(train, tmp_path, params)
    assert report.gold_rows <= 0.05 * report.rows
    assert report.label_model_accuracy is not None and report.label_model_accuracy >= 0.90
    assert report.majority_vote_accuracy is not None
    names = [lf["name"] for lf in report.labeling_functions]
    assert "model_assisted" in names
    for lf in report.labeling_functions:
        assert 0.0 <= float(lf["coverage"]) <= 1.0
    out = load_split(tmp_path / "train.parquet")
    assert (out.label_indices() >= 0).all()
    assert set(out.frame["_label_source"]) == {"gold", "weak"}
    tasks = json.loads((tmp_path / "review.json").read_text())
    assert len(tasks) == 20
    first = tasks[0]
    assert first["predictions"][0]["result"][0]["type"] == "choices"
    assert first["data"]["row_id"] in set(out.frame["_row_id"]) | {
        t["data"]["row_id"] for t in tasks
    }


@pytest.mark.slow
def test_human_labels_from_label_studio_are_merged_as_gold(
    digits_splits: Path, tmp_path: Path
) -> None:
    train = load_split(digits_splits / "train.parquet")
    params = LabelParams.defaults(labeling_functions=LFS, review_count=10)
    first = label_split(train, tmp_path / "a", params)
    tasks = json.loads((tmp_path / "a" / "review.json").read_text())
    # A reviewer answers every task: Label Studio's export adds "annotations".
    truth_by_id = dict(zip(first_ids(train), train.frame["label"], strict=True))
    for task in tasks:
        answer = truth_by_id[task["data"]["row_id"]]
        task["annotations"] = [{"result": [{"value": {"choices": [answer]}}]}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert len(read_label_studio_export(str(export))) == 10
    second = label_split(train, tmp_path / "b", replace(params, human_labels=str(export)))
    assert second.human_rows == 10
    out = load_split(tmp_path / "b" / "train.parquet").frame
    humans = out[out["_label_source"] == "human"]
    assert len(humans) == 10
    assert all(humans["label"] == [truth_by_id[i] for i in humans["_row_id"]])
    assert first.human_rows == 0


def first_ids(train: LoadedSplit) -> list[str]:
    from kubeforge.components.label.labeling import row_ids

    return list(row_ids(train))


def test_too_few_gold_labels_for_a_class_is_refused() -> None:
    known = np.array([0] * 50 + [1] * 1 + [-1] * 100)
    with pytest.raises(KubeforgeError) as excinfo:
        choose_gold(known, 2, budget=0.5, seed=0, min_per_class=2)
    assert excinfo.value.parameter == "gold_budget"
    assert "class(es) [1]" in str(excinfo.value)


def test_unknown_labeling_functions_module(digits_splits: Path, tmp_path: Path) -> None:
    with pytest.raises(KubeforgeError) as excinfo:
        params = LabelParams.defaults(labeling_functions="no.such.module")
        label_split(load_split(digits_splits / "train.parquet"), tmp_path, params)
    assert excinfo.value.parameter == "labeling_functions"
    assert not (tmp_path / "train.parquet").exists()
