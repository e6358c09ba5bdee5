"""A discrete-event simulation of a GPU node pool: a trace of jobs, a scheduler, an autoscaler.

The Kubeforge policy calls the operator's own :func:`~kubeforge.operators.gpupool.core.planner.plan`
on a :class:`~kubeforge.operators.gpupool.core.planner.Snapshot` of the simulated pool at every
reconcile, and applies its decision (add nodes, cordon, remove) with the reconciler's own
executor, :func:`~kubeforge.operators.gpupool.clients.executor.apply_plan`.
The baselines are a per-pending-pod autoscaler (Cluster-Autoscaler-like) and a static pool.

Model:
- A node asked for at ``t`` advertises its GPUs at ``t + delay`` (boot + device plugin), the
  delay drawn per node from ``provision_delay_s`` (the same node number gets the same delay under
  every policy). From then on pods can bind to it.
- The scheduler runs after every batch of events. It binds pods to GPU-ready, uncordoned nodes
  by best fit (the node with the fewest free GPUs that holds the pod, as kube-scheduler's
  ``MostAllocated`` scoring does), oldest job first, and lets a younger job pass one that does
  not fit. With ``gang`` binding a job's pods bind all at once or not at all (a gang scheduler or
  admission, such as the coscheduling plugin or Kueue, in front of kube-scheduler); with
  ``per_pod`` binding each pod binds on its own, so a job can hold GPUs while it waits for the
  rest of its pods. ``gang_reserve`` is ``gang`` where a waiting gang also keeps, within each
  scheduling pass, the free GPUs it would use from younger jobs (a scheduler with reservations).
  ``per_pod_any_order`` is ``per_pod`` with the pending pods of all jobs tried in a seeded random
  order at every pass: kube-scheduler keeps no job order once pods have failed (a re-queued
  pod's queue timestamp is refreshed and its backoff grows with its attempts), so pods of
  several jobs interleave, several jobs can be half-placed at once, and they can deadlock.
- A run ends when every job has finished and the pool is back at ``minNodes``, or at
  ``horizon_s`` after the last arrival. A pool that can never change again (jobs pending, none
  running, none of its nodes booting or empty, no event left, at ``maxNodes``) is deadlocked:
  the run jumps to the horizon, integrating that state until then.
- A job starts when all its pods are bound and runs for its known duration.
- Idle GPU time is GPU time of GPU-ready nodes not used by a running job: GPUs of a node nobody
  uses, of a cordoned node, and GPUs held by pods of a job that has not started.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from kubeforge.operators.gpupool.clients.executor import apply_plan
from kubeforge.operators.gpupool.core.planner import (
    BootTimes,
    JobDemand,
    NodeState,
    PoolPolicy,
    ScaleDownPolicy,
    Snapshot,
    plan,
)
from kubeforge.operators.gpupool.sim.trace import TraceJob


class SimulationError(RuntimeError):
    """The simulated cluster reached a state a correct autoscaler never causes."""


class Autoscaler(enum.StrEnum):
    """Who decides the node count."""

    KUBEFORGE = "kubeforge"  # the operator's planner on gang demand
    PER_POD = "per_pod"  # Cluster-Autoscaler-like: nodes for pending pods that do not fit
    STATIC = "static"  # a fixed pool, ready from the start


class Binding(enum.StrEnum):
    """How the scheduler binds a job's pods."""

    GANG = "gang"  # all pods of a job or none; a younger job may use GPUs an older one waits for
    GANG_RESERVE = "gang_reserve"  # gang, and a waiting gang keeps the free GPUs it would use
    PER_POD = "per_pod"  # each pod on its own, as plain kube-scheduler does, oldest job first
    PER_POD_ANY_ORDER = "per_pod_any_order"  # each pod on its own, pods tried in random order


class Scoring(enum.StrEnum):
    """Which node kube-scheduler's ``NodeResourcesFit`` plugin prefers for a pod."""

    MOST_ALLOCATED = "MostAllocated"  # the fullest node that holds the pod (best fit)
    LEAST_ALLOCATED = "LeastAllocated"  # the emptiest node: kube-scheduler's default


@dataclass(frozen=True)
class PolicySpec:
    """One policy of a run: an autoscaler, a binding mode, and for a static pool its size.

    ``settings``, when given, replaces the run's shared :class:`ClusterSettings` for this policy
    (a sweep of ``idle_after_s``, the Cluster Autoscaler's defaults).
    """

    name: str
    autoscaler: Autoscaler
    binding: Binding
    static_nodes: int = 0
    scoring: Scoring = Scoring.MOST_ALLOCATED
    settings: ClusterSettings | None = None


