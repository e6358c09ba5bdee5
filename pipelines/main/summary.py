"""The end-of-run summary of the ``main`` pipeline: the figures its stages log, for a person."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STAGE_METRICS = ("stage_seconds", "cpu_seconds", "gpu_seconds")
"""What every stage logs about its own cost (``kubeforge.core.tracking.stage_run``)."""


def key_figure(stage: str, metrics: dict[str, float]) -> str:
    """The one figure a person wants when ``stage`` ends, from its MLflow metrics."""
    m = metrics
    if stage == "ingest" and "rows_kept" in m:
        return (
            f"{int(m['rows_kept'])} rows kept; train/val/test {int(m.get('rows_train', 0))}/"
            f"{int(m.get('rows_val', 0))}/{int(m.get('rows_test', 0))}"
        )
    if stage == "label" and "gold_rows" in m:
        accuracy = m.get("label_model_accuracy")
        shown = f", label accuracy {accuracy:.3f}" if accuracy is not None else ""
        return f"{int(m['gold_rows'])} gold rows, {int(m.get('weak_rows', 0))} weak labels{shown}"
    if stage == "train" and "val_accuracy" in m:
        return f"teacher val accuracy {m['val_accuracy']:.3f}"
    if stage == "distill" and "student_accuracy" in m:
        return (
            f"student {m['student_accuracy']:.3f} vs teacher {m['teacher_accuracy']:.3f} "
            f"(retention {m['retention']:.3f}, CI up to {m.get('retention_ci_high', 0):.3f})"
        )
    if stage == "deploy" and "smoke_accuracy" in m:
        return f"smoke accuracy {m['smoke_accuracy']:.3f} on {int(m.get('smoke_rows', 0))} rows"
    return ""


def run_cost(summary: dict[str, Any]) -> dict[str, float]:
    """The run's cost from its stages' metrics: labels spent, CPU/GPU seconds, wall time.

    Keys: ``cost_gold_rows``, ``cost_human_rows`` (labels spent), ``cost_cpu_seconds``,
    ``cost_gpu_seconds`` (all stages), ``cost_<stage>_cpu_seconds`` and ``..._gpu_seconds`` per
    stage, ``cost_wall_seconds`` (the pipeline's), ``cost_gpu_hours_held`` (the PyTorchJob's,
    when train ran on a cluster and logged ``gpu_hours_held``).
    """
    label = summary.get("label", {})
    cost: dict[str, float] = {
        "cost_gold_rows": float(label.get("gold_rows", 0)),
        "cost_human_rows": float(label.get("human_rows", 0)),
        "cost_wall_seconds": float(summary.get("pipeline_seconds", 0.0)),
    }
    for kind in ("cpu", "gpu"):
        per_stage = {
            stage: float(metrics.get(f"{kind}_seconds", 0.0))
            for stage, metrics in summary.items()
            if isinstance(metrics, dict) and f"{kind}_seconds" in metrics
        }
        cost[f"cost_{kind}_seconds"] = round(sum(per_stage.values()), 3)
        cost |= {f"cost_{stage}_{kind}_seconds": v for stage, v in per_stage.items()}
    held = summary.get("train", {}).get("gpu_hours_held")
    if held is not None:
        cost["cost_gpu_hours_held"] = float(held)
    return cost


def cost_lines(cost: dict[str, float], stages: Sequence[str]) -> list[str]:
    """The cost block of the summary: labels, CPU (and GPU) seconds per stage, wall time."""
    per_stage = ", ".join(
        f"{stage} {cost[f'cost_{stage}_cpu_seconds']:.0f}"
        for stage in stages
        if f"cost_{stage}_cpu_seconds" in cost
    )
    lines = [
        f"labels spent              {int(cost['cost_gold_rows'])} gold rows, "
        f"{int(cost['cost_human_rows'])} human-labelled rows",
        f"CPU seconds               {cost['cost_cpu_seconds']:.0f} ({per_stage})",
    ]
    if cost.get("cost_gpu_seconds"):
        lines.append(f"GPU seconds               {cost['cost_gpu_seconds']:.0f}")
    if "cost_gpu_hours_held" in cost:
        lines.append(f"GPU-hours held (cluster)  {cost['cost_gpu_hours_held']:.3f}")
    return lines


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
        if "retention_ci_low" in distill:
            lines.append(
                f"retention gate            {distill.get('gate_confidence', 0.95):.0%} CI "
                f"{distill['retention_ci_low']:.3f}-"
                f"{distill['retention_ci_high']:.3f} (paired bootstrap on the test rows)"
            )
    if deploy:
        lines.append(
            f"registered model          models:/{deploy.get('model_name')}@{deploy.get('alias')} "
            f"(smoke accuracy {deploy.get('smoke_accuracy', 0):.3f}"
            + (
                f", {deploy.get('gate_confidence', 0.95):.0%} CI "
                f"{deploy['smoke_ci_low']:.3f}-{deploy['smoke_ci_high']:.3f} "
                f"on {int(deploy.get('smoke_rows', 0))} rows)"
                if "smoke_ci_low" in deploy
                else ")"
            )
        )
    if endpoint:
        lines.append(f"endpoint                  {endpoint}")
    if answer:
        lines.append(f"served prediction         {answer}")
    if "cost" in summary:
        stages = [s for s in ("ingest", "label", "train", "distill", "deploy") if s in summary]
        lines += cost_lines(summary["cost"], stages)
    lines += [
        f"pipeline wall time        {summary['pipeline_seconds']} s",
        f"MLflow run                {summary['mlflow_run_id']}",
        f"MLflow UI                 mlflow ui --backend-store-uri {summary['tracking_uri']}",
    ]
    return lines
