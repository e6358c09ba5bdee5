"""The one plan executor: what it asks of the pool, and what it reports when the pool refuses."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubeforge.operators.gpupool.api.models import Placement
from kubeforge.operators.gpupool.clients.executor import Action, apply_plan
from kubeforge.operators.gpupool.clients.provider import ProviderError
from kubeforge.operators.gpupool.core.planner import Decision, JobVerdict, PoolPlan
from kubeforge.operators.gpupool.core.reasons import Direction, ScaleReason


@dataclass
class Pool:
    """A pool of named nodes; ``refuse`` names nodes the provider will not touch."""

    nodes: dict[str, bool] = field(default_factory=dict)  # name -> cordoned
    refuse: set[str] = field(default_factory=set)

    def add_nodes(self, count: int, now: float) -> list[str]:
        names = [f"n{len(self.nodes) + i}" for i in range(count)]
        self.nodes.update(dict.fromkeys(names, False))
        return names

    def cordon(self, name: str) -> None:
        self.nodes[name] = True

    def remove(self, name: str) -> None:
        if name in self.refuse:
            raise ProviderError(f"{name} is not ours")
        del self.nodes[name]


def test_a_scale_up_for_a_gang_adds_the_nodes_and_says_why() -> None:
    pool = Pool()
    verdict = JobVerdict("ml/a", 16, Placement.NEEDS_NODES, "whole job needs 2 new node(s)")
    applied = apply_plan(PoolPlan(Decision.SCALE_UP, 2, (), (verdict,), add_nodes=2), pool, 0.0)
    assert sorted(pool.nodes) == ["n0", "n1"]
    assert applied.actions == (Action(Direction.UP, ScaleReason.GANG_DEMAND, 2),)
    assert applied.scaled_up and not applied.scaled_down and not applied.error


def test_failed_nodes_go_first_and_a_refusal_keeps_what_was_done() -> None:
    pool = Pool({"late": False, "idle": True, "foreign": True}, refuse={"foreign"})
    plan = PoolPlan(Decision.SCALE_DOWN, 1, (), nodes_to_remove=("idle", "foreign"))
    applied = apply_plan(plan, pool, 0.0, failed=("late",))
    assert sorted(pool.nodes) == ["foreign"]
    assert applied.actions == (Action(Direction.DOWN, ScaleReason.PROVISION_TIMEOUT, 1),)
    assert applied.error == "foreign is not ours"


def test_a_drain_cordons_and_removes_nothing() -> None:
    pool = Pool({"idle": False})
    applied = apply_plan(PoolPlan(Decision.DRAIN, 1, (), nodes_to_drain=("idle",)), pool, 0.0)
    assert pool.nodes == {"idle": True} and applied.actions == ()


def test_a_node_that_got_a_pod_between_read_and_cordon_stays_cordoned_not_removed() -> None:
    pool = Pool({"empty": False, "raced": False})
    plan = PoolPlan(
        Decision.SCALE_DOWN,
        0,
        (),
        nodes_to_drain=("empty", "raced"),
        nodes_to_remove=("empty", "raced"),
    )
    applied = apply_plan(plan, pool, 0.0, still_empty=lambda name: name != "raced")
    assert pool.nodes == {"raced": True}
    assert applied.actions == (Action(Direction.DOWN, ScaleReason.IDLE, 1),)
