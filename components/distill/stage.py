"""The distill stage as the component runs it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubeforge.components.common.model import load
from kubeforge.components.common.splits import load_split
from kubeforge.components.distill.distillation import (
    DistillParams,
    DistillReport,
    distill_student,
)
from kubeforge.core.tracking import stage_run


def run_distill(
    params: DistillParams,
    teacher_path: str,
    train_path: str,
    test_path: str,
    student_out: Any,
    report_out: Any,
    tracking_uri: str,
    parent_run_id: str,
) -> DistillReport:
    """Distill and fill the KFP outputs; the report is logged even when the gate fails."""
    import mlflow

    with stage_run("distill", tracking_uri, parent_run_id):
        mlflow.log_params(asdict(params))
        work = Path(tempfile.mkdtemp(prefix="kubeforge-distill-"))
        try:
            try:
                report = distill_student(
                    load(teacher_path),
                    load_split(train_path),
                    load_split(test_path),
                    work,
                    params,
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
                    "retention_ci_low": report.gate["low"],
                    "retention_ci_high": report.gate["high"],
                    "gate_confidence": params.gate_confidence,
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
