"""The GPU pool simulator: the operator's planner against the per-pod and static baselines."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from kubeforge.operators.gpupool.core.planner import ScaleDownPolicy
from kubeforge.operators.gpupool.sim.engine import (
    Autoscaler,
    Binding,
    ClusterSettings,
    PolicyResult,
    PolicySpec,
    Scoring,
    lower_bound_node_hours,
    simulate,
)
from kubeforge.operators.gpupool.sim.trace import (
    SCENARIOS,
    TraceJob,
    TraceSpec,
    generate_trace,
    overload,
    peak_demand_gpus,
)

KUBEFORGE = PolicySpec("kubeforge", Autoscaler.KUBEFORGE, Binding.GANG)
KUBEFORGE_RESERVE = PolicySpec("kubeforge-reserve", Autoscaler.KUBEFORGE, Binding.GANG_RESERVE)
PER_POD = PolicySpec("per_pod", Autoscaler.PER_POD, Binding.PER_POD)
PER_POD_ANY_ORDER = PolicySpec("per_pod_any_order", Autoscaler.PER_POD, Binding.PER_POD_ANY_ORDER)
# Fixed 300 s provisioning, reconcile every 15 s, idle 600 s and age 600 s before scale-down.
EXACT = ClusterSettings(max_nodes=10, max_in_flight=10, provision_delay_s=(300.0, 300.0))


def job(index: int, created: float, pods: int, gpus: int, hours: float) -> TraceJob:
    return TraceJob(index, created, (gpus,) * pods, hours * 3600.0)


def deterministic(result: PolicyResult) -> PolicyResult:
    """The result without the measured decision times, which are wall-clock."""
    return replace(result, decision_seconds=(), decision_cpu_seconds=())


@pytest.mark.parametrize(
    ("policy", "end_s", "idle_gpu_hours"),
    [
        # Ready at 300, runs 300..3900, idle from 3900; cordoned at 4500, removed at 4515.
        (KUBEFORGE, 4515.0, 16 * 615 / 3600),
        # Same, but the per-pod autoscaler removes an idle node in one step, at 4500.
        (PER_POD, 4500.0, 16 * 600 / 3600),
    ],
    ids=["kubeforge", "per-pod"],
)
def test_idle_gpu_hours_of_one_job_match_the_hand_computed_timeline(
    policy: PolicySpec, end_s: float, idle_gpu_hours: float
) -> None:
    result = simulate((job(0, 0.0, 2, 8, 1.0),), policy, EXACT)
    assert result.jobs_finished == 1
    assert result.waits_s == (300.0,)
    assert result.end_s == end_s
    assert result.nodes_added == 2 and result.nodes_removed == 2 and result.peak_nodes == 2
    assert result.busy_gpu_hours == pytest.approx(16.0)
    assert result.idle_gpu_hours == pytest.approx(idle_gpu_hours)
    assert result.empty_gpu_hours == pytest.approx(idle_gpu_hours)
    assert result.node_hours == pytest.approx(2 * end_s / 3600)
    assert result.provisioning_node_hours == pytest.approx(2 * 300 / 3600)


def test_a_static_pool_counts_its_unused_node_as_idle_until_the_last_job_ends() -> None:
    static = PolicySpec("static", Autoscaler.STATIC, Binding.GANG, static_nodes=3)
    result = simulate((job(0, 0.0, 2, 8, 1.0),), static, EXACT)
    assert result.waits_s == (0.0,)
    assert result.end_s == 3600.0
    assert result.idle_gpu_hours == pytest.approx(8.0)  # the third node, for the whole hour
    assert result.node_hours == pytest.approx(3.0)


def test_per_pod_binding_half_places_a_gang_while_its_nodes_boot_and_kubeforge_never_does() -> None:
    # Nodes boot in 60..600 s, so the four nodes of a 4x8 job become ready one by one.
    settings = replace(EXACT, provision_delay_s=(60.0, 600.0), seed=3)
    trace = (job(0, 0.0, 4, 8, 1.0), job(1, 30.0, 2, 8, 0.5), job(2, 45.0, 1, 4, 0.5))
    delays = [settings.provision_delay(i) for i in range(4)]
    assert max(delays) - min(delays) > 60  # precondition: the gang's nodes do not come together

    per_pod = simulate(trace, PER_POD, settings)
    kubeforge = simulate(trace, KUBEFORGE, settings)

    assert per_pod.jobs_ever_partially_placed >= 1
    assert per_pod.partial_held_gpu_hours > 0
    assert kubeforge.jobs_ever_partially_placed == 0
    assert kubeforge.partial_held_gpu_hours == 0
    assert kubeforge.jobs_finished == per_pod.jobs_finished == 3


@pytest.mark.parametrize(
    "policy",
    [KUBEFORGE, PER_POD, KUBEFORGE_RESERVE],
    ids=lambda p: p.name,
)
def test_every_job_of_a_seeded_trace_runs_and_all_nodes_are_given_back(
    policy: PolicySpec,
) -> None:
    spec = TraceSpec(jobs=150, pool_gpus=40 * 8, load=0.7, seed=7)
    trace = generate_trace(spec)
    settings = ClusterSettings(max_nodes=40, max_in_flight=40, seed=7)
    result = simulate(trace, policy, settings)
    assert result.jobs_started == result.jobs_finished == 150
    assert result.peak_nodes <= 40
    assert result.nodes_added == result.nodes_removed  # scaled back to minNodes 0
    assert min(result.waits_s) >= 0
    if policy.autoscaler is Autoscaler.KUBEFORGE:
        assert result.jobs_ever_partially_placed == 0
    assert result.busy_gpu_hours == pytest.approx(sum(j.gpus * j.duration_s for j in trace) / 3600)


def test_a_static_pool_sized_for_the_peak_runs_every_job() -> None:
    trace = generate_trace(TraceSpec(jobs=150, pool_gpus=40 * 8, load=0.7, seed=7))
    nodes = -(-peak_demand_gpus(trace) // 8)
    static = PolicySpec("static", Autoscaler.STATIC, Binding.GANG, static_nodes=nodes)
    result = simulate(trace, static, ClusterSettings(max_nodes=nodes))
    assert result.jobs_finished == 150
    assert result.nodes_added == nodes and result.nodes_removed == 0


def test_a_waiting_gang_keeps_its_ready_node_from_a_younger_job_only_with_reservations() -> None:
    # A (2x8) gets nodes 0 and 1 at t=0; B (1x8) arrives at t=1 and gets node 2 at t=15.
    # Precondition: node 0 is ready first, then node 1, then node 2.
    settings = next(
        s
        for seed in range(200)
        if (s := replace(EXACT, provision_delay_s=(60.0, 600.0), seed=seed))
        and s.provision_delay(0) < s.provision_delay(1) < 15 + s.provision_delay(2)
    )
    d1, d2 = settings.provision_delay(1), 15 + settings.provision_delay(2)
    trace = (job(0, 0.0, 2, 8, 1.0), job(1, 1.0, 1, 8, 1.0))

    gang = simulate(trace, KUBEFORGE, settings)
    reserve = simulate(trace, replace(KUBEFORGE, binding=Binding.GANG_RESERVE), settings)

    # Without reservations B takes node 0 and A starts only when node 2 arrives.
    assert gang.waits_s[0] == pytest.approx(d2)
    # With them, A starts as soon as its own second node is ready; B waits for node 2.
    assert reserve.waits_s[0] == pytest.approx(d1)
    assert reserve.waits_s[1] == pytest.approx(d2 - 1.0)


def test_a_trace_is_reproducible_from_its_seed() -> None:
    spec = TraceSpec(jobs=200, seed=11)
    assert generate_trace(spec) == generate_trace(spec)
    assert generate_trace(spec) != generate_trace(replace(spec, seed=12))
    trace = generate_trace(spec)
    settings = ClusterSettings(max_nodes=100, max_in_flight=100)
    first = deterministic(simulate(trace, KUBEFORGE, settings))
    assert first == deterministic(simulate(trace, KUBEFORGE, settings))


def test_the_trace_spans_1x1_to_16x8_jobs_at_the_asked_load() -> None:
    spec = TraceSpec(jobs=2000, seed=1)
    trace = generate_trace(spec)
    shapes = {(len(j.pods), j.pods[0]) for j in trace}
    assert (1, 1) in shapes and (16, 8) in shapes
    assert all(600.0 <= j.duration_s <= 14_400.0 for j in trace)
    offered = sum(j.gpus * j.duration_s for j in trace) / trace[-1].created_at
    assert offered == pytest.approx(0.5 * spec.pool_gpus, rel=0.15)


# A pool capped at 4 nodes, full with four 1x8 jobs (1 h .. 4 h) when a 4x8 gang arrives: the gang
# must wait for capacity, and the nodes free up one an hour.
CAPPED = replace(EXACT, max_nodes=4, max_in_flight=4)
FULL_THEN_GANG = (*(job(i, 0.0, 1, 8, i + 1.0) for i in range(4)), job(4, 60.0, 4, 8, 1.0))


def test_a_gang_waiting_for_capacity_holds_freed_nodes_under_per_pod_binding() -> None:
    result = simulate(FULL_THEN_GANG, PER_POD, CAPPED)
    # Nodes ready at 300; they free at 3900, 7500, 11100, 14700 and each takes one gang pod.
    assert result.jobs_finished == 5
    assert result.jobs_ever_partially_placed == 1
    assert result.waits_s[4] == pytest.approx(14_700.0 - 60.0)
    assert result.partial_held_gpu_hours == pytest.approx(8 * (3 + 2 + 1))  # 3, 2, 1 node-hours
    assert result.peak_nodes == 4


@pytest.mark.parametrize("policy", [KUBEFORGE, KUBEFORGE_RESERVE], ids=lambda p: p.name)
def test_kubeforge_holds_no_gpus_for_a_gang_waiting_for_capacity_and_never_passes_max_nodes(
    policy: PolicySpec,
) -> None:
    kubeforge = simulate(FULL_THEN_GANG, policy, CAPPED)
    per_pod = simulate(FULL_THEN_GANG, PER_POD, CAPPED)

    assert kubeforge.jobs_finished == 5
    assert kubeforge.jobs_ever_partially_placed == 0
    assert kubeforge.partial_held_gpu_hours == 0
    assert kubeforge.peak_nodes == 4
    # Freed nodes are given back after idleAfter; when the last one frees, the whole gang fits
    # (1 free node + 3 new ones within maxNodes 4) and starts once the new nodes boot (300 s).
    assert kubeforge.waits_s[4] == pytest.approx(14_700.0 + 300.0 - 60.0)
    assert kubeforge.idle_gpu_hours < per_pod.idle_gpu_hours / 4


def deadlocking_settings(trace: tuple[TraceJob, ...]) -> ClusterSettings:
    """A 2-node pool and a seed whose pod order gives each of two 2x8 jobs one node."""
    for seed in range(50):
        settings = replace(EXACT, max_nodes=2, max_in_flight=2, horizon_s=4 * 3600.0, seed=seed)
        if simulate(trace, PER_POD_ANY_ORDER, settings).deadlocked_at_s is not None:
            return settings
    raise AssertionError("no seed in 0..49 interleaves the two jobs' pods")


def test_half_placed_jobs_can_deadlock_and_the_run_ends_at_the_horizon() -> None:
    trace = (job(0, 0.0, 2, 8, 1.0), job(1, 0.0, 2, 8, 1.0))
    settings = deadlocking_settings(trace)

    stuck = simulate(trace, PER_POD_ANY_ORDER, settings)

    # Both nodes are ready at 300 s and each job got one: nothing runs, nothing can change.
    assert stuck.deadlocked_at_s is not None and stuck.deadlocked_at_s >= 300.0
    assert stuck.stopped_at_horizon
    assert stuck.jobs_started == stuck.jobs_finished == 0 and stuck.jobs_unfinished == 2
    assert stuck.partial_jobs_at_end == 2 and stuck.held_gpus_at_end == 16
    assert stuck.end_s == 4 * 3600.0  # the last arrival (0 s) + the horizon
    assert stuck.idle_gpu_hours == pytest.approx(16 * (4 * 3600.0 - 300.0) / 3600)
    assert stuck.idle_gpu_hours_before_deadlock == pytest.approx(
        16 * (stuck.deadlocked_at_s - 300.0) / 3600
    )
    # Never-started jobs count what they waited until the end.
    assert stuck.waits_with_unstarted_s == (4 * 3600.0, 4 * 3600.0)

    # The same pool and trace under gang binding, or binding pods oldest job first: both run.
    for policy in (KUBEFORGE, KUBEFORGE_RESERVE, PER_POD):
        result = simulate(trace, policy, settings)
        assert result.jobs_finished == 2 and result.deadlocked_at_s is None
        assert not result.stopped_at_horizon


def test_on_a_small_scarce_trace_per_pod_binding_holds_gpus_and_kubeforge_holds_none() -> None:
    spec = TraceSpec(jobs=150, pool_gpus=50 * 8, load=0.85, swing=0.5, period_s=2 * 3600.0, seed=5)
    trace = generate_trace(spec)
    settings = ClusterSettings(max_nodes=50, max_in_flight=50, seed=5)
    assert overload(trace, 50 * 8).longest_hours_above >= 1.0  # precondition: scarce for hours

    per_pod = simulate(trace, PER_POD, settings)
    any_order = simulate(trace, PER_POD_ANY_ORDER, settings)
    results = [simulate(trace, policy, settings) for policy in (KUBEFORGE, KUBEFORGE_RESERVE)]

    assert per_pod.peak_nodes == 50  # the pool reaches maxNodes
    assert per_pod.partial_held_gpu_hours > 0 and any_order.partial_held_gpu_hours > 0
    for kubeforge in results:
        assert kubeforge.jobs_finished == 150
        assert kubeforge.jobs_ever_partially_placed == 0
        assert kubeforge.partial_held_gpu_hours == 0
        assert kubeforge.held_gpus_at_end == 0
        assert kubeforge.peak_nodes <= 50


def test_zero_wait_demand_above_a_pool_is_measured_in_hours_and_gpu_hours() -> None:
    # 8 GPUs for 0..1 h and 8 more for 0.5..1.5 h: 16 GPUs for half an hour.
    trace = (job(0, 0.0, 1, 8, 1.0), job(1, 1800.0, 2, 4, 1.0))
    above = overload(trace, 8)
    assert above.hours_above == pytest.approx(0.5)
    assert above.longest_hours_above == pytest.approx(0.5)
    assert above.gpu_hours_above == pytest.approx(4.0)
    assert overload(trace, 16).hours_above == 0.0


def test_a_swinging_arrival_rate_sends_more_jobs_in_the_peak_half_of_each_period() -> None:
    spec = TraceSpec(jobs=4000, load=0.8, swing=0.5, period_s=4 * 3600.0, seed=3)
    trace = generate_trace(spec)
    peak = sum(1 for j in trace if j.created_at % spec.period_s < spec.period_s / 2)
    trough = len(trace) - peak
    # The rate integrates to (1 + 2 x 0.5 / pi) vs (1 - 2 x 0.5 / pi) per half: about 1.93x.
    assert peak / trough == pytest.approx(1.93, rel=0.15)
    offered = sum(j.gpus * j.duration_s for j in trace) / trace[-1].created_at
    assert offered == pytest.approx(0.8 * spec.pool_gpus, rel=0.15)
    with pytest.raises(ValueError, match="swing"):
        generate_trace(replace(spec, swing=1.0))


def test_the_scarce_scenario_offers_more_than_max_nodes_for_hours_and_the_ample_one_never() -> None:
    ample, scarce = SCENARIOS["ample"], SCENARIOS["scarce"]
    ample_trace, scarce_trace = generate_trace(ample.trace), generate_trace(scarce.trace)
    capacity = scarce.max_nodes * 8
    assert peak_demand_gpus(ample_trace) < ample.max_nodes * 8
    assert overload(ample_trace, ample.max_nodes * 8).hours_above == 0.0
    assert 1.0 < peak_demand_gpus(scarce_trace) / capacity <= 1.3
    assert overload(scarce_trace, capacity).longest_hours_above >= 2.0
    # The constant-rate trace is the one the first benchmark published (peak 5,445 GPUs).
    assert peak_demand_gpus(ample_trace) == 5445


def test_least_allocated_scoring_spreads_small_pods_and_keeps_more_nodes_than_most_allocated() -> (
    None
):
    # Two 8-GPU jobs end at 1 h; then two 2-GPU jobs arrive together. LeastAllocated (the default
    # kube-scheduler) puts them on different empty nodes, so no node can go; MostAllocated packs
    # them onto one node and the other is given back.
    trace = (
        job(0, 0.0, 1, 8, 1.0),
        job(1, 0.0, 1, 8, 1.0),
        job(2, 3900.0, 1, 2, 2.0),
        job(3, 3900.0, 1, 2, 2.0),
    )
    settings = replace(EXACT, idle_after_s=60.0, min_node_age_s=0.0)
    spread = simulate(trace, replace(PER_POD, scoring=Scoring.LEAST_ALLOCATED), settings)
    packed = simulate(trace, replace(PER_POD, scoring=Scoring.MOST_ALLOCATED), settings)
    assert spread.jobs_finished == packed.jobs_finished == 4
    assert spread.idle_gpu_hours - packed.idle_gpu_hours == pytest.approx(8 * 2.0, abs=0.5)


def test_cluster_autoscaler_delay_after_add_keeps_an_idle_node_while_it_keeps_adding() -> None:
    # Nodes are added at the ticks of 1500, 1800 and 2010 s. The last one is ready at 2310 s
    # but unused (its job took the first job's node, freed at 2100 s): idle 60 s, it goes at
    # 2370 s; with a 10-minute delay after the last add it may only go at 2610 s.
    arrivals = (1500.0, 1800.0, 2000.0)
    trace = (job(0, 0.0, 1, 8, 0.5), *(job(i, at, 1, 8, 1.0) for i, at in enumerate(arrivals, 1)))
    settings = replace(EXACT, idle_after_s=60.0, min_node_age_s=0.0)
    plain = simulate(trace, PER_POD, settings)
    delayed = simulate(trace, PER_POD, replace(settings, scale_down_delay_after_add_s=600.0))
    assert delayed.jobs_finished == plain.jobs_finished == 4
    assert delayed.idle_gpu_hours - plain.idle_gpu_hours == pytest.approx(8 * 240 / 3600)


def test_the_clairvoyant_bound_is_below_what_every_policy_pays() -> None:
    trace = generate_trace(TraceSpec(jobs=60, pool_gpus=20 * 8, seed=3))
    settings = ClusterSettings(max_nodes=20, max_in_flight=20, seed=3)
    busy = sum(j.gpus * j.duration_s for j in trace) / 3600.0
    bound = lower_bound_node_hours(busy, math.ceil(peak_demand_gpus(trace) / 8), settings)
    for policy in (KUBEFORGE_RESERVE, PER_POD):
        result = simulate(trace, policy, settings)
        assert result.busy_gpu_hours == pytest.approx(busy)
        assert bound < result.node_hours


@pytest.mark.parametrize(
    ("policy", "redone_gpu_hours", "held_gpu_hours"),
    [
        # The whole gang restarts: nothing is held while the replacement boots.
        (KUBEFORGE_RESERVE, 16 * 0.5, 0.0),
        # Only the lost pod is replaced: the other pod holds its 8 GPUs for the 300 s boot.
        (PER_POD, 16 * 0.5, 8 * 300 / 3600),
    ],
    ids=["kubeforge-whole-gang", "per-pod-replacement"],
)
def test_a_node_lost_under_a_running_gang_costs_the_work_since_the_last_checkpoint(
    policy: PolicySpec, redone_gpu_hours: float, held_gpu_hours: float
) -> None:
    # A 2 x 8 GPU job runs 3 h from 300 s; a node fails when its life is up. With a failure
    # rate so low that only the drawn lifetime matters, pick the settings' seed whose first
    # node dies 1.5 h into the run (checkpoints every hour: 0.5 h of work is redone).
    settings = replace(EXACT, node_failures_per_node_hour=0.5, checkpoint_interval_s=3600.0)
    seed = next(
        s
        for s in range(10_000)
        if 5400.0 < min(replace(settings, seed=s).lifetime(i) for i in (0, 1)) < 5500.0
        and max(replace(settings, seed=s).lifetime(i) for i in (0, 1, 2, 3)) > 8 * 3600.0
    )
    settings = replace(settings, seed=seed)
    result = simulate((job(0, 0.0, 2, 8, 3.0),), policy, settings)
    assert result.nodes_failed == 1 and result.jobs_interrupted == 1
    assert result.jobs_finished == 1
    assert result.redone_gpu_hours == pytest.approx(redone_gpu_hours, abs=16 * 100 / 3600)
    assert result.partial_held_gpu_hours == pytest.approx(held_gpu_hours, abs=8 * 20 / 3600)


@pytest.mark.parametrize("known", [True, False], ids=["run-times-declared", "not-declared"])
def test_a_gang_waits_for_a_node_its_running_job_frees_before_a_new_one_could_boot(
    known: bool,
) -> None:
    # A runs 300..3900 on the only node; B (one node) comes at 3700, 200 s before A ends and
    # within the 300 s boot the pool has seen. Knowing A's end, the pool adds no node for B;
    # without, it boots one that B never uses (B takes A's node at 3900 either way).
    settings = replace(
        EXACT,
        scale_down=ScaleDownPolicy.QUEUE_AWARE,
        learn_boot_time=True,
        run_times_known=known,
    )
    trace = (job(0, 0.0, 1, 8, 1.0), job(1, 3700.0, 1, 8, 0.5))
    result = simulate(trace, KUBEFORGE_RESERVE, settings)
    assert result.jobs_finished == 2
    assert result.waits_s == (300.0, 200.0)
    assert result.nodes_added == (1 if known else 2)
    unused = result.empty_breakdown_gpu_hours["fresh_then_removed"]
    assert (unused == 0.0) if known else (unused > 0.0)
    assert sum(result.empty_breakdown_gpu_hours.values()) == pytest.approx(result.empty_gpu_hours)


def test_spare_nodes_start_jobs_at_once_and_per_pod_placeholders_are_used_last() -> None:
    # Headroom 1. A 4-GPU job at 0 takes the first ready node (two came up: its own and the
    # spare); a 4-GPU job at 30 min would, under LeastAllocated, spread onto the spare node,
    # but a placeholder pod holds it: it shares the first job's node, so no third node is
    # ever needed. Kubeforge's spare is a really empty node its MostAllocated profile fills
    # last: the same two nodes. In both, the second job starts at once.
    trace = (job(0, 0.0, 1, 4, 2.0), job(1, 1800.0, 1, 4, 1.0))
    settings = replace(EXACT, headroom_nodes=1)
    least = replace(PER_POD, scoring=Scoring.LEAST_ALLOCATED)
    per_pod = simulate(trace, least, settings)
    kubeforge = simulate(
        trace, replace(KUBEFORGE_RESERVE, scoring=Scoring.MOST_ALLOCATED), settings
    )
    for result in (per_pod, kubeforge):
        assert result.jobs_finished == 2 and result.peak_nodes == 2 and result.nodes_added == 2
        assert result.waits_s[1] == 0.0  # the second job needed no boot
    # Without headroom no spare is kept: one node, and the first job waits for its boot.
    bare = simulate(trace, least, EXACT)
    assert bare.peak_nodes == 1 and bare.waits_s[0] >= 300.0
