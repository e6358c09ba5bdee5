"""The retention and smoke gates decide on intervals that widen on small test splits."""

from __future__ import annotations

import numpy as np
import pytest

from kubeforge.components.common.gates import accuracy_gate, retention_gate, wilson_interval


def _rows(correct: int, total: int) -> np.ndarray:
    return np.arange(total) < correct


def test_one_row_on_a_small_split_does_not_fail_the_retention_gate() -> None:
    # The case a user hit: 27 test rows, teacher 26 right (0.963), student 25 (0.926).
    teacher = _rows(26, 27)
    student = _rows(25, 27)
    gate = retention_gate(student, teacher, threshold=0.97, confidence=0.95)
    assert gate.value == pytest.approx(25 / 26)
    assert gate.value < 0.97  # the point value alone would have failed the run
    assert gate.passed
    assert gate.low < gate.value < gate.high
    assert "paired bootstrap" in gate.describe() and "27 rows" in gate.describe()


def test_a_clearly_worse_student_fails_the_retention_gate_on_many_rows() -> None:
    rng = np.random.default_rng(1)
    teacher = rng.random(2000) < 0.95
    student = teacher & (rng.random(2000) < 0.85)  # loses 15% of the teacher's hits
    gate = retention_gate(student, teacher, threshold=0.97, confidence=0.95)
    assert not gate.passed
    assert gate.high < 0.97


def test_the_same_ratio_fails_with_many_rows_and_passes_with_few() -> None:
    few = retention_gate(_rows(9, 10), _rows(10, 10), 0.97, 0.95)
    many = retention_gate(_rows(900, 1000), _rows(1000, 1000), 0.97, 0.95)
    assert few.value == many.value == pytest.approx(0.9)
    assert few.passed and not many.passed


def test_smoke_gate_on_26_rows_is_decided_by_its_interval() -> None:
    # 0.778 on 26 rows was refused against 0.8 with no lever but the seed.
    gate = accuracy_gate(_rows(20, 26), threshold=0.8, confidence=0.95)
    assert gate.value == pytest.approx(20 / 26)
    assert gate.passed and gate.test == "Wilson score"
    assert not accuracy_gate(_rows(500, 1000), threshold=0.8, confidence=0.95).passed


def test_wilson_interval_matches_the_textbook_value() -> None:
    # Wilson 95% interval of 20/26 (Newcombe 1998, method 3): 0.579 to 0.890.
    low, high = wilson_interval(20, 26, 0.95)
    assert low == pytest.approx(0.5794, abs=1e-3)
    assert high == pytest.approx(0.8897, abs=1e-3)
