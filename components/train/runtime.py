"""How long a training job will run: declared on its pods so the GPU pool can plan around it.

The GPU pool's planner reads ``kubeforge.io/expected-runtime-seconds`` on training pods: with
the pod's ``startTime`` it knows when the pod's node frees, so a queued gang waits for a node
about to free instead of paying for a new one (``make bench-gpupool``: 1.026x the clairvoyant
node-hours instead of 1.053x in the ``ample`` scenario). The train stage declares that value for
its own PyTorchJobs and TrainJobs: given by the ``expected_runtime`` parameter, or learnt from the
MLflow history of finished train runs with the same training settings, scaled to this run's
work (epochs x labelled rows).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.core.durations import parse_duration
from kubeforge.core.errors import KubeforgeError

# Metrics every train run logs, so later runs can learn from it.
RUN_SECONDS = "job_run_seconds"  # how long the job's pods ran (the training processes locally)
TRAIN_ROWS = "train_rows"  # labelled training rows
TRAIN_FEATURES = "train_features"
# Parameters that change how long one epoch over one row takes; a past run counts only when it
# had the same values (epochs and rows are the work the estimate scales with).
SAME_SETTINGS = (
    "backend",
    "hidden",
    "batch_size",
    "grad_accum_steps",
    "nproc",
    "workers",
    "gpus_per_replica",
    "node_selector",
)
HISTORY_RUNS = 200  # newest finished train runs read from MLflow
AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class RuntimeEstimate:
    """The run time a job declares (None: nothing) and where the figure came from."""

    seconds: float | None
    source: str

    def annotations(self) -> dict[str, str]:
        """The pod template annotations that declare it, in whole seconds (none without one)."""
        if self.seconds is None:
            return {}
        return {EXPECTED_RUNTIME_ANNOTATION: str(math.ceil(self.seconds))}


def parse_expected_runtime(text: str) -> float | str | None:
    """``auto`` (learn it), ``none`` or empty (declare nothing), or seconds / a duration.

    Raises:
        KubeforgeError: anything else, or a time that is not positive (names the parameter).
    """
    value = text.strip().lower()
    if value == AUTO:
        return AUTO
    if value in (NONE, ""):
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise KubeforgeError(
            f"expected_runtime must be 'auto', 'none', or a positive time in seconds (5400) or "
            f"as a duration (1h30m), got {text!r}",
            "expected_runtime",
        )
    return seconds


def predict_seconds(history: Sequence[tuple[float, float]], work: float) -> float | None:
    """Seconds a run of ``work`` (epochs x rows) takes, from past ``(work, seconds)`` pairs.

    With two or more distinct amounts of work: the least-squares line ``a + b x work`` (a fixed
    cost, pod start and data loading, plus a cost per row and epoch), if both are non-negative;
    otherwise, or with one amount of work, the median seconds per unit of work, scaled. None
    without history.
    """
    points = [(w, s) for w, s in history if w > 0 and s > 0]
    if not points:
        return None
    rate = statistics.median(s / w for w, s in points)
    if len({w for w, _ in points}) >= 2:
        import numpy as np

        works = np.array([w for w, _ in points], dtype=float)
        seconds = np.array([s for _, s in points], dtype=float)
        slope, intercept = np.polyfit(works, seconds, 1)
        if slope > 0 and intercept >= 0:
            return float(intercept + slope * work)
    return rate * work


def matching_history(
    params: dict[str, Any], features: int, runs: Sequence[Any]
) -> list[tuple[float, float]]:
    """``(epochs x rows, seconds)`` of the finished train runs with the same settings.

    ``runs`` are MLflow runs (``run.data.params`` strings, ``run.data.metrics`` floats).
    """
    points = []
    for run in runs:
        logged, metrics = run.data.params, run.data.metrics
        if any(logged.get(name) != str(params[name]) for name in SAME_SETTINGS):
            continue
        if metrics.get(TRAIN_FEATURES) != features or RUN_SECONDS not in metrics:
            continue
        try:
            work = int(logged["epochs"]) * metrics[TRAIN_ROWS]
        except (KeyError, ValueError):
            continue
        points.append((float(work), float(metrics[RUN_SECONDS])))
    return points


def estimate_runtime(
    setting: float | str | None,
    params: dict[str, Any],
    rows: int,
    features: int,
    experiment_id: str,
) -> RuntimeEstimate:
    """What this train run declares: the given figure, or the learnt one.

    ``setting`` is the parsed ``expected_runtime`` (:func:`parse_expected_runtime`); ``params``
    are the stage's parameters (``asdict(TrainParams)``); the history is the newest
    :data:`HISTORY_RUNS` finished train runs of ``experiment_id`` in the active MLflow store.
    """
    if setting is None:
        return RuntimeEstimate(None, "not declared (expected_runtime none)")
    if isinstance(setting, float):
        return RuntimeEstimate(setting, "given by expected_runtime")
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string="tags.`kubeforge.stage` = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=HISTORY_RUNS,
    )
    history = matching_history(params, features, runs)
    seconds = predict_seconds(history, float(params["epochs"] * rows))
    if seconds is None:
        return RuntimeEstimate(None, "not declared: no finished train run with these settings")
    return RuntimeEstimate(
        seconds, f"learnt from {len(history)} finished train run(s) with these settings"
    )
