"""The distill stage as the component runs it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from kubeforge.components.distill.distill import DistillReport, distill
from kubeforge.components.ingest.ingest import load_split
from kubeforge.components.train.model import load
from kubeforge.components.train.stage import parse_hidden
from kubeforge.core.tracking import stage_run


def run_distill(
    teacher_path: str,
    train_path: str,
    test_path: str,
    hidden: str,
    temperature: float,
    alpha: float,
    epochs: int,
    quantize_int8: bool,
    min_retention: float,
    seed: int,
    tracking_uri: str,
    parent_run_id: str,
    student_out: Any,
    report_out: Any,
) -> DistillReport:
    """Distill and fill the KFP outputs; the report is logged even when the gate fails."""
    import mlflow

    with stage_run("distill", tracking_uri, parent_run_id):
        mlflow.log_params(
            {
                "hidden": hidden,
                "temperature": temperature,
                "alpha": alpha,
                "epochs": epochs,
                "quantize_int8": quantize_int8,
                "min_retention": min_retention,
            }
        )
        work = Path(tempfile.mkdtemp(prefix="kubeforge-distill-"))
        try:
            try:
                report = distill(
                    load(teacher_path),
                    load_split(train_path),
                    load_split(test_path),
                    work,
                    hidden=tuple(parse_hidden(hidden)),
                    temperature=temperature,
                    alpha=alpha,
                    epochs=epochs,
                    quantize_int8=quantize_int8,
                    min_retention=min_retention,
                    seed=seed,
                )
            finally:
                if (work / "report.json").exists():
                    text = (work / "report.json").read_text()
                    mlflow.log_text(text, "distill_report.json")
                    Path(report_out.path).write_text(text)
            for who, prof in (("teacher", report.teacher), ("student", report.student)):
                mlflow.log_metrics({f"{who}_{k}": float(v) for k, v in vars(prof).items()})
            mlflow.log_metrics(
                {
                    "retention": report.retention,
                    "parameter_ratio": report.parameter_ratio,
                    "latency_ratio": report.latency_ratio,
                }
            )
            shutil.copyfile(work / "model.pt", student_out.path)
            student_out.metadata.update(
                {"accuracy": report.student.accuracy, "parameters": report.student.parameters}
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return report