@dataclass(frozen=True)
class ClusterSettings:
    """The simulated pool; the scale-down settings are shared by both autoscalers.

    Attributes:
        gpus_per_node: GPUs of every node.
        min_nodes: Nodes the autoscalers keep.
        max_nodes: Nodes the autoscalers never go above.
        max_in_flight: Nodes being provisioned at once, at most (both autoscalers).
        idle_after_s: A node idle this long may be removed (both autoscalers).
        min_node_age_s: A node younger than this is never removed (both autoscalers).
        reconcile_interval_s: How often each autoscaler decides.
        provision_delay_s: From asking for a node to its GPUs being advertised, drawn uniformly.
        horizon_s: The run stops this long after the last arrival even if jobs still wait.
        seed: Seed of the provisioning delays.
        scale_down: The planner's scale-down policy (Kubeforge only).
        learn_boot_time: Kubeforge keeps an empty node for the pool's observed boot time (the
            break-even, capped by ``idle_after_s``) under ``QUEUE_AWARE``; else ``idle_after_s``.
        scale_down_delay_after_add_s: The per-pod autoscaler removes no node this long after
            it last added one (Cluster Autoscaler's ``--scale-down-delay-after-add``).
        node_failures_per_node_hour: Rate at which a GPU-ready node fails (spot loss, a dead
            host), drawn per node number from ``seed`` so the same node fails at the same age
            under every policy; 0 for none.
        checkpoint_interval_s: A job saves its progress this often; an interrupted run redoes
            the work since its last save (0: no checkpoints, it redoes the whole run).
        run_times_known: Jobs declare their expected run time (the ``kubeforge.io/expected-
            runtime`` annotation), so Kubeforge's planner sees when each busy node should free.
            Off: it knows only the ends of jobs whose trace declares a run time
            (:attr:`TraceJob.declared_s`, which on or off replaces the estimate).
        run_time_error: The declared run time is the true one times a factor drawn per job,
            uniformly in ``1 +/- run_time_error`` (seeded): 0 is a perfect estimate.
        freeing_stands_in: :attr:`PoolPolicy.freeing_stands_in` (a lever, on as shipped).
        headroom_nodes: Whole free nodes kept beyond what pending jobs use
            (:attr:`PoolPolicy.headroom_nodes`). The per-pod autoscaler gets the same as the
            overprovisioning users give Cluster Autoscaler (placeholder pods of a low priority
            that real pods preempt): as many spare nodes, never removed, that the scheduler
            uses only when no other node holds a pod.
    """

    gpus_per_node: int = 8
    min_nodes: int = 0
    max_nodes: int = 1000
    max_in_flight: int = 1000
    idle_after_s: float = 600.0
    min_node_age_s: float = 600.0
    reconcile_interval_s: float = 15.0
    provision_delay_s: tuple[float, float] = (180.0, 300.0)
    horizon_s: float = 2 * 86_400.0
    seed: int = 0
    scale_down: ScaleDownPolicy = ScaleDownPolicy.IDLE_AFTER
    learn_boot_time: bool = False
    scale_down_delay_after_add_s: float = 0.0
    node_failures_per_node_hour: float = 0.0
    checkpoint_interval_s: float = 1800.0
    run_times_known: bool = False
    run_time_error: float = 0.0
    freeing_stands_in: bool = True
    headroom_nodes: int = 0

    def pool_policy(self) -> PoolPolicy:
        """The GPUNodePool policy the planner gets."""
        return PoolPolicy(
            gpus_per_node=self.gpus_per_node,
            min_nodes=self.min_nodes,
            max_nodes=self.max_nodes,
            max_in_flight=self.max_in_flight,
            idle_after_s=self.idle_after_s,
            min_node_age_s=self.min_node_age_s,
            scale_down=self.scale_down,
            freeing_stands_in=self.freeing_stands_in,
            headroom_nodes=self.headroom_nodes,
        )

    def lifetime(self, index: int) -> float:
        """Seconds node number ``index`` lives once GPU-ready (inf without failures)."""
        if self.node_failures_per_node_hour <= 0:
            return math.inf
        rng = random.Random(self.seed * 7_919 + index + 1_000_000_007)
        return rng.expovariate(self.node_failures_per_node_hour / 3600.0)

    def run_time_estimate(self, index: int) -> float:
        """Declared / true run time of job number ``index``: the same under every policy."""
        if self.run_time_error <= 0:
            return 1.0
        draw = random.Random(self.seed * 15_485_863 + index + 7).random()
        return 1.0 + self.run_time_error * (2.0 * draw - 1.0)

    def provision_delay(self, index: int) -> float:
        """The delay of node number ``index``: the same under every policy of a run."""
        low, high = self.provision_delay_s
        return low + (high - low) * random.Random(self.seed * 1_000_003 + index).random()


