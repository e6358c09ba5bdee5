"""The end-of-run summary of the ``main`` pipeline: the figures its stages log, for a person."""

from __future__ import annotations

from typing import Any


def summary_lines(summary: dict[str, Any], endpoint: str = "", answer: str = "") -> list[str]:
    """Human-readable lines from the per-stage metrics that ``kubeforge run`` gathered."""
    label = summary.get("label", {})
    distill = summary.get("distill", {})
    deploy = summary.get("deploy", {})
    lines = [
        "",
        "Kubeforge run summary",
        "---------------------",
        f"gold labels used          {int(label.get('gold_rows', 0))} rows "
        f"({int(label.get('weak_rows', 0))} weakly labelled)",
    ]
    if "label_model_accuracy" in label:
        lines.append(
            f"label accuracy (hidden)   {label['label_model_accuracy']:.3f} label model, "
            f"{label.get('majority_vote_accuracy', float('nan')):.3f} majority vote"
        )
    if distill:
        lines += [
            f"teacher test accuracy     {distill['teacher_accuracy']:.3f} "
            f"({int(distill['teacher_parameters'])} params, "
            f"{distill['teacher_latency_p50_ms']:.3f} ms p50)",
            f"student test accuracy     {distill['student_accuracy']:.3f} "
            f"({int(distill['student_parameters'])} params, "
            f"{distill['student_latency_p50_ms']:.3f} ms p50)",
            f"student vs teacher        {distill['retention']:.1%} accuracy, "
            f"{distill['parameter_ratio']:.1f}x fewer params, "
            f"{distill['latency_ratio']:.2f}x faster",
        ]
    if deploy:
        lines.append(
            f"registered model          models:/{deploy.get('model_name')}@{deploy.get('alias')} "
            f"(smoke accuracy {deploy.get('smoke_accuracy', 0):.3f})"
        )
    if endpoint:
        lines.append(f"endpoint                  {endpoint}")
    if answer:
        lines.append(f"served prediction         {answer}")
    lines += [
        f"pipeline wall time        {summary['pipeline_seconds']} s",
        f"MLflow run                {summary['mlflow_run_id']}",
        f"MLflow UI                 mlflow ui --backend-store-uri {summary['tracking_uri']}",
    ]
    return lines
