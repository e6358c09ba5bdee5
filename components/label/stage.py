"""The label stage as the component runs it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from kubeforge.components.ingest.ingest import load_split
from kubeforge.components.label.labeling import label
from kubeforge.core.tracking import stage_run


def run_label(
    train_path: str,
    labeling_functions: str,
    gold_budget: float,
    confidence_threshold: float,
    min_confidence: float,
    review_count: int,
    human_labels: str,
    seed: int,
    tracking_uri: str,
    parent_run_id: str,
    outputs: dict[str, Any],
) -> None:
    """Run the label stage and fill the KFP outputs."""
    import mlflow

    with stage_run("label", tracking_uri, parent_run_id):
        work = Path(tempfile.mkdtemp(prefix="kubeforge-label-"))
        try:
            report = label(
                load_split(train_path),
                work,
                labeling_functions,
                gold_budget=gold_budget,
                confidence_threshold=confidence_threshold,
                min_confidence=min_confidence,
                review_count=review_count,
                human_labels=human_labels,
                seed=seed,
            )
            mlflow.log_params(
                {
                    "labeling_functions": labeling_functions,
                    "gold_budget": gold_budget,
                    "confidence_threshold": confidence_threshold,
                }
            )
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
