from __future__ import annotations

from dataclasses import replace

import pytest

from kubeforge.operators.gpupool.api.models import Placement
from kubeforge.operators.gpupool.core.planner import (
    BootTimes,
    Decision,
    JobDemand,
    JobVerdict,
    NodeState,
    PoolPlan,
    PoolPolicy,
    ScaleDownPolicy,
    Snapshot,
    plan,
)

NOW = 10_000.0
POLICY = PoolPolicy(
    gpus_per_node=8, min_nodes=0, max_nodes=4, max_in_flight=4, idle_after_s=300, min_node_age_s=600
)


def job(name: str, *pods: int, created: float = 0.0, priority: int = 0) -> JobDemand:
    return JobDemand("ml", name, created, tuple(pods), priority)


def ready(
    name: str,
    allocated: int = 0,
    busy: bool = False,
    idle_for: float | None = 1_000,
    age: float = 5_000,
    cordoned: bool = False,
) -> NodeState:
    return NodeState(
        name,
        NOW - age,
        True,
        8,
        allocated,
        busy,
        None if busy or idle_for is None else NOW - idle_for,
        cordoned,
    )


def coming(name: str) -> NodeState:
    return NodeState(name, NOW - 30, gpu_ready=False)


def verdict(p: PoolPlan, key: str) -> JobVerdict:
    return next(v for v in p.jobs if v.job == f"ml/{key}")


def test_a_whole_gang_gets_all_its_nodes_at_once() -> None:
    p = plan(Snapshot((), (job("a", 8, 8, 8),)), POLICY, NOW)
    assert p.decision is Decision.SCALE_UP
    assert p.add_nodes == 3 and p.desired_nodes == 3
    assert verdict(p, "a").placement is Placement.NEEDS_NODES


def test_nodes_in_flight_are_not_requested_twice() -> None:
    # The GPUs have not been advertised yet: the classic "scale again" bug must not happen.
    p = plan(Snapshot((coming("n1"), coming("n2")), (job("a", 8, 8),)), POLICY, NOW)
    assert p.decision is Decision.NOOP
    assert verdict(p, "a").placement is Placement.WAITING


def test_a_job_too_big_for_max_nodes_causes_no_scale_up_but_smaller_jobs_still_do() -> None:
    p = plan(
        Snapshot((), (job("huge", 8, 8, 8, 8, 8, created=1), job("small", 8, created=2))),
        POLICY,
        NOW,
    )
    assert verdict(p, "huge").placement is Placement.CAPACITY_UNAVAILABLE
    assert "above maxNodes 4" in verdict(p, "huge").reason
    assert p.decision is Decision.SCALE_UP and p.add_nodes == 1


def test_pod_larger_than_a_node_is_unschedulable() -> None:
    p = plan(Snapshot((), (job("x", 16),)), POLICY, NOW)
    assert p.decision is Decision.NOOP
    assert verdict(p, "x").placement is Placement.UNSCHEDULABLE
    assert "asks for 16 GPUs" in verdict(p, "x").reason


def test_free_gpus_on_ready_nodes_are_used_before_new_nodes() -> None:
    p = plan(Snapshot((ready("n1", allocated=4, busy=True),), (job("a", 4, 4),)), POLICY, NOW)
    assert p.add_nodes == 1


def test_priority_then_age_decides_who_gets_the_last_nodes() -> None:
    jobs = (job("old", 8, 8, 8, created=1), job("urgent", 8, 8, created=5, priority=10))
    policy = replace(POLICY, max_nodes=3)
    p = plan(Snapshot((), jobs), policy, NOW)
    assert verdict(p, "urgent").placement is Placement.NEEDS_NODES
    assert verdict(p, "old").placement is Placement.CAPACITY_UNAVAILABLE
    assert p.add_nodes == 2


def test_max_in_flight_limits_a_burst() -> None:
    p = plan(
        Snapshot((coming("n1"),), (job("a", 8, 8, 8, 8),)), replace(POLICY, max_in_flight=2), NOW
    )
    assert p.add_nodes == 1
    assert any("maxInFlight 2" in r for r in p.reasons)