@dataclass(frozen=True)
class PolicyResult:
    """What one policy did with the trace.

    GPU-hours are integrated from time 0 to ``end_s``: for an autoscaler, until the last job has
    finished and the pool is back at ``min_nodes`` (its scale-down tail counts); for a static
    pool, until the last job has finished. A run cut at the horizon ends there instead.

    Attributes:
        waits_s: Per started job, from its creation to all its pods bound.
        jobs_ever_partially_placed: Jobs that had some, not all, pods bound at some moment.
        idle_gpu_hours: GPU-ready GPU-hours not used by a running job.
        partial_held_gpu_hours: The part of them held by pods of jobs not started yet.
        empty_gpu_hours: The part of them on nodes with no pod bound (cordoned included).
        empty_breakdown_gpu_hours: ``empty_gpu_hours`` split by how each empty stretch of a node
            began and ended (:data:`EMPTY_KINDS`).
        node_hours: Node-hours from asking for each node to removing it.
        decision_seconds: Wall-clock time of every ``plan`` call (Kubeforge policy only).
        decisions: How many decisions of each kind the autoscaler made.
        stopped_at_horizon: The run was cut at ``horizon_s`` after the last arrival with jobs
            not finished (stuck: e.g. half-placed jobs holding the GPUs the others wait for).
        unstarted_waited_s: Per job that never started, how long it had waited at the end.
        jobs_running_at_end: Jobs still running when the run ended.
        partial_jobs_at_end: Jobs with some, not all, pods bound when the run ended.
        held_gpus_at_end: GPUs bound to pods of those jobs when the run ended.
        last_progress_s: When a job last started or finished.
        deadlocked_at_s: When the pool reached a state it can never leave (jobs pending, none
            running, every node full or holding pods of half-placed jobs); None if it never did.
        idle_gpu_hours_before_deadlock: Idle GPU-hours up to that moment (0 without deadlock);
            from then to the horizon every GPU of the pool is idle.
    """

    policy: str
    autoscaler: str
    binding: str
    jobs: int
    jobs_started: int
    jobs_finished: int
    jobs_ever_partially_placed: int
    waits_s: tuple[float, ...]
    idle_gpu_hours: float
    partial_held_gpu_hours: float
    busy_gpu_hours: float
    ready_gpu_hours: float
    node_hours: float
    ready_node_hours: float
    empty_gpu_hours: float
    peak_nodes: int
    nodes_added: int
    nodes_removed: int
    end_s: float
    decision_seconds: tuple[float, ...] = ()
    decision_cpu_seconds: tuple[float, ...] = ()
    decisions: dict[str, int] = field(default_factory=dict)
    stopped_at_horizon: bool = False
    unstarted_waited_s: tuple[float, ...] = ()
    jobs_running_at_end: int = 0
    partial_jobs_at_end: int = 0
    held_gpus_at_end: int = 0
    last_progress_s: float = 0.0
    deadlocked_at_s: float | None = None
    idle_gpu_hours_before_deadlock: float = 0.0
    nodes_failed: int = 0
    jobs_interrupted: int = 0
    redone_gpu_hours: float = 0.0
    empty_breakdown_gpu_hours: dict[str, float] = field(default_factory=dict)

    @property
    def jobs_unfinished(self) -> int:
        """Jobs that did not finish before the run ended."""
        return self.jobs - self.jobs_finished

    @property
    def waits_with_unstarted_s(self) -> tuple[float, ...]:
        """Waits of every job: a job that never started counts what it had waited at the end."""
        return self.waits_s + self.unstarted_waited_s

    @property
    def provisioning_node_hours(self) -> float:
        """Node-hours paid while nodes booted and had not advertised their GPUs yet."""
        return self.node_hours - self.ready_node_hours

    @property
    def utilization(self) -> float:
        """Share of the GPU-ready GPU-hours that running jobs used."""
        return self.busy_gpu_hours / self.ready_gpu_hours if self.ready_gpu_hours else 0.0


# How a stretch of time a GPU-ready node spends with no pod began and ended.
EMPTY_KINDS: dict[str, str] = {
    "fresh_then_used": "booted, waited for its first pod (a gang's other nodes, the scheduler)",
    "fresh_then_removed": "booted and removed without ever running a pod",
    "kept_then_used": "kept empty after its last pod left, then used again",
    "kept_then_removed": "kept empty after its last pod left, then removed (cordon included)",
    "at_end": "still empty when the run ended",
}

_FINISH, _FAIL, _READY, _ARRIVE, _TICK = range(5)  # order of events at the same instant


@dataclass(eq=False)
class _Node:
    index: int
    name: str
    requested_at: float
    gpus: int
    ready: bool = False
    cordoned: bool = False
    free: int = 0
    pods: int = 0
    idle_since: float | None = None
    served: bool = False  # a pod has been bound to it since it became GPU-ready
    jobs: dict[int, int] = field(default_factory=dict)  # pods bound to it, per job index
    view: NodeState | None = None  # the planner's view, rebuilt only after a change


@dataclass(eq=False)
class _Job:
    trace: TraceJob
    bound: list[_Node | None]
    started_at: float | None = None  # of the current run; None while pending
    finished_at: float | None = None
    ever_partial: bool = False
    first_start: float | None = None
    remaining_s: float | None = None  # after an interruption: what is left to run
    finish_at: float | None = None
    expected_end: float | None = None  # what the operator expects (its run-time estimate)
    demand: JobDemand | None = None  # the planner's view, rebuilt only after a change


class _SimulatedPool:
    """The simulated pool as the plan executor sees it: nodes added, cordoned, removed by name."""

    def __init__(self, sim: _Simulation) -> None:
        self.sim = sim

    def add_nodes(self, count: int, now: float) -> list[str]:
        return [self.sim.add_node(now).name for _ in range(count)]

    def cordon(self, name: str) -> None:
        self.sim.cordon(self.sim.by_name[name])

    def remove(self, name: str) -> None:
        self.sim.remove(self.sim.by_name[name])


