"""What a kfp.local task costs before its stage starts: a fresh Python process and its imports.

kfp.local's SubprocessRunner starts one ``python -m kfp.dsl.executor_main`` per task. Every
task imports kfp's executor and MLflow (each stage's run is an MLflow run), so that pair is the
floor no lazy import can go under; the rest is what the stage's own module imports. A task on a
local SQLite store also imports MLflow's SQLAlchemy store when its run starts (SQLAlchemy and
MLflow's table models): timed too, as part of MLflow's floor on a laptop. Every
statement is timed in a fresh process, the statements taking turns in each round (so a change
of load on a shared machine hits them alike), best of ``repeats``; the load average is reported
beside the figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

STAGES = ("ingest", "label", "train", "distill", "deploy")
FLOOR = "import kfp.dsl.executor_main, mlflow"
SQLITE_STORE = "mlflow.store.tracking.sqlalchemy_store"
# What the train task imported before torch became a lazy import of the trainer (its module
# imported torch, prometheus_client and the model module at the top): the "before" of train.
TRAIN_BEFORE = (
    f"{FLOOR}, kubeforge.components.train.stage, torch, prometheus_client, "
    "kubeforge.components.common.model"
)


def _seconds(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started


def best_seconds(statements: dict[str, str], repeats: int = 3) -> dict[str, float]:
    """Best wall time of ``python -c`` each statement in a fresh process, rounds interleaved."""
    best = dict.fromkeys(statements, float("inf"))
    for _ in range(repeats):
        for name, statement in statements.items():
            best[name] = min(best[name], _seconds(statement))
    return {name: round(value, 3) for name, value in best.items()}


def task_overhead(repeats: int = 3) -> dict[str, Any]:
    """Seconds to start a task's process with what each stage imports, beside the floor."""
    statements = {
        "python": "pass",
        "floor": FLOOR,
        "floor+torch": f"{FLOOR}, torch",
        "floor+store": f"{FLOOR}, {SQLITE_STORE}",
        "train_before": TRAIN_BEFORE,
        **{stage: f"{FLOOR}, kubeforge.components.{stage}.stage" for stage in STAGES},
    }
    load_before = os.getloadavg()[0]
    best = best_seconds(statements, repeats)
    floor = best["floor"]
    return {
        "python_start_seconds": best["python"],
        "floor_seconds": floor,
        "torch_import_seconds": round(best["floor+torch"] - floor, 3),
        "sqlite_store_import_seconds": round(best["floor+store"] - floor, 3),
        "stage_import_seconds": {stage: best[stage] for stage in STAGES},
        "stage_vs_floor": {stage: round(best[stage] / floor, 2) for stage in STAGES},
        "train_before_seconds": best["train_before"],
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(task_overhead(), indent=2))