def test_min_nodes_is_kept() -> None:
    p = plan(Snapshot((), ()), replace(POLICY, min_nodes=2), NOW)
    assert p.decision is Decision.SCALE_UP and p.add_nodes == 2


@pytest.mark.parametrize(
    ("node", "decision"),
    [
        (ready("idle"), Decision.DRAIN),
        (ready("busy", allocated=8, busy=True), Decision.NOOP),
        (ready("young", age=100), Decision.NOOP),
        (ready("recent", idle_for=10), Decision.NOOP),
        (ready("drained", cordoned=True), Decision.SCALE_DOWN),
    ],
    ids=["idle-drained", "busy-kept", "young-kept", "recently-busy-kept", "cordoned-removed"],
)
def test_scale_down_only_removes_idle_old_nodes(node: NodeState, decision: Decision) -> None:
    p = plan(Snapshot((node,), ()), POLICY, NOW)
    assert p.decision is decision
    if decision is Decision.DRAIN:
        assert p.nodes_to_drain == (node.name,)
    if decision is Decision.SCALE_DOWN:
        assert p.nodes_to_remove == (node.name,) and p.desired_nodes == 0


def test_no_drain_below_min_nodes_or_while_jobs_wait() -> None:
    idle = ready("idle")
    assert plan(Snapshot((idle,), ()), replace(POLICY, min_nodes=1), NOW).decision is Decision.NOOP
    waiting = plan(Snapshot((idle,), (job("a", 8),)), POLICY, NOW)
    assert waiting.decision is Decision.NOOP
    assert verdict(waiting, "a").placement is Placement.FITS


def test_the_plan_is_deterministic() -> None:
    snap = Snapshot((ready("n1"), coming("n2")), (job("a", 8, 8), job("b", 2, created=3)))
    assert plan(snap, POLICY, NOW) == plan(snap, POLICY, NOW)


def test_small_gangs_fill_the_tightest_node_so_a_whole_node_stays_free() -> None:
    # Best fit: the 2-GPU job goes to the node with 2 free GPUs, so the 8-GPU job still fits
    # on the empty node and nothing is added (first fit in node order would add a node).
    nodes = (ready("empty"), ready("tight", allocated=6, busy=True))
    p = plan(Snapshot(nodes, (job("small", 2, created=1), job("big", 8, created=2))), POLICY, NOW)
    assert p.decision is Decision.NOOP
    assert verdict(p, "small").placement is verdict(p, "big").placement is Placement.FITS


QUEUE_AWARE = replace(POLICY, scale_down=ScaleDownPolicy.QUEUE_AWARE, idle_after_s=600)


def test_queue_aware_removes_an_empty_node_nobody_queues_for_in_one_plan_while_nodes_boot() -> None:
    # The old policy gives nothing back while any node is in flight; queue-aware cordons and
    # removes the empty node in the same plan and leaves the booting node alone.
    nodes = (ready("empty", idle_for=700), coming("boot"))
    assert plan(Snapshot(nodes, ()), POLICY, NOW).decision is Decision.NOOP
    p = plan(Snapshot(nodes, ()), QUEUE_AWARE, NOW)
    assert p.decision is Decision.SCALE_DOWN
    assert p.nodes_to_drain == ("empty",) and p.nodes_to_remove == ("empty",)
    assert p.desired_nodes == 1


