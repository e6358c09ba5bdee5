"""What-if runs of a job history against a pool spec (``kubeforge pool simulate``). Pure.

The trace goes through the pool's own planner (:func:`~kubeforge.operators.gpupool.sim.engine
.simulate`, the same executor as the operator), a per-pod autoscaler with kube-scheduler's
default scoring, the same at the Cluster Autoscaler's default scale-down settings, and a static
pool sized for the peak; then through the planner again for every ``idleAfter`` and
``maxNodes`` of the sweep. When jobs of the trace declare their run times
(:attr:`~kubeforge.operators.gpupool.sim.trace.TraceJob.declared_s`), the planner sees them, and
the same pool spec runs once more with the declarations dropped, to show what they buy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from kubeforge.operators.gpupool.core.planner import ScaleDownPolicy
from kubeforge.operators.gpupool.sim.engine import (
    Autoscaler,
    Binding,
    ClusterSettings,
    PolicyResult,
    PolicySpec,
    Scoring,
    lower_bound_node_hours,
    percentile,
    simulate,
)
from kubeforge.operators.gpupool.sim.trace import TraceJob, peak_demand_gpus

CA_UNNEEDED_S = 600.0  # Cluster Autoscaler --scale-down-unneeded-time default
CA_DELAY_AFTER_ADD_S = 600.0  # --scale-down-delay-after-add default
UNDECLARED = "Kubeforge, run times not declared"


@dataclass(frozen=True)
class Row:
    """One policy's outcome, in the units a table shows."""

    label: str
    jobs_finished: int
    jobs: int
    partially_placed: int
    wait_p50_min: float
    wait_p95_min: float
    idle_gpu_hours: float
    node_hours: float
    bound_ratio: float
    peak_nodes: int


def _row(label: str, result: PolicyResult, bound: float) -> Row:
    waits = [w / 60.0 for w in result.waits_with_unstarted_s]
    return Row(
        label,
        result.jobs_finished,
        result.jobs,
        result.jobs_ever_partially_placed,
        percentile(waits, 50),
        percentile(waits, 95),
        result.idle_gpu_hours,
        result.node_hours,
        result.node_hours / bound if bound else math.nan,
        result.peak_nodes,
    )


@dataclass(frozen=True)
class WhatIf:
    """The comparison table, the frontier over idleAfter x maxNodes x headroomNodes, the bound."""

    rows: tuple[Row, ...]
    # (idleAfter s, maxNodes, headroomNodes, Kubeforge's row)
    frontier: tuple[tuple[float, int, int, Row], ...]
    lower_bound_node_hours: float
    declared_jobs: int = 0  # jobs of the trace that declare their run time


