"""The main job on data it has never seen, with the default labelling functions, end to end.

Three scikit-learn datasets other than digits, each in another form a user brings: wine as an
image folder (the test draws each row as a 4x4 grey image), breast_cancer as Parquet, and iris
as a CSV with injected faults. Each run must end with a served model (the alias moved) and label
accuracy of at least 0.90 of a logistic regression trained on all true labels of the same split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _frame(name: str) -> pd.DataFrame:
    from sklearn import datasets

    loaded = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = loaded.frame.rename(columns={"target": "label"})
    frame["label"] = [loaded.target_names[i] for i in frame["label"]]
    return frame


def wine_images(root: Path) -> Path:
    """Each wine row as a 4x4 grey PNG (13 features min-max scaled, 3 pixels of padding)."""
    from PIL import Image

    frame = _frame("wine")
    x = frame.drop(columns="label").to_numpy(dtype=np.float64)
    x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
    pixels = np.hstack([x, np.zeros((len(x), 3))]).reshape(-1, 4, 4)
    folder = root / "wine-images"
    for i, (image, label) in enumerate(zip(pixels, frame["label"], strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).round().astype(np.uint8), mode="L").save(
            folder / label / f"{i}.png"
        )
    return folder


def breast_cancer_parquet(root: Path) -> Path:
    path = root / "breast_cancer.parquet"
    frame = _frame("breast_cancer")
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.to_parquet(path, index=False)
    return path


def iris_csv_with_faults(root: Path) -> Path:
    """Iris with duplicate rows, a non-numeric cell, a missing cell and unlabelled rows."""
    frame = _frame("iris").astype({"sepal length (cm)": object})
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)  # duplicates
    frame.loc[3, "sepal_length"] = "n/a"  # non-numeric
    frame.loc[7, "petal_width"] = None  # missing
    path = root / "iris.csv"
    frame.to_csv(path, index=False)
    return path


CASES: list[tuple[str, Callable[[Path], Path], list[str]]] = [
    ("wine-images", wine_images, ["data_format=images", "image_size=4", "gold_budget=0.2"]),
    ("breast-cancer-parquet", breast_cancer_parquet, ["gold_budget=0.05"]),
    ("iris-csv-faults", iris_csv_with_faults, ["gold_budget=0.2"]),
]


def _all_labels_accuracy(train_split: Path) -> float:
    """Cross-validated standardised logistic regression on all true labels of the train split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kubeforge.components.common.splits import load_split

    split = load_split(train_split)
    x, y = split.features(), split.label_indices()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return float(cross_val_score(model, x[y >= 0], y[y >= 0], cv=5).mean())


@pytest.mark.parametrize(("name", "make", "params"), CASES, ids=[c[0] for c in CASES])
def test_default_labels_on_a_new_dataset_end_with_a_served_model(
    tmp_path: Path, name: str, make: Callable[[Path], Path], params: list[str]
) -> None:
    from mlflow.tracking import MlflowClient

    data = make(tmp_path)
    summary_file = tmp_path / "summary.json"
    model_name = f"kubeforge-{name}"
    args = ["run", "main", "--local", "-p", f"data_uri={data}", "-p", f"model_name={model_name}"]
    # Small data: many cheap epochs; gates loose enough for test splits of ~25 rows.
    fast = ["epochs=80", "distill_epochs=80", "nproc=1", "review_count=5", "min_retention=0.9"]
    for p in [*params, *fast, "min_accuracy=0.7"]:
        args += ["-p", p]
    env = {**os.environ, "KUBEFORGE_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "kubeforge.cli.app", *args, "--summary-file", str(summary_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    summary = json.loads(summary_file.read_text())
    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == "1"

    train_split = max(
        (tmp_path / "home" / "kfp").glob("**/ingest*/train_data"), key=os.path.getmtime
    )
    ceiling = _all_labels_accuracy(train_split)
    # The label stage's MLflow run, a child of the run the summary names, holds the report.
    [label_run] = client.search_runs(
        [client.get_run(summary["mlflow_run_id"]).info.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{summary['mlflow_run_id']}'"
            " and tags.`kubeforge.stage` = 'label'"
        ),
    )
    label = label_run.data.metrics
    assert label["label_model_accuracy"] >= 0.90 * ceiling, (label, ceiling)
    # The estimate comes from held-out gold rows, and baselines stand beside it.
    assert "estimated_accuracy" in label and "gold_only_accuracy" in label
    assert "majority_vote_accuracy" in label


def test_label_budget_command_draws_the_curve_and_logs_it(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    data = breast_cancer_parquet(tmp_path)
    png = tmp_path / "curve.png"
    env = {**os.environ, "KUBEFORGE_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "kubeforge.cli.app", "label-budget", str(data), "-o", str(png)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 5  # 1, 2, 5, 10, 20% of gold
    run_id = proc.stdout.split("MLflow run: ")[1].split()[0]
    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    history = client.get_metric_history(run_id, "label_model_accuracy")
    assert len(history) >= 3 and sorted(m.step for m in history) == [m.step for m in history]
    assert "figures/curve.png" in {a.path for a in client.list_artifacts(run_id, "figures")}
