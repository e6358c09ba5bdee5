"""Build a GPUNodePool's typed status from one reconcile's facts. Pure: the caller passes the time.

The result is the api model :class:`~kubeforge.operators.gpupool.api.models.GPUNodePoolStatus`;
the reconciler serialises it once (:func:`~kubeforge.operators.schema.to_dict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeforge.operators.clock import rfc3339
from kubeforge.operators.conditions import by_type, condition
from kubeforge.operators.gpupool.api.models import (
    GpuCounts,
    GPUNodePoolStatus,
    JobStatus,
    NodeCounts,
    NodeLoss,
)
from kubeforge.operators.gpupool.core.demand import quantity
from kubeforge.operators.gpupool.core.losses import GangLoss, merge_history
from kubeforge.operators.gpupool.core.members import PoolMember
from kubeforge.operators.gpupool.core.planner import Decision, NodeState, PoolPlan
from kubeforge.operators.gpupool.core.reasons import BLOCKED, ConditionReason
from kubeforge.operators.schema import Condition


@dataclass(frozen=True)
class Observation:
    """What one reconcile saw and did, as the status reports it.

    Attributes:
        generation: The pool's ``metadata.generation``.
        members: Everything the provider reports (after acting), leaving members included.
        nodes: The planner's view of the members that are not leaving.
        failed: Members found past provisionTimeout in this reconcile.
        failure_reason: Why they failed, for a person ("" when none did).
        plan: The plan, or None when the provider could not be read.
        provider_error: Why the provider could not be read or acted on ("" when it could).
        scaled_up: Nodes were requested in this reconcile.
        scaled_down: Nodes were removed in this reconcile.
        losses: Node losses under running gangs seen, still open or recovered in this reconcile.
    """

    generation: int
    members: Sequence[PoolMember]
    nodes: Sequence[NodeState]
    failed: Sequence[NodeState] = ()
    failure_reason: str = ""
    plan: PoolPlan | None = None
    provider_error: str = ""
    scaled_up: bool = False
    scaled_down: bool = False
    losses: Sequence[GangLoss] = ()


def node_counts(obs: Observation, cordoned: Iterable[NodeState]) -> dict[str, int]:
    """The pool's nodes by state: requested, registering, gpuReady, cordoned, draining, failed."""
    by_name = {n.name: n for n in obs.nodes}
    failed = {n.name for n in obs.failed}
    counts = dict.fromkeys(
        ("requested", "registering", "gpuReady", "cordoned", "draining", "failed"), 0
    )
    counts["cordoned"] = sum(1 for n in cordoned if n.name not in failed)
    counts["failed"] = len(failed)
    for member in obs.members:
        state = by_name.get(member.name)
        if member.leaving:
            counts["draining"] += 1
        elif member.name in failed:
            continue
        elif member.node is None:
            counts["requested"] += 1
        elif state is not None and not state.gpu_ready:
            counts["registering"] += 1
        elif state is not None and not state.cordoned:
            counts["gpuReady"] += 1
    return counts


def gpu_counts(obs: Observation, resource: str) -> dict[str, int]:
    """The pool's GPUs: capacity of registered nodes, allocatable, allocated, idle."""
    capacity = sum(
        quantity(((m.node.get("status") or {}).get("capacity") or {}).get(resource))
        for m in obs.members
        if m.node is not None and not m.leaving
    )
    ready = [n for n in obs.nodes if n.gpu_ready]
    allocatable = sum(n.allocatable_gpus for n in ready)
    allocated = sum(n.allocated_gpus for n in ready)
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "allocated": allocated,
        "idle": max(0, allocatable - allocated),
    }


def build_status(
    obs: Observation, previous: Mapping[str, Any], resource: str, now: float
) -> GPUNodePoolStatus:
    """The whole ``status`` of the pool; ``previous`` is the status before this reconcile.

    Conditions keep their ``lastTransitionTime`` while their status does not change; the last
    scale times carry over until the next scale in that direction.
    """
    stamp = rfc3339(now)
    before = by_type(previous)
    plan = obs.plan
    verdicts = plan.jobs if plan is not None else ()
    blocked = [v for v in verdicts if v.placement in BLOCKED]
    decision = plan.decision if plan is not None else Decision.NOOP
    reasons = "; ".join(plan.reasons) if plan is not None else ""
    nodes = node_counts(obs, (n for n in obs.nodes if n.cordoned))
    gpus = gpu_counts(obs, resource)
    if obs.provider_error:
        ready = condition(
            before, "Ready", False, ConditionReason.PROVIDER_UNAVAILABLE, obs.provider_error, stamp
        )
    elif obs.failed:
        ready = condition(
            before, "Ready", False, ConditionReason.PROVISION_TIMEOUT, obs.failure_reason, stamp
        )
    else:
        ready = condition(
            before,
            "Ready",
            True,
            ConditionReason.RECONCILED,
            f"{nodes['gpuReady']} GPU-ready node(s), {nodes['requested'] + nodes['registering']}"
            " in flight",
            stamp,
        )
    up = decision is Decision.SCALE_UP
    down = decision in (Decision.DRAIN, Decision.SCALE_DOWN)
    scaling, idle = ConditionReason.SCALING, ConditionReason.IDLE
    conditions = [
        ready,
        condition(before, "ScalingUp", up, scaling if up else idle, reasons if up else "", stamp),
        condition(
            before, "ScalingDown", down, scaling if down else idle, reasons if down else "", stamp
        ),
        condition(
            before,
            "CapacityUnavailable",
            bool(blocked),
            ConditionReason.JOBS_DO_NOT_FIT if blocked else ConditionReason.ALL_JOBS_FIT,
            "; ".join(f"{v.job}: {v.reason}" for v in blocked) or "every job fits",
            stamp,
        ),
    ]
    return GPUNodePoolStatus(
        observedGeneration=obs.generation,
        desiredNodes=plan.desired_nodes if plan is not None else len(obs.nodes),
        readyNodes=sum(1 for n in obs.nodes if n.gpu_ready),
        gpusAllocatable=gpus["allocatable"],
        gpusAllocated=gpus["allocated"],
        pendingJobs=sum(1 for v in verdicts if v.gpus),
        nodes=NodeCounts(**nodes),
        gpus=GpuCounts(**gpus),
        jobs=[JobStatus(v.job, v.gpus, v.placement, v.reason) for v in verdicts],
        lastScaleUpTime=stamp if obs.scaled_up else previous.get("lastScaleUpTime") or None,
        lastScaleDownTime=stamp if obs.scaled_down else previous.get("lastScaleDownTime") or None,
        conditions=[Condition(**c) for c in conditions],
        nodeLosses=[
            NodeLoss(**e) for e in merge_history(previous.get("nodeLosses") or [], obs.losses, now)
        ],
    )