def test_queue_aware_keeps_the_empty_nodes_a_queued_gang_would_use() -> None:
    # A 1-node job fits on one of two empty nodes: that one is kept, the other goes. A 3-node
    # gang waiting for capacity (maxNodes 3, one node busy) would use both: both are kept.
    policy = replace(QUEUE_AWARE, max_nodes=3)
    nodes = (ready("e1", idle_for=700), ready("busy", 8, busy=True), ready("e2", idle_for=900))
    one = plan(Snapshot(nodes, (job("one", 8),)), policy, NOW)
    assert one.decision is Decision.SCALE_DOWN and one.nodes_to_remove == ("e2",)
    big = plan(Snapshot(nodes, (job("big", 8, 8, 8),)), policy, NOW)
    assert verdict(big, "big").placement is Placement.CAPACITY_UNAVAILABLE
    assert big.decision is Decision.NOOP
    alone = plan(Snapshot(nodes, ()), policy, NOW)
    assert alone.decision is Decision.SCALE_DOWN
    assert alone.nodes_to_remove == ("e2", "e1")  # longest idle first


@pytest.mark.parametrize(
    ("break_even_s", "idle_for", "decision"),
    [
        (None, 300, Decision.NOOP),  # no boot seen yet: idleAfter (600 s) holds
        (240.0, 300, Decision.SCALE_DOWN),  # past the break-even: removed
        (240.0, 200, Decision.NOOP),  # within it: kept
        (5000.0, 700, Decision.SCALE_DOWN),  # idleAfter caps a long boot time
    ],
    ids=["unlearnt", "past-break-even", "within-break-even", "capped-by-idle-after"],
)
def test_an_empty_node_is_kept_about_as_long_as_a_boot_costs(
    break_even_s: float | None, idle_for: float, decision: Decision
) -> None:
    policy = replace(QUEUE_AWARE, break_even_s=break_even_s)
    assert plan(Snapshot((ready("e", idle_for=idle_for),), ()), policy, NOW).decision is decision


def test_boot_times_are_learnt_from_nodes_seen_booting_then_ready() -> None:
    boots = BootTimes()
    assert boots.estimate_s is None
    boots.observe((NodeState("a", 100.0, False), NodeState("b", 100.0, False)), 200.0)
    boots.observe((NodeState("a", 100.0, True, 8), NodeState("b", 100.0, False)), 340.0)
    boots.observe((NodeState("a", 100.0, True, 8), NodeState("b", 100.0, True, 8)), 400.0)
    # A node already ready when first seen tells nothing about its boot.
    boots.observe((NodeState("c", 0.0, True, 8),), 500.0)
    assert sorted(boots.seen) == [240.0, 300.0]
    assert boots.estimate_s == 300.0


def freeing(name: str, in_s: float | None) -> NodeState:
    """A full, busy node whose pods are expected to end ``in_s`` from now (None: undeclared)."""
    return replace(
        ready(name, allocated=8, busy=True),
        expected_free_at=None if in_s is None else NOW + in_s,
    )


LOOKING_AHEAD = replace(QUEUE_AWARE, max_nodes=10, break_even_s=240.0)


@pytest.mark.parametrize(
    ("ends_in", "added", "placement"),
    [
        ((60.0, 200.0), 0, Placement.WAITING),  # both free before a new node boots: wait
        ((60.0, 400.0), 2, Placement.NEEDS_NODES),  # one frees too late: new nodes
        ((60.0, None), 2, Placement.NEEDS_NODES),  # a job declares no run time: new nodes
        ((-30.0, 60.0), 2, Placement.NEEDS_NODES),  # overdue: its end is unknown now
    ],
    ids=["both-in-time", "one-too-late", "undeclared", "overdue"],
)
def test_a_gang_waits_for_busy_nodes_that_free_before_new_ones_could_boot(
    ends_in: tuple[float | None, float | None], added: int, placement: Placement
) -> None:
    nodes = tuple(freeing(f"b{i}", t) for i, t in enumerate(ends_in))
    p = plan(Snapshot(nodes, (job("gang", 8, 8),)), LOOKING_AHEAD, NOW)
    assert p.add_nodes == added
    assert verdict(p, "gang").placement is placement