class _Simulation:
    def __init__(
        self, trace: Sequence[TraceJob], policy: PolicySpec, settings: ClusterSettings
    ) -> None:
        self.policy = policy
        settings = policy.settings or settings
        self.settings = settings
        self.pool_policy = settings.pool_policy()
        self.boot_times = BootTimes()
        self.last_scale_up = -math.inf
        self.least_allocated = policy.scoring is Scoring.LEAST_ALLOCATED
        # Empty nodes held by the per-pod autoscaler's placeholder pods (overprovisioning).
        self.placeholders = (
            settings.headroom_nodes if policy.autoscaler is Autoscaler.PER_POD else 0
        )
        self.gpus = settings.gpus_per_node
        self.jobs = [_Job(j, [None] * len(j.pods)) for j in trace]
        self.nodes: dict[int, _Node] = {}
        self.by_name: dict[str, _Node] = {}
        # GPU-ready, uncordoned nodes by free GPUs; dicts keep insertion order: deterministic.
        self.by_free: list[dict[int, _Node]] = [{} for _ in range(self.gpus + 1)]
        self.empty: dict[int, _Node] = {}  # GPU-ready nodes with no pod
        self.free_total = 0
        self.next_index = 0
        self.pending: dict[int, _Job] = {}  # created, not started; in arrival order
        self.new_pending: list[_Job] = []
        self.capacity_grew = False
        self.events: list[tuple[float, int, int, int]] = []
        self.seq = 0
        # Integrals over time and the levels they integrate.
        self.clock = 0.0
        self.node_s = self.ready_node_s = 0.0
        self.ready_gpu_s = self.running_gpu_s = self.held_gpu_s = self.empty_gpu_s = 0.0
        self.empty_kind_s = dict.fromkeys(EMPTY_KINDS, 0.0)
        self.node_count = self.ready_nodes = 0
        self.ready_gpus = self.running_gpus = self.held_gpus = 0
        self.peak_nodes = self.nodes_added = self.nodes_removed = 0
        self.decision_seconds: list[float] = []
        self.decision_cpu_seconds: list[float] = []
        self.decisions: dict[str, int] = {}
        self.last_progress = 0.0
        self.stopped_at_horizon = False
        self.deadlocked_at: float | None = None
        self.idle_gpu_s_at_deadlock = 0.0
        self.rng = random.Random(settings.seed)  # pod order of ``per_pod_any_order``
        self.nodes_failed = self.jobs_interrupted = 0
        self.redone_gpu_s = 0.0
        self.changes = _SimulatedPool(self)

    # -- events and accounting ---------------------------------------------------------------

    def push(self, at: float, kind: int, ref: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, ref))

    def advance(self, now: float) -> None:
        span = now - self.clock
        if span > 0:
            self.node_s += self.node_count * span
            self.ready_node_s += self.ready_nodes * span
            self.ready_gpu_s += self.ready_gpus * span
            self.running_gpu_s += self.running_gpus * span
            self.held_gpu_s += self.held_gpus * span
            self.empty_gpu_s += len(self.empty) * self.gpus * span
            self.clock = now

    # -- nodes -------------------------------------------------------------------------------

    def add_node(self, now: float, ready: bool = False) -> _Node:
        index = self.next_index
        self.next_index += 1
        node = _Node(index, f"gpu-{index:05d}", now, self.gpus)
        self.nodes[index] = node
        self.by_name[node.name] = node
        self.node_count += 1
        self.nodes_added += 1
        self.peak_nodes = max(self.peak_nodes, self.node_count)
        if ready:
            self.node_ready(node, now)
        else:
            self.push(now + self.settings.provision_delay(index), _READY, index)
        return node

    def node_ready(self, node: _Node, now: float) -> None:
        node.ready = True
        node.free = node.gpus
        node.idle_since = now
        node.view = None
        self.ready_gpus += node.gpus
        self.ready_nodes += 1
        self.empty[node.index] = node
        self.index_free(node)
        self.capacity_grew = True
        life = self.settings.lifetime(node.index)
        if math.isfinite(life):
            self.push(now + life, _FAIL, node.index)

    def index_free(self, node: _Node) -> None:
        self.by_free[node.free][node.index] = node
        self.free_total += node.free

    def unindex_free(self, node: _Node) -> None:
        del self.by_free[node.free][node.index]
        self.free_total -= node.free

    def cordon(self, node: _Node) -> None:
        if not node.ready or node.cordoned:
            raise SimulationError(f"cordon of {node.name}: not GPU-ready or cordoned already")
        self.unindex_free(node)
        node.cordoned = True
        node.view = None

    def remove(self, node: _Node) -> None:
        if node.pods:
            raise SimulationError(f"removal of {node.name}, which has {node.pods} pod(s) bound")
        self.drop(node)
        self.nodes_removed += 1

    def drop(self, node: _Node) -> None:
        """Take ``node`` out of the cluster and out of every index it is in."""
        if node.ready:
            if not node.cordoned:
                self.unindex_free(node)
            self.ready_gpus -= node.gpus
            self.ready_nodes -= 1
            self.end_empty(node, used=False)
        del self.nodes[node.index]
        del self.by_name[node.name]
        self.node_count -= 1

    # -- binding -----------------------------------------------------------------------------

    def best_fit(self, gpus: int) -> _Node | None:
        """The node the scheduler picks for a pod of ``gpus``: fullest or emptiest that holds it.

        Under the per-pod autoscaler with spare nodes, up to that many empty nodes hold a
        placeholder pod: the scheduler puts a pod there only when no other node holds it (it
        preempts the placeholder), so ``LeastAllocated`` does not spread pods onto them.
        """
        rooms = (
            range(self.gpus, gpus - 1, -1) if self.least_allocated else range(gpus, self.gpus + 1)
        )
        whole = self.by_free[self.gpus]
        held = bool(whole) and len(whole) <= self.placeholders
        for room in rooms:
            bucket = self.by_free[room]
            if bucket and not (held and room == self.gpus):
                return next(iter(bucket.values()))
        return next(iter(whole.values())) if held else None

    def take(self, node: _Node, gpus: int) -> None:
        self.unindex_free(node)
        node.free -= gpus
        self.index_free(node)

    def end_empty(self, node: _Node, used: bool) -> None:
        """Book the empty stretch of ``node`` that ends now (by a pod bound or its removal)."""
        if self.empty.pop(node.index, None) is None or node.idle_since is None:
            return
        kind = ("kept" if node.served else "fresh") + ("_then_used" if used else "_then_removed")
        self.empty_kind_s[kind] += (self.clock - node.idle_since) * node.gpus

    def bind(self, job: _Job, pod: int, node: _Node) -> None:
        job.bound[pod] = node
        job.demand = None
        self.end_empty(node, used=True)
        node.pods += 1
        node.jobs[job.trace.index] = node.jobs.get(job.trace.index, 0) + 1
        node.served = True
        node.idle_since = None
        node.view = None

    def try_gang(self, job: _Job) -> bool:
        pods = job.trace.pods
        if sum(pods) > self.free_total:
            return False
        chosen: list[tuple[int, _Node]] = []
        for pod in sorted(range(len(pods)), key=lambda i: -pods[i]):
            node = self.best_fit(pods[pod])
            if node is None:
                for earlier, used in chosen:  # give back what this gang took
                    self.unindex_free(used)
                    used.free += pods[earlier]
                    self.index_free(used)
                return False
            self.take(node, pods[pod])
            chosen.append((pod, node))
        for pod, node in chosen:
            self.bind(job, pod, node)
        return True

    def try_pods(self, job: _Job) -> bool:
        pods = job.trace.pods
        for pod, gpus in enumerate(pods):
            if job.bound[pod] is not None:
                continue
            node = self.best_fit(gpus)
            if node is None:
                continue
            self.take(node, gpus)
            self.bind(job, pod, node)
            self.held_gpus += gpus
        if all(n is not None for n in job.bound):
            self.held_gpus -= job.trace.gpus
            return True
        if any(n is not None for n in job.bound):
            job.ever_partial = True
        return False

    def start(self, job: _Job, now: float) -> None:
        job.started_at = now
        if job.first_start is None:
            job.first_start = now
        self.last_progress = now
        del self.pending[job.trace.index]
        self.running_gpus += job.trace.gpus
        left = job.trace.duration_s if job.remaining_s is None else job.remaining_s
        job.finish_at = now + left
        declared = job.trace.declared_s
        if declared is not None or self.settings.run_times_known:
            # A job's own declaration counts from each start, as the operator reads the pods'
            # annotation with their startTime (a restarted pod declares the same run time).
            job.expected_end = now + (
                declared
                if declared is not None
                else left * self.settings.run_time_estimate(job.trace.index)
            )
            for node in job.bound:
                if node is not None:
                    node.view = None
        self.push(job.finish_at, _FINISH, job.trace.index)

    def unbind(self, job: _Job, pod: int, now: float, failed: _Node) -> None:
        node = job.bound[pod]
        assert node is not None
        job.bound[pod] = None
        job.demand = None
        if node is failed:
            return
        self.release(node, job, job.trace.pods[pod], now)

    def release(self, node: _Node, job: _Job, gpus: int, now: float) -> None:
        """One pod of ``gpus`` GPUs of ``job`` leaves ``node``; an emptied node starts its idle."""
        left = node.jobs.pop(job.trace.index) - 1
        if left:
            node.jobs[job.trace.index] = left
        if not node.cordoned:
            self.unindex_free(node)
        node.free += gpus
        node.pods -= 1
        node.view = None
        if not node.cordoned:
            self.index_free(node)
        if node.pods == 0:
            node.idle_since = now
            self.empty[node.index] = node

    def fail(self, node: _Node, now: float) -> None:
        """The node is lost with its pods: a running job on it is interrupted.

        Under Kubeforge the whole gang restarts (all its pods go back to pending, on a full set
        of nodes); under the per-pod autoscaler only the lost pods are replaced while the
        others stay bound, holding their GPUs until the job runs again.
        """
        if self.nodes.get(node.index) is not node:
            return
        whole_gang = self.policy.autoscaler is Autoscaler.KUBEFORGE
        interval = self.settings.checkpoint_interval_s
        for job in [j for j in self.jobs if j.finished_at is None and node in j.bound]:
            on_node = [i for i, n in enumerate(job.bound) if n is node]
            if job.started_at is not None:
                elapsed = now - job.started_at
                saved = math.floor(elapsed / interval) * interval if interval > 0 else 0.0
                self.redone_gpu_s += job.trace.gpus * (elapsed - saved)
                left = job.trace.duration_s if job.remaining_s is None else job.remaining_s
                job.remaining_s = left - saved
                job.started_at = job.finish_at = None
                self.running_gpus -= job.trace.gpus
                self.jobs_interrupted += 1
                self.pending[job.trace.index] = job
                self.pending = dict(sorted(self.pending.items()))
                self.new_pending.append(job)
                pods = range(len(job.bound)) if whole_gang else on_node
                for pod in pods:
                    self.unbind(job, pod, now, node)
                self.held_gpus += sum(
                    g for g, n in zip(job.trace.pods, job.bound, strict=True) if n is not None
                )
            else:  # pods of a job not started yet (per-pod binding)
                for pod in on_node:
                    self.held_gpus -= job.trace.pods[pod]
                    self.unbind(job, pod, now, node)
        node.pods = 0
        self.drop(node)
        self.nodes_failed += 1
        self.capacity_grew = True

    def finish(self, job: _Job, now: float) -> None:
        job.finished_at = now
        self.last_progress = now
        self.running_gpus -= job.trace.gpus
        for pod, node in enumerate(job.bound):
            if node is None:
                raise SimulationError(f"{job.trace.name} ran without all its pods bound")
            self.release(node, job, job.trace.pods[pod], now)
        self.capacity_grew = True

    def hold(self, job: _Job) -> list[tuple[_Node, int]]:
        """Keep the free GPUs a waiting gang would use from younger jobs in this pass."""
        held: list[tuple[_Node, int]] = []
        for gpus in sorted(job.trace.pods, reverse=True):
            node = self.best_fit(gpus)
            if node is None:
                break
            self.take(node, gpus)
            held.append((node, gpus))
        return held

    def schedule_pods_any_order(self, now: float) -> None:
        """Bind every pending pod that fits, pods of all jobs shuffled together."""
        jobs = list(self.pending.values()) if self.capacity_grew else self.new_pending
        self.capacity_grew = False
        self.new_pending = []
        pods = [(job, pod) for job in jobs for pod, node in enumerate(job.bound) if node is None]
        self.rng.shuffle(pods)
        touched: dict[int, _Job] = {}
        for job, pod in pods:
            if self.free_total == 0:
                break
            gpus = job.trace.pods[pod]
            node = self.best_fit(gpus)
            if node is None:
                continue
            self.take(node, gpus)
            self.bind(job, pod, node)
            self.held_gpus += gpus
            touched[job.trace.index] = job
        for index in sorted(touched):
            job = touched[index]
            if all(n is not None for n in job.bound):
                self.held_gpus -= job.trace.gpus
                self.start(job, now)
            else:
                job.ever_partial = True

    def schedule(self, now: float) -> None:
        if self.policy.binding is Binding.PER_POD_ANY_ORDER:
            self.schedule_pods_any_order(now)
            return
        reserve = self.policy.binding is Binding.GANG_RESERVE
        if reserve:
            candidates = list(self.pending.values())
        else:
            candidates = list(self.pending.values()) if self.capacity_grew else self.new_pending
        self.capacity_grew = False
        self.new_pending = []
        gang = self.policy.binding in (Binding.GANG, Binding.GANG_RESERVE)
        held: list[tuple[_Node, int]] = []
        for job in candidates:
            if self.free_total == 0:
                break
            if job.started_at is None and (self.try_gang(job) if gang else self.try_pods(job)):
                self.start(job, now)
            elif reserve:
                held += self.hold(job)
        for node, gpus in held:
            self.unindex_free(node)
            node.free += gpus
            self.index_free(node)

    # -- autoscalers -------------------------------------------------------------------------

    def node_view(self, node: _Node) -> NodeState:
        if node.view is None:
            node.view = NodeState(
                name=node.name,
                created_at=node.requested_at,
                gpu_ready=node.ready,
                allocatable_gpus=node.gpus if node.ready else 0,
                allocated_gpus=node.gpus - node.free if node.ready else 0,
                busy=node.pods > 0,
                idle_since=node.idle_since if node.pods == 0 else None,
                cordoned=node.cordoned,
                expected_free_at=self.expected_free_at(node),
            )
        return node.view

    def expected_free_at(self, node: _Node) -> float | None:
        """When the operator expects every pod on ``node`` to end; None if it cannot tell.

        It cannot when any job on the node declares no run time (nor ``run_times_known``).
        """
        if not node.jobs:
            return None
        ends = [self.jobs[index].expected_end for index in node.jobs]
        if any(end is None for end in ends):
            return None
        return max(end for end in ends if end is not None)

    def job_view(self, job: _Job) -> JobDemand:
        if job.demand is None:
            job.demand = JobDemand(
                "sim",
                job.trace.name,
                job.trace.created_at,
                tuple(g for g, n in zip(job.trace.pods, job.bound, strict=True) if n is None),
            )
        return job.demand

    def kubeforge_tick(self, now: float) -> None:
        snapshot = Snapshot(
            tuple(self.node_view(n) for n in self.nodes.values()),
            tuple(self.job_view(j) for j in self.pending.values()),
        )
        policy = self.pool_policy
        if self.settings.learn_boot_time:
            self.boot_times.observe(snapshot.nodes, now)
            policy = replace(policy, break_even_s=self.boot_times.estimate_s)
        started, cpu = time.perf_counter(), time.thread_time()
        decision = plan(snapshot, policy, now)
        self.decision_seconds.append(time.perf_counter() - started)
        self.decision_cpu_seconds.append(time.thread_time() - cpu)
        self.decisions[decision.decision.value] = self.decisions.get(decision.decision.value, 0) + 1
        apply_plan(decision, self.changes, now)

    def per_pod_tick(self, now: float) -> None:
        """Add nodes for pending pods that fit nowhere, else remove old, long-idle empty nodes.

        Pending pods are packed (best-fit decreasing, oldest job first) onto free GPUs of ready
        nodes and onto nodes still booting (counted as empty), as Cluster Autoscaler's
        estimator does; a pod that fits nowhere opens a new node.
        """
        settings = self.settings
        in_flight = sum(1 for n in self.nodes.values() if not n.ready)
        counts = [len(bucket) for bucket in self.by_free]
        counts[self.gpus] += in_flight
        needed = 0
        for job in self.pending.values():
            unbound = [g for g, n in zip(job.trace.pods, job.bound, strict=True) if n is None]
            for gpus in sorted(unbound, reverse=True):
                if gpus > self.gpus:
                    continue
                room = next((r for r in range(gpus, self.gpus + 1) if counts[r]), None)
                if room is None:
                    needed += 1
                    counts[self.gpus - gpus] += 1
                else:
                    counts[room] -= 1
                    counts[room - gpus] += 1
        needed += max(0, settings.headroom_nodes - counts[self.gpus])
        add = min(
            needed,
            settings.max_nodes - self.node_count,
            settings.max_in_flight - in_flight,
        )
        if self.node_count + max(add, 0) < settings.min_nodes:
            add = settings.min_nodes - self.node_count
        if add > 0:
            self.decisions["scale_up"] = self.decisions.get("scale_up", 0) + 1
            self.last_scale_up = now
            for _ in range(add):
                self.add_node(now)
            return
        if now - self.last_scale_up < settings.scale_down_delay_after_add_s:
            return
        room_to_remove = self.node_count - settings.min_nodes
        removable = [
            n
            for n in self.empty.values()
            if now - n.requested_at >= settings.min_node_age_s
            and n.idle_since is not None
            and now - n.idle_since >= settings.idle_after_s
        ][: max(min(room_to_remove, counts[self.gpus] - settings.headroom_nodes), 0)]
        if removable:
            self.decisions["scale_down"] = self.decisions.get("scale_down", 0) + 1
        for node in removable:
            self.remove(node)

    # -- the run -----------------------------------------------------------------------------

    def done(self) -> bool:
        if any(j.finished_at is None for j in self.jobs):
            return False
        if self.policy.autoscaler is Autoscaler.STATIC:
            return True
        floor = self.settings.min_nodes + self.settings.headroom_nodes
        return self.node_count <= floor and all(n.ready for n in self.nodes.values())

    def run(self) -> PolicyResult:
        if self.policy.autoscaler is Autoscaler.STATIC:
            for _ in range(self.policy.static_nodes):
                self.add_node(0.0, ready=True)
        else:
            self.push(0.0, _TICK, 0)
        for job in self.jobs:
            self.push(job.trace.created_at, _ARRIVE, job.trace.index)
        last_arrival = max((j.trace.created_at for j in self.jobs), default=0.0)
        stop = last_arrival + self.settings.horizon_s
        finished = 0
        while self.events and self.events[0][0] <= stop:
            now = self.events[0][0]
            self.advance(now)
            tick = False
            while self.events and self.events[0][0] == now:
                _, kind, _, ref = heapq.heappop(self.events)
                if kind == _TICK:
                    tick = True
                elif kind == _ARRIVE:
                    job = self.jobs[ref]
                    self.pending[ref] = job
                    self.new_pending.append(job)
                elif kind == _READY:
                    if ref in self.nodes:
                        self.node_ready(self.nodes[ref], now)
                elif kind == _FAIL:
                    if ref in self.nodes:
                        self.fail(self.nodes[ref], now)
                elif self.jobs[ref].finish_at == now:  # else the run was interrupted
                    self.finish(self.jobs[ref], now)
                    finished += 1
            self.schedule(now)
            if tick:
                if self.policy.autoscaler is Autoscaler.KUBEFORGE:
                    self.kubeforge_tick(now)
                else:
                    self.per_pod_tick(now)
            if finished == len(self.jobs) and self.done():
                break
            if tick and not self.events and self.deadlocked(finished):
                self.deadlocked_at = now
                self.idle_gpu_s_at_deadlock = self.ready_gpu_s - self.running_gpu_s
                break
            if tick:
                self.push(now + self.settings.reconcile_interval_s, _TICK, 0)
        if finished < len(self.jobs):
            # Cut at the horizon: integrate up to it, as if the pool had been paid until then.
            self.stopped_at_horizon = True
            self.advance(stop)
        return self.result()

    def deadlocked(self, finished: int) -> bool:
        """Nothing can ever change: no event left, jobs pending, none running, pool full."""
        return (
            finished < len(self.jobs)
            and bool(self.pending)
            and self.running_gpus == 0
            and not self.empty
            and self.node_count >= self.settings.max_nodes
            and all(n.ready for n in self.nodes.values())
        )

    def result(self) -> PolicyResult:
        for node in self.empty.values():
            if node.idle_since is not None:
                self.empty_kind_s["at_end"] += (self.clock - node.idle_since) * node.gpus
        started = [j for j in self.jobs if j.first_start is not None]
        partial = [
            j
            for j in self.jobs
            if j.started_at is None
            and j.finished_at is None
            and any(n is not None for n in j.bound)
        ]
        return PolicyResult(
            policy=self.policy.name,
            autoscaler=self.policy.autoscaler.value,
            binding=self.policy.binding.value,
            jobs=len(self.jobs),
            jobs_started=len(started),
            jobs_finished=sum(1 for j in self.jobs if j.finished_at is not None),
            jobs_ever_partially_placed=sum(1 for j in self.jobs if j.ever_partial),
            waits_s=tuple((j.first_start or 0.0) - j.trace.created_at for j in started),
            idle_gpu_hours=(self.ready_gpu_s - self.running_gpu_s) / 3600.0,
            partial_held_gpu_hours=self.held_gpu_s / 3600.0,
            busy_gpu_hours=self.running_gpu_s / 3600.0,
            ready_gpu_hours=self.ready_gpu_s / 3600.0,
            node_hours=self.node_s / 3600.0,
            ready_node_hours=self.ready_node_s / 3600.0,
            empty_gpu_hours=self.empty_gpu_s / 3600.0,
            peak_nodes=self.peak_nodes,
            nodes_added=self.nodes_added,
            nodes_removed=self.nodes_removed,
            end_s=self.clock,
            decision_seconds=tuple(self.decision_seconds),
            decision_cpu_seconds=tuple(self.decision_cpu_seconds),
            decisions=dict(self.decisions),
            stopped_at_horizon=self.stopped_at_horizon,
            deadlocked_at_s=self.deadlocked_at,
            idle_gpu_hours_before_deadlock=self.idle_gpu_s_at_deadlock / 3600.0,
            unstarted_waited_s=tuple(
                self.clock - j.trace.created_at for j in self.jobs if j.first_start is None
            ),
            jobs_running_at_end=sum(
                1 for j in self.jobs if j.started_at is not None and j.finished_at is None
            ),
            partial_jobs_at_end=len(partial),
            held_gpus_at_end=sum(
                g
                for j in partial
                for g, n in zip(j.trace.pods, j.bound, strict=True)
                if n is not None
            ),
            last_progress_s=self.last_progress,
            nodes_failed=self.nodes_failed,
            jobs_interrupted=self.jobs_interrupted,
            redone_gpu_hours=self.redone_gpu_s / 3600.0,
            empty_breakdown_gpu_hours={k: v / 3600.0 for k, v in self.empty_kind_s.items()},
        )


def simulate(
    trace: Sequence[TraceJob], policy: PolicySpec, settings: ClusterSettings
) -> PolicyResult:
    """Replay ``trace`` under ``policy`` on the pool ``settings`` describes."""
    return _Simulation(trace, policy, settings).run()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100.0 * len(ranked)) - 1)]


def boot_hours(settings: ClusterSettings, nodes: int) -> float:
    """Hours the first ``nodes`` nodes of a run take to boot (their seeded delays)."""
    return sum(settings.provision_delay(i) for i in range(nodes)) / 3600.0


def lower_bound_node_hours(
    busy_gpu_hours: float, nodes_added: int, settings: ClusterSettings
) -> float:
    """Clairvoyant lower bound of the node-hours any autoscaler pays for a trace.

    Every busy GPU-hour sits on a node (``busy / GPUs per node`` node-hours even with perfect
    packing and no idle time), and each of the ``nodes_added`` nodes the trace must add pays its
    boot time before it can serve.
    """
    return busy_gpu_hours / settings.gpus_per_node + boot_hours(settings, nodes_added)
