from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kubeforge.components.common.splits import fingerprint, load_split
from kubeforge.components.ingest.prepare import IngestParams, prepare_splits
from kubeforge.core.errors import KubeforgeError


def _params(**changes: Any) -> IngestParams:
    """Ingest's defaults; a gold budget that small tables can meet unless a test sets one."""
    return IngestParams.defaults(**{"gold_budget": 1.0, **changes})


def _table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["label"] = [f"class{i % 3}" for i in range(n)]
    return frame


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"], ids=["csv", "parquet", "jsonl"])
def test_reads_each_table_format_and_splits_all_rows(tmp_path: Path, fmt: str) -> None:
    frame = _table()
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    report = prepare_splits(_params(data_uri=str(path)), tmp_path / "out")
    assert report.format == fmt
    assert sum(report.splits.values()) == 60
    assert report.feature_columns == ["a", "b", "c"]
    train = load_split(tmp_path / "out" / "train.parquet")
    assert train.classes == ["class0", "class1", "class2"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["rows_kept"] == 60


def test_file_uri_and_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, size=(16, 16), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not an image")
    params = _params(data_uri=(tmp_path / "imgs").as_uri(), image_size=4)
    report = prepare_splits(params, tmp_path / "out")
    assert report.format == "images"
    assert report.classes == ["cat", "dog"]
    assert len(report.feature_columns) == 16
    assert report.dropped == {"unreadable_image": 1}
    assert report.rows_kept == 24


def test_drops_duplicates_and_broken_rows_with_reasons(tmp_path: Path) -> None:
    frame = _table()
    frame = pd.concat([frame, frame.iloc[:5]]).astype({"a": object})  # 5 exact duplicates
    frame.loc[len(frame)] = [np.nan, 1.0, 2.0, "class0"]
    frame.loc[len(frame)] = ["oops", 1.0, 2.0, "class1"]
    conflict = frame.iloc[[6]].copy()
    conflict["label"] = "class2" if conflict["label"].iloc[0] != "class2" else "class1"
    frame = pd.concat([frame, conflict])
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    report = prepare_splits(_params(data_uri=str(path)), tmp_path / "out")
    assert report.dropped == {
        "duplicate": 5,
        "missing_feature": 1,
        "non_numeric_feature": 1,
        "conflicting_duplicate": 1,
    }
    assert report.rows_kept == 60


def test_split_is_deterministic_and_ignores_row_order(tmp_path: Path) -> None:
    frame = _table(90)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.sample(frac=1.0, random_state=3).to_csv(tmp_path / "b.csv", index=False)
    ra = prepare_splits(_params(data_uri=str(tmp_path / "a.csv"), seed=7), tmp_path / "oa")
    rb = prepare_splits(_params(data_uri=str(tmp_path / "b.csv"), seed=7), tmp_path / "ob")
    assert ra.fingerprint == rb.fingerprint
    for name in ("train", "val", "test"):
        a = load_split(tmp_path / "oa" / f"{name}.parquet").frame
        b = load_split(tmp_path / "ob" / f"{name}.parquet").frame
        pd.testing.assert_frame_equal(a, b)
    prepare_splits(_params(data_uri=str(tmp_path / "a.csv"), seed=8), tmp_path / "oc")
    test_a = load_split(tmp_path / "oa" / "test.parquet").frame
    test_c = load_split(tmp_path / "oc" / "test.parquet").frame
    assert not test_a.equals(test_c)


def test_fingerprint_changes_exactly_when_data_changes() -> None:
    frame = _table()
    same = frame.sample(frac=1.0, random_state=1)[["label", "c", "b", "a"]]
    assert fingerprint(frame) == fingerprint(same)
    changed = frame.copy()
    changed.loc[3, "a"] += 1e-3
    assert fingerprint(frame) != fingerprint(changed)
    relabelled = frame.copy()
    relabelled.loc[0, "label"] = "class2"
    assert fingerprint(frame) != fingerprint(relabelled)


def test_unlabelled_rows_go_to_train(tmp_path: Path) -> None:
    frame = _table(90)
    frame.loc[:29, "label"] = None
    frame.to_csv(tmp_path / "d.csv", index=False)
    report = prepare_splits(_params(data_uri=str(tmp_path / "d.csv")), tmp_path / "o")
    assert report.unlabelled_rows == 30
    val = load_split(tmp_path / "o" / "val.parquet")
    assert (val.label_indices() >= 0).all()
    train = load_split(tmp_path / "o" / "train.parquet")
    assert (train.label_indices() < 0).sum() == 30


@pytest.mark.parametrize(
    ("case", "parameter", "words"),
    [
        ("missing_file", "data_uri", "does not exist"),
        ("unreadable", "data_format", "not readable as parquet"),
        ("no_label_column", "label_column", "label column 'label'"),
        ("missing_feature", "feature_columns", "['zzz']"),
        ("empty_split", "test_fraction", "cannot fill"),
        ("unknown_format", "data_format", "unknown data format"),
    ],
    ids=lambda v: v if isinstance(v, str) and "_" in v else None,
)
def test_bad_input_names_the_problem_and_parameter(
    tmp_path: Path, case: str, parameter: str, words: str
) -> None:
    out = tmp_path / "out"
    columns, fmt = "", "auto"
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    if case == "missing_file":
        path = tmp_path / "nope.csv"
    elif case == "unreadable":
        path = tmp_path / "d.parquet"
        path.write_text("this is not parquet")
    elif case == "no_label_column":
        _table().drop(columns=["label"]).to_csv(path, index=False)
    elif case == "missing_feature":
        columns = "a,zzz"
    elif case == "empty_split":
        _table(2).to_csv(path, index=False)
    elif case == "unknown_format":
        fmt = "xml"
    with pytest.raises(KubeforgeError) as excinfo:
        params = _params(data_uri=str(path), feature_columns=columns, data_format=fmt)
        prepare_splits(params, out)
    assert excinfo.value.parameter == parameter
    assert words in str(excinfo.value)
    assert not out.exists()


def _refusal(tmp_path: Path, frame: pd.DataFrame | None, **changes: Any) -> KubeforgeError:
    path = tmp_path / "data.csv"
    if frame is not None:
        frame.to_csv(path, index=False)
    with pytest.raises(KubeforgeError) as excinfo:
        prepare_splits(_params(data_uri=str(path), **changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for refused input
    return excinfo.value


def test_an_empty_csv_blames_the_file_not_the_format(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("")
    error = _refusal(tmp_path, None)
    assert error.parameter == "data_uri"
    assert "empty" in str(error)


def test_a_missing_label_column_shows_close_matches_and_how_many_columns_are_left(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(np.ones((30, 40)), columns=[f"feature_{i:02d}" for i in range(40)])
    frame["Churned"] = ["yes", "no"] * 15
    error = _refusal(tmp_path, frame, label_column="churned")
    assert error.parameter == "label_column"
    assert "did you mean 'Churned'" in str(error)
    assert "41 columns" in str(error) and "… and 29 more" in str(error)


def test_a_single_class_label_column_fails_at_ingest_with_its_count(tmp_path: Path) -> None:
    frame = _table()
    frame["label"] = "spam"
    error = _refusal(tmp_path, frame)
    assert error.parameter == "label_column"
    assert "1 class ('spam': 60 rows)" in str(error)


def test_too_few_training_rows_for_the_gold_budget_fails_at_ingest_with_numbers(
    tmp_path: Path,
) -> None:
    error = _refusal(tmp_path, _table(), gold_budget=0.05)
    assert error.parameter == "gold_budget"
    assert "allows 2 gold rows; 3 classes need at least 6" in str(error)
    assert "at least 0.143" in str(error)


def test_too_few_labelled_rows_for_the_split_fail_with_numbers(tmp_path: Path) -> None:
    error = _refusal(tmp_path, _table(n=6), val_fraction=0.05, test_fraction=0.05)
    assert error.parameter == "test_fraction"
    assert "6 labelled rows" in str(error) and "hold out 1 rows" in str(error)
