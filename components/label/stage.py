"""The label stage as the component runs it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubeforge.components.common.splits import load_split
from kubeforge.components.label.labeling import LabelParams, label_split
from kubeforge.core.tracking import stage_run


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
            metrics = {
                "gold_rows": report.gold_rows,
                "weak_rows": report.weak_rows,
                "estimated_accuracy": report.estimated_accuracy,
                "likely_label_errors": report.likely_label_errors,
            }
            if report.label_model_accuracy is not None:
                metrics["label_model_accuracy"] = report.label_model_accuracy
            if report.majority_vote_accuracy is not None:
                metrics["majority_vote_accuracy"] = report.majority_vote_accuracy
            mlflow.log_metrics(metrics)
            shutil.copyfile(work / "train.parquet", outputs["data"].path)
            outputs["data"].metadata.update({"rows": report.gold_rows + report.weak_rows})
            Path(outputs["report"].path).write_text(report.to_json())
            shutil.copyfile(work / "review.json", outputs["review"].path)
            mlflow.log_text(report.to_json(), "label_report.json")
        finally:
            shutil.rmtree(work, ignore_errors=True)