def test_nodes_freeing_in_time_serve_the_queue_in_order_and_are_not_counted_twice() -> None:
    # One node frees within the boot time: the older gang waits for it, the younger one gets
    # a new node; without declared run times (no boot seen yet) both get new nodes.
    nodes = (freeing("b1", 60.0),)
    jobs = (job("old", 8, created=1), job("young", 8, created=2))
    p = plan(Snapshot(nodes, jobs), LOOKING_AHEAD, NOW)
    assert verdict(p, "old").placement is Placement.WAITING
    assert verdict(p, "young").placement is Placement.NEEDS_NODES
    assert p.add_nodes == 1
    blind = plan(Snapshot(nodes, jobs), replace(LOOKING_AHEAD, break_even_s=None), NOW)
    assert blind.add_nodes == 2


def test_an_empty_node_goes_at_once_when_a_busy_node_freeing_in_time_stands_in_for_it() -> None:
    # Within the break-even the empty node is kept, unless a node no queued gang claims
    # frees within the boot time: it serves the next gang as soon, so the empty one goes.
    empty = ready("e", idle_for=60)
    kept = plan(Snapshot((empty, freeing("b", None)), ()), LOOKING_AHEAD, NOW)
    assert kept.decision is Decision.NOOP
    gone = plan(Snapshot((empty, freeing("b", 100.0)), ()), LOOKING_AHEAD, NOW)
    assert gone.decision is Decision.SCALE_DOWN and gone.nodes_to_remove == ("e",)
    off = replace(LOOKING_AHEAD, freeing_stands_in=False)
    assert plan(Snapshot((empty, freeing("b", 100.0)), ()), off, NOW).decision is Decision.NOOP
    # A queued gang claims the freeing node: the empty node is no longer spare-able for it.
    claimed = plan(
        Snapshot((empty, freeing("b", 100.0)), (job("g", 8, 8, created=1),)), LOOKING_AHEAD, NOW
    )
    assert claimed.decision is Decision.NOOP and claimed.add_nodes == 0


@pytest.mark.parametrize("scale_down", list(ScaleDownPolicy))
def test_headroom_keeps_whole_free_nodes_beyond_the_queue(scale_down: ScaleDownPolicy) -> None:
    policy = replace(POLICY, scale_down=scale_down, headroom_nodes=2)
    # An empty pool grows to the headroom with no job at all.
    grow = plan(Snapshot((), ()), policy, NOW)
    assert grow.decision is Decision.SCALE_UP and grow.add_nodes == 2
    # Nodes in flight count: nothing is asked for twice.
    assert plan(Snapshot((coming("b1"), coming("b2")), ()), policy, NOW).decision is Decision.NOOP
    # Two long-idle empty nodes are the headroom: neither goes.
    spare = (ready("e1", idle_for=5_000), ready("e2", idle_for=5_000))
    assert plan(Snapshot(spare, ()), policy, NOW).decision is Decision.NOOP
    # A third goes (longest idle first); without headroom all three would be candidates.
    three = (*spare, ready("e3", idle_for=6_000))
    p = plan(Snapshot(three, ()), policy, NOW)
    assert p.decision in (Decision.DRAIN, Decision.SCALE_DOWN)
    assert (p.nodes_to_drain or p.nodes_to_remove) == ("e3",)
    # A job takes one of the spare nodes: one more is asked for, so two stay free.
    taken = plan(Snapshot(spare, (job("a", 8),)), policy, NOW)
    assert taken.decision is Decision.SCALE_UP and taken.add_nodes == 1
    assert verdict(taken, "a").placement is Placement.FITS


def test_headroom_never_passes_max_nodes_and_queued_gangs_come_first() -> None:
    policy = replace(POLICY, headroom_nodes=3)  # maxNodes 4
    p = plan(Snapshot((ready("busy", 8, busy=True),), (job("g", 8, 8),)), policy, NOW)
    # The gang's two nodes first, then one spare node: the pool stops at maxNodes.
    assert p.decision is Decision.SCALE_UP and p.add_nodes == 3
    assert verdict(p, "g").placement is Placement.NEEDS_NODES
    full = tuple(ready(f"n{i}", 8, busy=True) for i in range(4))
    assert plan(Snapshot(full, ()), policy, NOW).decision is Decision.NOOP
