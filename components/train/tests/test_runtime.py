"""The run time train declares to the GPU pool: parsed, given, or learnt from MLflow history."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pytest

from kubeforge.components.train.runtime import (
    RUN_SECONDS,
    TRAIN_FEATURES,
    TRAIN_ROWS,
    estimate_runtime,
    parse_expected_runtime,
    predict_seconds,
)
from kubeforge.components.train.trainer import TrainParams
from kubeforge.core.errors import KubeforgeError


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("auto", "auto"),
        (" Auto ", "auto"),
        ("none", None),
        ("", None),
        ("5400", 5400.0),
        ("90.5", 90.5),
        ("1h30m", 5400.0),
        ("45m", 2700.0),
    ],
    ids=["auto", "auto-spaced", "none", "empty", "seconds", "fractional", "duration", "minutes"],
)
def test_expected_runtime_settings(text: str, parsed: float | str | None) -> None:
    assert parse_expected_runtime(text) == parsed


@pytest.mark.parametrize(
    "text", ["0", "-60", "soon", "1x", "nan", "inf", "0m"], ids=lambda text: text or "empty"
)
def test_a_bad_expected_runtime_is_refused_naming_the_parameter(text: str) -> None:
    with pytest.raises(KubeforgeError, match="expected_runtime") as caught:
        parse_expected_runtime(text)
    assert caught.value.parameter == "expected_runtime"


@pytest.mark.parametrize(
    ("history", "work", "seconds"),
    [
        # No history: nothing to declare.
        ([], 1000.0, None),
        # One amount of work: scaled in proportion (twice the epochs, twice the time).
        ([(1000.0, 50.0), (1000.0, 70.0)], 2000.0, 120.0),
        # Several: a fixed cost plus a cost per unit of work (30 s + 0.02 s per row-epoch).
        ([(1000.0, 50.0), (2000.0, 70.0), (4000.0, 110.0)], 10000.0, 230.0),
        # A fit with a negative fixed cost is not trusted: the median rate instead.
        ([(1000.0, 10.0), (2000.0, 40.0)], 3000.0, 45.0),
        # Zero or negative records are not evidence.
        ([(0.0, 10.0), (1000.0, -5.0)], 1000.0, None),
    ],
    ids=["none", "one-amount", "fixed-plus-rate", "negative-fixed-cost", "bad-records"],
)
def test_run_time_is_predicted_from_past_runs(
    history: list[tuple[float, float]], work: float, seconds: float | None
) -> None:
    predicted = predict_seconds(history, work)
    if seconds is None:
        assert predicted is None
    else:
        assert predicted == pytest.approx(seconds)


def _log_train_run(
    params: TrainParams,
    rows: int,
    features: int,
    seconds: float | None,
    status: str = "FINISHED",
) -> None:
    """A finished train run as the stage logs it (stage tag, parameters, shape, run time)."""
    import mlflow

    with mlflow.start_run(run_name="train", tags={"kubeforge.stage": "train"}) as run:
        mlflow.log_params(asdict(params))
        mlflow.log_metrics({TRAIN_ROWS: rows, TRAIN_FEATURES: features})
        if seconds is not None:
            mlflow.log_metric(RUN_SECONDS, seconds)
    if status != "FINISHED":
        mlflow.tracking.MlflowClient().set_terminated(run.info.run_id, status)


def _estimate(params: TrainParams, rows: int, features: int) -> Any:
    import mlflow

    experiment = mlflow.get_experiment_by_name("kubeforge")
    assert experiment is not None
    setting = parse_expected_runtime(params.expected_runtime)
    return estimate_runtime(setting, asdict(params), rows, features, experiment.experiment_id)


def test_run_time_is_learnt_only_from_finished_runs_with_the_same_settings(
    mlflow_home: str,
) -> None:
    params = TrainParams.defaults(backend="pytorchjob", workers=3, gpus_per_replica=8, epochs=10)
    assert _estimate(params, 1000, 64).seconds is None  # an empty store: nothing declared
    # Evidence: the same settings at 10 epochs x 1,000 and x 2,000 rows.
    _log_train_run(params, 1000, 64, 600.0)
    _log_train_run(params, 2000, 64, 1100.0)
    # Not evidence: other widths, more replicas, other features, failed, no run time logged.
    _log_train_run(replace(params, hidden="1024"), 1000, 64, 9e4)
    _log_train_run(replace(params, workers=7), 1000, 64, 9e4)
    _log_train_run(params, 1000, 512, 9e4)
    _log_train_run(params, 1000, 64, 9e4, status="FAILED")
    _log_train_run(params, 1000, 64, None)
    # 100 s fixed + 0.05 s per row-epoch: 20 epochs x 1,500 rows -> 1,600 s.
    learnt = _estimate(replace(params, epochs=20), 1500, 64)
    assert learnt.seconds == pytest.approx(1600)
    assert learnt.source == "learnt from 2 finished train run(s) with these settings"
    assert learnt.annotations() == {"kubeforge.io/expected-runtime-seconds": "1600"}
    # A given figure wins over history; "none" declares nothing at all.
    given = _estimate(replace(params, expected_runtime="2h"), 1, 64)
    assert (given.seconds, given.source) == (7200, "given by expected_runtime")
    silent = _estimate(replace(params, expected_runtime="none"), 1, 64)
    assert silent.seconds is None and silent.annotations() == {}
