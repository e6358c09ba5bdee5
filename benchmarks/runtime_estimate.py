"""How close the run time train declares is to the run time it then has (real training, here).

A team retrains as labels grow and settings change; each train run logs how long it ran, and the
next run with the same settings declares what that history predicts
(``components/train/runtime.py``: a fixed cost plus a cost per row and epoch). This replays such a
series on four datasets (three that scikit-learn ships and a generated one) with real local
training, and compares each declared figure with the run time measured right after it. Baseline,
measured in the same run: declaring what the previous run took (what a user would type).

    make bench-runtime   # = python -m benchmarks.runtime_estimate -> results/runtime_estimate.json

The GPU pool simulator (``make bench-gpupool``) shows what such errors cost: declared run times
off by up to +/-25% per job give 1.031x the clairvoyant node-hours, +/-50% 1.034x, exact 1.026x,
none 1.053x (``ample``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

# (share of the dataset's training rows, epochs) of the runs in each series, in order.
SCHEDULE = ((0.25, 20), (0.5, 20), (0.5, 40), (1.0, 40), (1.0, 80), (0.75, 60))
HIDDEN = "256,256"
RESULTS = Path(__file__).parent / "results" / "runtime_estimate.json"


def datasets() -> dict[str, Any]:
    """Name -> (features, labels) of every dataset the series run on."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification

    generated = make_classification(
        n_samples=20000, n_features=40, n_informative=12, n_classes=4, random_state=7
    )
    return {
        "digits": load_digits(return_X_y=True),
        "wine": load_wine(return_X_y=True),
        "breast_cancer": load_breast_cancer(return_X_y=True),
        "generated_20k": generated,
    }


def write_splits(x: Any, y: Any, share: float, folder: Path) -> tuple[Path, Path]:
    """A training split of ``share`` of the training rows and a fixed validation split."""
    import numpy as np
    import pandas as pd

    from kubeforge.components.common.splits import write_split

    order = np.random.default_rng(0).permutation(len(y))
    val, train = order[: len(y) // 5], order[len(y) // 5 :]
    train = train[: max(8, int(len(train) * share))]
    columns = [f"f{i}" for i in range(x.shape[1])]
    classes = sorted({str(v) for v in y})
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("train", train), ("val", val)):
        frame = pd.DataFrame(x[rows], columns=columns).assign(label=[str(v) for v in y[rows]])
        write_split(frame, folder / f"{name}.parquet", "label", columns, classes)
        paths.append(folder / f"{name}.parquet")
    return paths[0], paths[1]


def series(name: str, x: Any, y: Any, work: Path, tracking_uri: str) -> list[dict[str, Any]]:
    """Train the schedule's runs in order; each run's declared and measured run time."""
    from mlflow.tracking import MlflowClient

    from kubeforge.components.train.stage import run_train
    from kubeforge.components.train.trainer import TrainParams
    from kubeforge.testing.artifacts import LocalArtifact

    client = MlflowClient(tracking_uri)
    rows: list[dict[str, Any]] = []
    for index, (share, epochs) in enumerate(SCHEDULE):
        folder = work / f"{name}-{index}"
        train, val = write_splits(x, y, share, folder)
        run_train(
            TrainParams.defaults(hidden=HIDDEN, epochs=epochs, nproc=1, seed=index),
            str(train),
            str(val),
            LocalArtifact(folder / "model.pt"),
            LocalArtifact(folder / "metrics"),
            tracking_uri,
            "",
        )
        experiment = client.get_experiment_by_name("kubeforge")
        assert experiment is not None
        [run] = client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
        )
        metrics = run.data.metrics
        rows.append(
            {
                "dataset": name,
                "run": index + 1,
                "epochs": epochs,
                "rows": int(metrics["train_rows"]),
                "declared_s": metrics.get("expected_runtime_seconds"),
                "ran_s": round(metrics["job_run_seconds"], 3),
                "previous_s": rows[-1]["ran_s"] if rows else None,
            }
        )
    return rows


def error(declared: float | None, ran: float) -> float | None:
    """Declared minus measured, as a share of measured."""
    return None if declared is None else (declared - ran) / ran


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median |error| and the share of runs within +/-25% and +/-50%, learnt vs baseline."""
    out: dict[str, Any] = {}
    for key in ("declared_s", "previous_s"):
        errors = [abs(e) for r in rows if (e := error(r[key], r["ran_s"])) is not None]
        out[key] = {
            "runs": len(errors),
            "median_abs_error": round(statistics.median(errors), 3),
            "within_25pct": round(sum(e <= 0.25 for e in errors) / len(errors), 3),
            "within_50pct": round(sum(e <= 0.5 for e in errors) / len(errors), 3),
        }
    return out


def main() -> int:
    import torch

    from kubeforge.core.tracking import connect

    # One thread: on a shared 2-core machine two threads per run make run times swing the most.
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kubeforge-runtime-") as tmp:
        work = Path(tmp)
        os.environ["KUBEFORGE_HOME"] = str(work / "home")
        (work / "home").mkdir()
        # A warm-up series in a store of its own: this process's first run pays one-time costs
        # (imports, first allocations) that a pod pays on every run, inside its fixed cost.
        x, y = datasets()["wine"]
        series("warm-up", x, y, work, connect(f"sqlite:///{work / 'home' / 'warm-up.db'}"))
        uri = connect(f"sqlite:///{work / 'home' / 'mlflow.db'}")
        for name, (x, y) in datasets().items():
            rows += series(name, x, y, work, uri)
            print(f"  {name}: {len(SCHEDULE)} runs", file=sys.stderr, flush=True)
    print(
        "| dataset | run | epochs x rows | declared (s) | ran (s) | error | previous run's: error |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        learnt, naive = error(r["declared_s"], r["ran_s"]), error(r["previous_s"], r["ran_s"])
        declared = "—" if r["declared_s"] is None else f"{r['declared_s']:.2f}"
        print(
            f"| {r['dataset']} | {r['run']} | {r['epochs']} x {r['rows']} | {declared} | "
            f"{r['ran_s']:.2f} | {'—' if learnt is None else f'{learnt:+.0%}'} | "
            f"{'—' if naive is None else f'{naive:+.0%}'} |"
        )
    result = summary(rows)
    learnt, naive = result["declared_s"], result["previous_s"]
    print()
    print("| declared as | runs | median abs error | within +/-25% | within +/-50% |")
    print("|---|---|---|---|---|")
    for label, figures in (("learnt (train's auto)", learnt), ("previous run's time", naive)):
        print(
            f"| {label} | {figures['runs']} | {figures['median_abs_error']:.0%} | "
            f"{figures['within_25pct']:.0%} | {figures['within_50pct']:.0%} |"
        )
    ratio = learnt["median_abs_error"] / naive["median_abs_error"]
    print(f"\nmedian abs error, learnt / previous run's time: {ratio:.2f}x")
    RESULTS.write_text(
        json.dumps(
            {
                "schedule": SCHEDULE,
                "hidden": HIDDEN,
                "runs": rows,
                "summary": result,
                "median_abs_error_ratio": round(ratio, 3),
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
