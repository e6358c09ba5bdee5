"""The pure GPU pool planner: whole-job (gang) demand in, one node-count decision out.

No Kubernetes calls, no clock, no randomness: the caller passes a :class:`Snapshot` of the
cluster and ``now``; :func:`plan` returns a :class:`PoolPlan` an executor applies.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kubeforge.operators.gpupool.api.models import Placement


class Decision(enum.StrEnum):
    """What the executor should do to the pool."""

    NOOP = "noop"
    SCALE_UP = "scale_up"
    DRAIN = "drain"
    SCALE_DOWN = "scale_down"


class ScaleDownPolicy(enum.StrEnum):
    """How long an empty node is kept (``spec.scaleDown.policy``)."""

    IDLE_AFTER = "IdleAfter"  # every empty node waits out idleAfter; none while a gang waits
    QUEUE_AWARE = "QueueAware"  # kept only for a queued gang, or up to the break-even time


@dataclass(frozen=True)
class PoolPolicy:
    """The parts of a GPUNodePool spec the planner reads (defaults: the spec's, in api/).

    Attributes:
        break_even_s: The pool's observed boot time (:class:`BootTimes`); None before any
            boot was seen. Under ``QUEUE_AWARE`` an empty node no queued gang uses is kept this
            long (about what re-adding one costs: ski rental), never more than
            ``idle_after_s`` (None: ``idle_after_s``). It is also how far ahead the planner
            looks for busy nodes expected to free (:attr:`NodeState.expected_free_at`): a gang
            they serve before a new node could boot waits for them instead of adding nodes.
        freeing_stands_in: Under ``QUEUE_AWARE``, an empty node no queued gang uses goes at
            once, without waiting out ``keep_empty_s``, while a busy node expected to free
            within the boot time (and claimed by no queued gang) can serve a new gang as soon.
        headroom_nodes: Whole free nodes (GPU-ready and empty, or in flight) the pool keeps
            beyond what the queued gangs use, so a new gang of up to that many nodes starts
            without waiting for a boot (``spec.scaleUp.headroomNodes``; 0: none). Capped by
            ``max_nodes``.
    """

    gpus_per_node: int
    min_nodes: int
    max_nodes: int
    max_in_flight: int
    idle_after_s: float
    min_node_age_s: float
    scale_down: ScaleDownPolicy = ScaleDownPolicy.IDLE_AFTER
    break_even_s: float | None = None
    freeing_stands_in: bool = True
    headroom_nodes: int = 0

    @property
    def keep_empty_s(self) -> float:
        """How long an empty node that no queued gang uses is kept before it goes."""
        if self.scale_down is ScaleDownPolicy.IDLE_AFTER or self.break_even_s is None:
            return self.idle_after_s
        return min(self.idle_after_s, self.break_even_s)


class BootTimes:
    """The pool's observed boot times (request to GPUs advertised), learnt reconcile by reconcile.

    Pure bookkeeping of what the caller saw: a node first seen not GPU-ready and later GPU-ready
    booted in (the first time it was seen ready) - (its request time). The estimate is the median
    of the last ``window`` boots, so one slow node does not move it much.
    """

    def __init__(self, window: int = 50) -> None:
        self.window = window
        self.booting: set[str] = set()
        self.seen: list[float] = []

    def observe(self, nodes: tuple[NodeState, ...], now: float) -> None:
        """Record the boots completed since the last call."""
        still: set[str] = set()
        for node in nodes:
            if not node.gpu_ready:
                still.add(node.name)
            elif node.name in self.booting:
                self.seen.append(max(0.0, now - node.created_at))
        self.booting = still
        del self.seen[: -self.window]

    @property
    def estimate_s(self) -> float | None:
        """Median observed boot time; None before any boot was seen."""
        if not self.seen:
            return None
        ranked = sorted(self.seen)
        return ranked[len(ranked) // 2]


@dataclass(frozen=True)
class NodeState:
    """One node of the pool as the planner sees it.

    Attributes:
        name: Node (or machine) name.
        created_at: When the node was requested, in seconds on the caller's clock.
        gpu_ready: Its allocatable GPUs have appeared (only then can pods bind).
        allocatable_gpus: GPUs the node advertises (0 while registering).
        allocated_gpus: GPUs requested by pods bound to it.
        busy: A pod of a non-terminal job runs on it.
        idle_since: Since when no such pod runs on it (None when busy).
        cordoned: Unschedulable (draining).
        expected_free_at: When every pod on it is expected to end, from the run times its jobs
            declare; None when any of them declares none (the planner then cannot tell).
    """

    name: str
    created_at: float
    gpu_ready: bool
    allocatable_gpus: int = 0
    allocated_gpus: int = 0
    busy: bool = False
    idle_since: float | None = None
    cordoned: bool = False
    expected_free_at: float | None = None


@dataclass(frozen=True)
class JobDemand:
    """A training job's GPU demand: the GPUs of each replica pod not yet bound to a node."""

    namespace: str
    name: str
    created_at: float
    unbound_pod_gpus: tuple[int, ...]
    priority: int = 0

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def gpus(self) -> int:
        """Pending GPUs of the whole job."""
        return sum(self.unbound_pod_gpus)


@dataclass(frozen=True)
class Snapshot:
    """The pool's nodes and the pending jobs it serves."""

    nodes: tuple[NodeState, ...]
    jobs: tuple[JobDemand, ...]


@dataclass(frozen=True)
class JobVerdict:
    """What the plan means for one job, with the reason a user reads."""

    job: str
    gpus: int
    placement: Placement
    reason: str


@dataclass(frozen=True)
class PoolPlan:
    """The planner's decision: plain data, applied by an executor."""

    decision: Decision
    desired_nodes: int
    reasons: tuple[str, ...]
    jobs: tuple[JobVerdict, ...] = ()
    nodes_to_drain: tuple[str, ...] = ()
    nodes_to_remove: tuple[str, ...] = ()
    add_nodes: int = 0


class _FreeGpus:
    """Free GPUs of a set of nodes, kept as a count of nodes per free amount.

    Placement is best-fit decreasing: each pod (largest first) goes to a node with the fewest
    free GPUs that still hold it. Counting nodes by free amount instead of listing them keeps one
    placement at O(pods x GPUs per node), whatever the number of nodes.
    """

    def __init__(self, free: list[int], fresh: int) -> None:
        self.fresh = fresh  # GPUs of a node that does not exist yet
        self.counts = [0] * (max([fresh, *free]) + 1)
        for room in free:
            if room > 0:
                self.counts[room] += 1

    def _take(self, counts: list[int], gpus: int) -> bool:
        for room in range(gpus, len(counts)):
            if counts[room]:
                counts[room] -= 1
                counts[room - gpus] += 1
                return True
        return False

    def place(self, pods: tuple[int, ...]) -> bool:
        """Place the whole gang and keep it placed; False (nothing placed) when it does not fit."""
        counts = list(self.counts)
        for gpus in sorted(pods, reverse=True):
            if not self._take(counts, gpus):
                return False
        self.counts = counts
        return True

    def nodes_to_add(self, pods: tuple[int, ...]) -> tuple[int, list[int]]:
        """Fresh nodes the gang needs on top of the free GPUs, and the counts once it is placed.

        A fresh node is opened only for a pod no existing node holds; when no node has more
        GPUs than a fresh one, that is the fewest fresh nodes best-fit decreasing needs.
        """
        counts = list(self.counts)
        extra = 0
        for gpus in sorted(pods, reverse=True):
            if not self._take(counts, gpus):
                extra += 1
                counts[self.fresh - gpus] += 1
        return extra, counts

    def place_or_open(self, pods: tuple[int, ...]) -> None:
        """Place the gang, opening fresh nodes for what does not fit (to see what it would use)."""
        if not self.place(pods):
            self.counts = self.nodes_to_add(pods)[1]


def plan(snapshot: Snapshot, policy: PoolPolicy, now: float) -> PoolPlan:
    """Decide the pool's node count for the pending gangs, or which idle node to remove.

    1. Jobs are packed whole (best-fit decreasing), by priority then age, onto the free GPUs of
       GPU-ready nodes and of nodes still coming (counted as full), so nodes in flight are never
       requested twice.
    2. A job that does not fit gets fresh nodes, unless that would pass ``max_nodes``: then it
       is :attr:`Placement.CAPACITY_UNAVAILABLE` and causes no scale-up at all.
    3. With nothing to add, idle nodes (no pod of a running job, older than ``min_node_age_s``,
       idle longer than ``idle_after_s``, above ``min_nodes``) are cordoned, then removed.
       Under :attr:`ScaleDownPolicy.QUEUE_AWARE` an empty node is kept only while a queued gang
       (one that fits, waits for nodes in flight, or waits for capacity) would use it, or for
       :attr:`PoolPolicy.keep_empty_s`; past that it is cordoned and removed in the same plan.
    """
    per_node = policy.gpus_per_node
    active = [n for n in snapshot.nodes if not n.cordoned]
    in_flight = [n for n in active if not n.gpu_ready]
    bins = _FreeGpus(
        [n.allocatable_gpus - n.allocated_gpus for n in active if n.gpu_ready]
        + [per_node] * len(in_flight),
        per_node,
    )
    total = len(snapshot.nodes)
    verdicts: list[JobVerdict] = []
    reasons: list[str] = []
    add = 0
    order = sorted(snapshot.jobs, key=lambda j: (-j.priority, j.created_at, j.key))
    freeing = _freeing_nodes(active, policy, now)
    for job in order:
        if not job.unbound_pod_gpus:
            continue
        too_big = [g for g in job.unbound_pod_gpus if g > per_node]
        if too_big:
            verdicts.append(
                JobVerdict(
                    job.key,
                    job.gpus,
                    Placement.UNSCHEDULABLE,
                    f"a pod asks for {max(too_big)} GPUs but the pool's nodes have {per_node}",
                )
            )
            continue
        if bins.place(job.unbound_pod_gpus):
            state = Placement.FITS if not in_flight and add == 0 else Placement.WAITING
            verdicts.append(
                JobVerdict(job.key, job.gpus, state, "fits on ready or in-flight nodes")
            )
            continue
        # How many fresh nodes make the whole gang fit, given what is free already?
        extra, placed = bins.nodes_to_add(job.unbound_pod_gpus)
        if extra <= freeing:
            # Busy nodes expected to free before a new node could boot serve it sooner.
            freeing -= extra
            bins.counts = placed
            verdicts.append(
                JobVerdict(
                    job.key,
                    job.gpus,
                    Placement.WAITING,
                    f"waits for {extra} node(s) whose jobs are expected to end within the "
                    f"observed boot time ({policy.break_even_s:.0f}s): sooner than new nodes",
                )
            )
            continue
        if total + add + extra > policy.max_nodes:
            verdicts.append(
                JobVerdict(
                    job.key,
                    job.gpus,
                    Placement.CAPACITY_UNAVAILABLE,
                    f"needs {extra} more node(s) of {per_node} GPUs; the pool would have "
                    f"{total + add + extra} nodes, above maxNodes {policy.max_nodes}",
                )
            )
            continue
        bins.counts = placed
        add += extra
        verdicts.append(
            JobVerdict(
                job.key, job.gpus, Placement.NEEDS_NODES, f"whole job needs {extra} new node(s)"
            )
        )
    short = policy.headroom_nodes - bins.counts[per_node]
    if short > 0 and total + add < policy.max_nodes:
        grow = min(short, policy.max_nodes - total - add)
        reasons.append(f"{grow} node(s) for the headroom of {policy.headroom_nodes} free node(s)")
        add += grow
    if total + add < policy.min_nodes:
        reasons.append(f"pool below minNodes {policy.min_nodes}")
        add = policy.min_nodes - total
    if add:
        allowed = max(0, policy.max_in_flight - len(in_flight))
        if allowed < add:
            reasons.append(
                f"{add} node(s) needed but maxInFlight {policy.max_in_flight} allows {allowed} now"
            )
            add = allowed
    if add:
        needing = [v for v in verdicts if v.placement is Placement.NEEDS_NODES]
        reasons.append(
            f"scale up by {add}"
            + (": " + "; ".join(f"{v.job} ({v.gpus} GPUs)" for v in needing) if needing else "")
        )
        return PoolPlan(
            Decision.SCALE_UP, total + add, tuple(reasons), tuple(verdicts), add_nodes=add
        )

    if policy.scale_down is ScaleDownPolicy.QUEUE_AWARE:
        return _queue_aware_scale_down(
            snapshot, policy, now, bins, order, verdicts, reasons, freeing
        )
    # Nothing to add: look for idle nodes to give back, never below minNodes.
    reserved = bool(in_flight) or any(v.placement is Placement.WAITING for v in verdicts)
    removable = [
        n
        for n in snapshot.nodes
        if n.gpu_ready
        and not n.busy
        and n.allocated_gpus == 0
        and now - n.created_at >= policy.min_node_age_s
        and n.idle_since is not None
        and now - n.idle_since >= policy.idle_after_s
    ]
    room = total - policy.min_nodes
    cordoned = sorted((n for n in removable if n.cordoned), key=lambda n: n.name)[: max(room, 0)]
    if cordoned:
        names = tuple(n.name for n in cordoned)
        reasons.append(f"remove cordoned idle node(s) {', '.join(names)}")
        return PoolPlan(
            Decision.SCALE_DOWN,
            total - len(names),
            tuple(reasons),
            tuple(verdicts),
            nodes_to_remove=names,
        )
    pending_gpus = sum(
        v.gpus for v in verdicts if v.placement in (Placement.FITS, Placement.WAITING)
    )
    room = min(room, bins.counts[per_node] - policy.headroom_nodes)
    if not reserved and pending_gpus == 0 and room > 0:
        idle = sorted((n for n in removable if not n.cordoned), key=lambda n: n.idle_since or 0)
        drain = tuple(n.name for n in idle[:room])
        if drain:
            reasons.append(
                f"cordon node(s) {', '.join(drain)}: idle longer than {policy.idle_after_s:.0f}s"
            )
            return PoolPlan(
                Decision.DRAIN, total, tuple(reasons), tuple(verdicts), nodes_to_drain=drain
            )
    reasons.append("no change: demand fits the pool")
    return PoolPlan(Decision.NOOP, total, tuple(reasons), tuple(verdicts))


def _freeing_nodes(active: list[NodeState], policy: PoolPolicy, now: float) -> int:
    """Busy whole nodes expected to free before a node asked for now would be GPU-ready."""
    boot = policy.break_even_s
    if boot is None:
        return 0
    return sum(
        1
        for n in active
        if n.gpu_ready
        and n.allocatable_gpus >= policy.gpus_per_node
        and n.expected_free_at is not None
        and now < n.expected_free_at <= now + boot
    )


def _queue_aware_scale_down(
    snapshot: Snapshot,
    policy: PoolPolicy,
    now: float,
    bins: _FreeGpus,
    order: list[JobDemand],
    verdicts: list[JobVerdict],
    reasons: list[str],
    freeing: int,
) -> PoolPlan:
    """Give back empty nodes no queued gang would use, cordoning and removing them at once.

    ``bins`` already holds the gangs that fit or wait for nodes in flight; the gangs waiting for
    capacity are placed on what is left (opening fresh nodes where they must), so the empty
    nodes still whole afterwards are the ones nobody in the queue uses. Such a node is kept for
    :attr:`PoolPolicy.keep_empty_s` in case a new gang comes, unless one of the ``freeing``
    busy nodes (expected to free before a new node could boot, claimed by no queued gang) would
    serve that gang as soon: then it goes at once.
    """
    total = len(snapshot.nodes)
    waiting_for_capacity = {
        v.job for v in verdicts if v.placement is Placement.CAPACITY_UNAVAILABLE
    }
    per_node = policy.gpus_per_node
    active = [n for n in snapshot.nodes if not n.cordoned]
    empty = [n for n in active if n.gpu_ready and not n.busy and n.allocated_gpus == 0]
    for job in order if empty else ():
        if not bins.counts[per_node]:
            break  # every whole free node is claimed already; the rest of the queue adds none
        if job.key in waiting_for_capacity:
            bins.place_or_open(job.unbound_pod_gpus)
    whole = sum(1 for n in empty if n.allocatable_gpus >= per_node)
    whole += sum(1 for n in active if not n.gpu_ready)
    # Whole free nodes the queue uses: GPU-ready empty ones first (they serve at once), then
    # nodes in flight.
    used_whole = max(0, whole - bins.counts[per_node])
    keep = min(len(empty), used_whole)
    keep_s = policy.keep_empty_s
    old_enough = sorted(
        (
            n
            for n in empty
            if now - n.created_at >= policy.min_node_age_s and n.idle_since is not None
        ),
        key=lambda n: (n.idle_since or 0.0, n.name),
    )
    replaced = 0
    candidates = []
    for n in old_enough:
        if now - (n.idle_since or now) >= keep_s:
            candidates.append(n)
        elif policy.freeing_stands_in and replaced < freeing:
            replaced += 1  # a node freeing soon stands in for it
            candidates.append(n)
    # The queue keeps the most recently idle of the empty nodes; the longest idle go first.
    spare = min(len(empty) - keep, bins.counts[per_node] - policy.headroom_nodes)
    drain = [n.name for n in candidates[: max(0, spare)]]
    cordoned = sorted(
        n.name
        for n in snapshot.nodes
        if n.cordoned and n.gpu_ready and not n.busy and n.allocated_gpus == 0
    )
    room = max(0, total - policy.min_nodes)
    remove = (cordoned + drain)[:room]
    if remove:
        drain_now = tuple(name for name in remove if name in set(drain))
        reasons.append(
            f"remove empty node(s) {', '.join(remove)}: no queued gang uses them "
            f"(kept {keep_s:.0f}s, {keep} empty node(s) kept for the queue)"
        )
        return PoolPlan(
            Decision.SCALE_DOWN,
            total - len(remove),
            tuple(reasons),
            tuple(verdicts),
            nodes_to_drain=drain_now,
            nodes_to_remove=tuple(remove),
        )
    reasons.append("no change: demand fits the pool")
    return PoolPlan(Decision.NOOP, total, tuple(reasons), tuple(verdicts))
