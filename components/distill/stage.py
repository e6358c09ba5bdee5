"""The distill stage as the component runs it."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
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
                    _log_figures(work, json.loads(text), load_split(test_path).classes)
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


def _log_figures(work: Path, report: dict[str, Any], classes: list[str]) -> None:
    """Confusion matrices, the student's loss curve and teacher vs student, in the stage's run."""
    import matplotlib.pyplot as plt
    import mlflow
    import numpy as np

    from kubeforge.components.common.figures import (
        comparison_figure,
        confusion_figure,
        curve_figure,
    )

    saved = np.load(work / "predictions.npz")
    teacher, student = report["teacher"], report["student"]
    figures = {
        "figures/confusion_teacher_student.png": confusion_figure(
            saved["truth"], {"teacher": saved["teacher"], "student": saved["student"]}, classes
        ),
        "figures/teacher_vs_student.png": comparison_figure(
            {"teacher": teacher, "student": student},
            [
                ("accuracy", "test accuracy"),
                ("parameters", "parameters"),
                ("bytes", "size (bytes)"),
                ("latency_p50_ms", "p50 latency, batch 1 (ms)"),
            ],
            f"teacher vs student: retention {report['retention']:.3f} "
            f"(CI {report['gate']['low']:.3f}-{report['gate']['high']:.3f}), "
            f"{report['parameter_ratio']:.1f}x fewer parameters",
        ),
    }
    if report.get("epoch_losses"):
        figures["figures/student_training_curve.png"] = curve_figure(
            {"distillation loss": report["epoch_losses"]}, "epoch", "student training"
        )
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        run = mlflow.active_run()
        if run is not None:  # the loss per epoch as one metric's history, in one request
            mlflow.tracking.MlflowClient().log_batch(
                run.info.run_id,
                metrics=[
                    Metric("epoch_loss", loss, now, epoch)
                    for epoch, loss in enumerate(report["epoch_losses"], start=1)
                ],
            )
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)
        plt.close(figure)
