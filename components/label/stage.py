"""The label stage as the component runs it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubeforge.components.common.splits import load_split
from kubeforge.components.label.figures import lf_figure
from kubeforge.components.label.labeling import LabelParams, label_split
from kubeforge.core.tracking import stage_run

# Report fields that become metrics of the label stage's MLflow run when they were measured.
REPORTED_FIGURES = (
    "estimated_accuracy",
    "estimated_majority_vote_accuracy",
    "estimated_gold_only_accuracy",
    "estimated_end_model_accuracy",
    "label_model_accuracy",
    "majority_vote_accuracy",
    "gold_only_accuracy",
    "end_model_accuracy",
)


def run_label(
    params: LabelParams,
    train_path: str,
    outputs: dict[str, Any],
    tracking_uri: str,
    parent_run_id: str,
) -> None:
    """Run the label stage and fill the KFP outputs."""
    import mlflow

    with stage_run("label", tracking_uri, parent_run_id):
        work = Path(tempfile.mkdtemp(prefix="kubeforge-label-"))
        try:
            report = label_split(load_split(train_path), work, params)
            mlflow.log_params(asdict(params))
            metrics: dict[str, float] = {
                "gold_rows": report.gold_rows,
                "human_rows": report.human_rows,  # labels spent: the run's cost reads both
                "weak_rows": report.weak_rows,
                "likely_label_errors": report.likely_label_errors,
            }
            for name in REPORTED_FIGURES:
                value = getattr(report, name)
                if value is not None:
                    metrics[name] = float(value)
            if report.estimated_accuracy_interval is not None:
                low, high = report.estimated_accuracy_interval
                metrics["estimated_accuracy_low"], metrics["estimated_accuracy_high"] = low, high
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(
                str(lf_figure(report.labeling_functions, work / "labeling_functions.png")),
                "figures",
            )
            shutil.copyfile(work / "train.parquet", outputs["data"].path)
            outputs["data"].metadata.update({"rows": report.gold_rows + report.weak_rows})
            Path(outputs["report"].path).write_text(report.to_json())
            shutil.copyfile(work / "review.json", outputs["review"].path)
            mlflow.log_text(report.to_json(), "label_report.json")
        finally:
            shutil.rmtree(work, ignore_errors=True)