def what_if(
    trace: Sequence[TraceJob],
    settings: ClusterSettings,
    idle_after_s: Sequence[float],
    max_nodes: Sequence[int],
    headroom_nodes: Sequence[int] = (),
) -> WhatIf:
    """Replay ``trace`` through every policy and the sweep; ``settings`` is the user's pool.

    The frontier crosses ``idle_after_s``, ``max_nodes`` and ``headroom_nodes`` (default: the
    pool's own headroom). The per-pod baselines keep as many spare nodes as the pool's
    headroom (the overprovisioning users give Cluster Autoscaler with placeholder pods).
    """
    per_node = settings.gpus_per_node
    peak_nodes = min(settings.max_nodes, math.ceil(peak_demand_gpus(tuple(trace)) / per_node))
    busy = sum(j.gpus * j.duration_s for j in trace) / 3600.0
    bound = lower_bound_node_hours(busy, peak_nodes, settings)
    gang, most, least = Binding.GANG_RESERVE, Scoring.MOST_ALLOCATED, Scoring.LEAST_ALLOCATED
    ca = dataclasses.replace(
        settings,
        idle_after_s=CA_UNNEEDED_S,
        scale_down_delay_after_add_s=CA_DELAY_AFTER_ADD_S,
        min_node_age_s=0.0,
    )
    policies: list[tuple[str, PolicySpec]] = [
        (
            "Kubeforge (this pool spec)",
            PolicySpec("kubeforge", Autoscaler.KUBEFORGE, gang, 0, most),
        ),
        (
            "per-pod autoscaler, same idleAfter"
            + (" and spare nodes" if settings.headroom_nodes else "")
            + ", default scheduler",
            PolicySpec("per_pod", Autoscaler.PER_POD, Binding.PER_POD, 0, least),
        ),
        (
            "per-pod at Cluster Autoscaler defaults (10m / 10m)",
            PolicySpec("ca", Autoscaler.PER_POD, Binding.PER_POD, 0, least, ca),
        ),
        (
            f"static pool of {peak_nodes} nodes (the peak)",
            PolicySpec("static", Autoscaler.STATIC, gang, peak_nodes, most),
        ),
    ]
    if settings.scale_down is ScaleDownPolicy.IDLE_AFTER:
        queue_aware = dataclasses.replace(
            settings, scale_down=ScaleDownPolicy.QUEUE_AWARE, learn_boot_time=True
        )
        policies.insert(
            1,
            (
                "Kubeforge with scaleDown.policy QueueAware",
                PolicySpec("kubeforge_qa", Autoscaler.KUBEFORGE, gang, 0, most, queue_aware),
            ),
        )
    declared = sum(1 for j in trace if j.declared_s is not None)
    undeclared = [dataclasses.replace(j, declared_s=None) for j in trace]
    if declared:
        policies.insert(1, (UNDECLARED, dataclasses.replace(policies[0][1], name="undeclared")))
    rows = tuple(
        _row(label, simulate(undeclared if label == UNDECLARED else trace, spec, settings), bound)
        for label, spec in policies
    )
    frontier = []
    for nodes in max_nodes:
        for spare in headroom_nodes or (settings.headroom_nodes,):
            for idle in idle_after_s:
                swept = dataclasses.replace(
                    settings, idle_after_s=idle, max_nodes=nodes, headroom_nodes=spare
                )
                result = simulate(trace, policies[0][1], swept)
                frontier.append((idle, nodes, spare, _row("Kubeforge", result, bound)))
    return WhatIf(rows, tuple(frontier), bound, declared)


def render(report: WhatIf) -> str:
    """The report as Markdown tables."""
    head = (
        "| policy | jobs finished | ever partially placed | wait p50 (min) | wait p95 (min) | "
        "idle GPU-h | node-h | node-h / bound | peak nodes |"
    )
    lines = [
        f"clairvoyant lower bound: {report.lower_bound_node_hours:.1f} node-hours "
        "(busy GPU-hours / GPUs per node + boot time of the nodes the peak needs)",
        "",
    ]
    if report.declared_jobs:
        jobs = report.rows[0].jobs
        lines += [
            f"run times declared by {report.declared_jobs} of {jobs} jobs "
            "(kubeforge.io/expected-runtime-seconds): every Kubeforge row and the frontier plan "
            f"with them but '{UNDECLARED}'",
            "",
        ]
    lines += [
        head,
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.label} | {r.jobs_finished} / {r.jobs} | {r.partially_placed} | "
            f"{r.wait_p50_min:.2f} | {r.wait_p95_min:.2f} | {r.idle_gpu_hours:.1f} | "
            f"{r.node_hours:.1f} | {r.bound_ratio:.3f} | {r.peak_nodes} |"
        )
    lines += [
        "",
        "| idleAfter (min) | maxNodes | headroomNodes | jobs finished | wait p95 (min) | "
        "idle GPU-h | node-h / bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for idle, nodes, spare, r in report.frontier:
        lines.append(
            f"| {idle / 60:g} | {nodes} | {spare} | {r.jobs_finished} / {r.jobs} | "
            f"{r.wait_p95_min:.2f} | "
            f"{r.idle_gpu_hours:.1f} | {r.bound_ratio:.3f} |"
        )
    return "\n".join(lines)
