"""The end-of-run summary: the run's cost from its stages' metrics, and the gates' intervals."""

from __future__ import annotations

from typing import Any

from kubeforge.pipelines.main.summary import key_figure, run_cost, summary_lines

SUMMARY: dict[str, Any] = {
    "mlflow_run_id": "r1",
    "tracking_uri": "sqlite:///x.db",
    "pipeline_seconds": 41.5,
    "ingest": {"rows_kept": 1797, "rows_train": 1258, "cpu_seconds": 9.0, "gpu_seconds": 0.0},
    "label": {"gold_rows": 60, "weak_rows": 1186, "human_rows": 5, "cpu_seconds": 37.0},
    "train": {"val_accuracy": 0.91, "cpu_seconds": 47.0, "gpu_seconds": 30.0},
    "distill": {
        "teacher_accuracy": 0.911, "teacher_parameters": 150794, "teacher_latency_p50_ms": 0.2,
        "student_accuracy": 0.918, "student_parameters": 2410, "student_latency_p50_ms": 0.1,
        "retention": 1.008, "parameter_ratio": 62.6, "latency_ratio": 2.0,
        "retention_ci_low": 0.992, "retention_ci_high": 1.025, "gate_confidence": 0.9,
        "cpu_seconds": 84.0,
    },
}  # fmt: skip


def test_the_runs_cost_adds_up_its_stages_and_counts_the_labels_spent() -> None:
    cost = run_cost(SUMMARY)
    assert cost["cost_gold_rows"] == 60 and cost["cost_human_rows"] == 5
    assert cost["cost_cpu_seconds"] == 9 + 37 + 47 + 84
    assert cost["cost_train_cpu_seconds"] == 47
    assert cost["cost_gpu_seconds"] == 30
    assert cost["cost_wall_seconds"] == 41.5
    assert "cost_gpu_hours_held" not in cost  # no cluster training, no made-up figure


def test_the_summary_shows_the_cost_and_the_gates_interval() -> None:
    lines = summary_lines({**SUMMARY, "cost": run_cost(SUMMARY)})
    text = "\n".join(lines)
    assert "labels spent              60 gold rows, 5 human-labelled rows" in text
    assert "CPU seconds               177 (ingest 9, label 37, train 47, distill 84)" in text
    assert "GPU seconds               30" in text
    assert "retention gate            90% CI 0.992-1.025" in text
    assert lines[-1].startswith("MLflow UI")


def test_each_stage_has_a_key_figure_once_it_ran() -> None:
    assert key_figure("label", SUMMARY["label"]) == "60 gold rows, 1186 weak labels"
    assert key_figure("train", SUMMARY["train"]) == "teacher val accuracy 0.910"
    assert "retention 1.008" in key_figure("distill", SUMMARY["distill"])
    assert key_figure("deploy", {}) == ""
