"""What a kfp.local task costs before its stage starts: a fresh Python process and its imports.

kfp.local's SubprocessRunner starts one ``python -m kfp.dsl.executor_main`` per task. Every
task imports kfp's executor and MLflow (each stage's run is an MLflow run), so that pair is the
floor no lazy import can go under; the rest is what the stage's own module imports.
"""

from __future__ import annotations

import subprocess
import sys
import time

STAGES = ("ingest", "label", "train", "distill", "deploy")
FLOOR = "import kfp.dsl.executor_main, mlflow"


def import_seconds(statement: str, repeats: int = 3) -> float:
    """Best wall time of ``python -c statement`` in a fresh process, over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def task_overhead(repeats: int = 3) -> dict[str, object]:
    """Seconds to start a task's process with what each stage imports, beside the floor."""
    python = import_seconds("pass", repeats)
    floor = import_seconds(FLOOR, repeats)
    stages = {
        stage: import_seconds(f"{FLOOR}, kubeforge.components.{stage}.stage", repeats)
        for stage in STAGES
    }
    return {
        "python_start_seconds": python,
        "floor_seconds": floor,
        "stage_import_seconds": stages,
        "stage_vs_floor": {stage: round(s / floor, 2) for stage, s in stages.items()},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(task_overhead(), indent=2))
