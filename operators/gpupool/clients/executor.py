"""The one executor of a pool plan: :func:`apply_plan` asks a provider for what the plan says.

The reconciler applies a plan to a real provider (kwok, Cluster API); the simulator applies it
to its simulated pool through the same function, so what the benchmark measures is what the
operator does. Imports no Kubernetes client: the provider does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubeforge.operators.gpupool.api.models import Placement
from kubeforge.operators.gpupool.clients.provider import PoolChanges, ProviderError
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan
from kubeforge.operators.gpupool.core.reasons import Direction, ScaleReason


@dataclass(frozen=True)
class Action:
    """A change applied to the pool, for metrics: direction, reason and node count."""

    direction: Direction
    reason: ScaleReason
    nodes: int


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_plan` changed, and the provider's refusal that stopped it ("" if none)."""

    actions: tuple[Action, ...]
    error: str = ""

    @property
    def scaled_up(self) -> bool:
        """Nodes were asked for."""
        return any(a.direction is Direction.UP for a in self.actions)

    @property
    def scaled_down(self) -> bool:
        """Nodes were removed."""
        return any(a.direction is Direction.DOWN for a in self.actions)


def apply_plan(
    plan: PoolPlan,
    provider: PoolChanges,
    now: float,
    failed: Sequence[str] = (),
    still_empty: Callable[[str], bool] | None = None,
) -> Applied:
    """Remove ``failed`` nodes, then add, cordon and remove the nodes ``plan`` names.

    A node cordoned and removed by the same plan is checked again after the cordon: a pod the
    scheduler bound between the cluster read and the cordon keeps the node (cordoned; removed by
    a later plan once empty), so no running pod is ever disrupted.

    Args:
        plan: The planner's decision.
        provider: Who changes the pool.
        now: The time, on the caller's clock.
        failed: Nodes past provisionTimeout (the provisioning check, not the plan, finds them).
        still_empty: Whether a node has no pod bound, read after the cordon; None when
            nothing can bind between the read and the cordon (the simulator).

    Returns:
        The changes made. A :class:`ProviderError` stops at that step: what was applied before
        stays applied and is reported, with the error.
    """
    actions: list[Action] = []
    try:
        for name in failed:
            provider.remove(name)
        if failed:
            actions.append(Action(Direction.DOWN, ScaleReason.PROVISION_TIMEOUT, len(failed)))
        if plan.decision is Decision.SCALE_UP:
            provider.add_nodes(plan.add_nodes, now)
            for_jobs = any(v.placement is Placement.NEEDS_NODES for v in plan.jobs)
            reason = ScaleReason.GANG_DEMAND if for_jobs else ScaleReason.MIN_NODES
            actions.append(Action(Direction.UP, reason, plan.add_nodes))
        for name in plan.nodes_to_drain:
            provider.cordon(name)
        just_cordoned = set(plan.nodes_to_drain)
        removed = 0
        for name in plan.nodes_to_remove:
            if name in just_cordoned and still_empty is not None and not still_empty(name):
                continue
            provider.remove(name)
            removed += 1
        if removed:
            actions.append(Action(Direction.DOWN, ScaleReason.IDLE, removed))
    except ProviderError as exc:
        return Applied(tuple(actions), str(exc))
    return Applied(tuple(actions))
