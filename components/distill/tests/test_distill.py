from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeforge.components.common.model import Classifier
from kubeforge.components.common.splits import load_split
from kubeforge.components.distill.distillation import DistillParams, distill_student
from kubeforge.core.errors import KubeforgeError


@pytest.fixture
def teacher(digits_teacher: Classifier) -> Classifier:
    return digits_teacher


@pytest.mark.slow
def test_student_is_smaller_faster_and_keeps_accuracy(
    teacher: Classifier,
    digits_labelled: Path,
    digits_splits: Path,
    tmp_path: Path,
) -> None:
    report = distill_student(
        teacher,
        load_split(digits_labelled / "train.parquet"),
        load_split(digits_splits / "test.parquet"),
        tmp_path,
        DistillParams.defaults(hidden="32", epochs=40),
    )
    assert report.passed
    assert report.student.accuracy >= 0.9
    assert report.parameter_ratio >= 4
    assert report.student.bytes < report.teacher.bytes
    assert (tmp_path / "model.pt").exists()
    assert json.loads((tmp_path / "report.json").read_text())["passed"] is True


@pytest.mark.slow
def test_int8_student_is_smaller_on_disk(
    teacher: Classifier,
    digits_labelled: Path,
    digits_splits: Path,
    tmp_path: Path,
) -> None:
    plain = distill_student(
        teacher,
        load_split(digits_labelled / "train.parquet"),
        load_split(digits_splits / "test.parquet"),
        tmp_path / "p",
        DistillParams.defaults(epochs=20),
    )
    q = distill_student(
        teacher,
        load_split(digits_labelled / "train.parquet"),
        load_split(digits_splits / "test.parquet"),
        tmp_path / "q",
        DistillParams.defaults(epochs=20, quantize_int8=True, min_retention=0.9),
    )
    assert q.quantized
    assert q.student.bytes < plain.student.bytes
    assert q.student.parameters == plain.student.parameters


def test_gate_fails_the_step_and_writes_no_model(
    teacher: Classifier,
    digits_labelled: Path,
    digits_splits: Path,
    tmp_path: Path,
) -> None:
    with pytest.raises(KubeforgeError) as excinfo:
        distill_student(
            teacher,
            load_split(digits_labelled / "train.parquet"),
            load_split(digits_splits / "test.parquet"),
            tmp_path,
            DistillParams.defaults(hidden="1", epochs=2),
        )
    assert excinfo.value.parameter == "min_retention"
    assert "below the retention gate" in str(excinfo.value)
    assert not (tmp_path / "model.pt").exists()
    assert json.loads((tmp_path / "report.json").read_text())["passed"] is False
