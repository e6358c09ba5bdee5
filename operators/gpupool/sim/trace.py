"""Seeded job traces for the GPU pool simulator: Poisson arrivals, known durations."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class JobShape:
    """A kind of training job: ``pods`` replicas of ``gpus_per_pod`` GPUs, drawn with ``weight``."""

    pods: int
    gpus_per_pod: int
    weight: float

    @property
    def gpus(self) -> int:
        """GPUs of the whole job."""
        return self.pods * self.gpus_per_pod


# From one 1-GPU pod to 16 pods of 8 GPUs; small jobs are common, whole-node gangs less so.
DEFAULT_MIX: tuple[JobShape, ...] = (
    JobShape(1, 1, 0.18),
    JobShape(1, 2, 0.10),
    JobShape(1, 4, 0.10),
    JobShape(1, 8, 0.14),
    JobShape(2, 4, 0.06),
    JobShape(4, 4, 0.04),
    JobShape(2, 8, 0.12),
    JobShape(4, 8, 0.12),
    JobShape(8, 8, 0.09),
    JobShape(16, 8, 0.05),
)


@dataclass(frozen=True)
class TraceSpec:
    """What trace to draw.

    Attributes:
        jobs: Number of jobs.
        pool_gpus: GPUs of the largest pool the trace is meant for (``maxNodes`` x GPUs/node).
        load: Mean offered GPUs as a fraction of ``pool_gpus``; sets the arrival rate.
        swing: Relative amplitude of a sinusoidal arrival rate, ``load x (1 + swing x
            sin(2 pi t / period_s))``: 0 (the default) is a constant rate; 0.5 offers up to
            1.5 x ``load`` at the peaks and 0.5 x ``load`` in the troughs.
        period_s: Period of that sinusoid (unused when ``swing`` is 0).
        duration_s: Job run time range in seconds, drawn log-uniformly (known to the trace).
        mix: Job shapes and their weights.
        seed: Seed of the random generator: the same spec gives the same trace.
    """

    jobs: int = 2000
    pool_gpus: int = 8000
    load: float = 0.5
    duration_s: tuple[float, float] = (600.0, 14_400.0)
    mix: tuple[JobShape, ...] = DEFAULT_MIX
    seed: int = 0
    swing: float = 0.0
    period_s: float = 86_400.0

    @property
    def mean_duration_s(self) -> float:
        """Mean of the log-uniform duration."""
        low, high = self.duration_s
        return low if high <= low else (high - low) / math.log(high / low)

    @property
    def arrivals_per_hour(self) -> float:
        """Poisson arrival rate that offers ``load`` x ``pool_gpus`` GPUs on average."""
        total = sum(s.weight for s in self.mix)
        mean_gpus = sum(s.gpus * s.weight for s in self.mix) / total
        return self.load * self.pool_gpus * 3600.0 / (mean_gpus * self.mean_duration_s)

    @property
    def peak_load(self) -> float:
        """Offered load at the top of the arrival rate's sinusoid (``load`` when constant)."""
        return self.load * (1.0 + self.swing)

    def rate_factor(self, at: float) -> float:
        """Arrival rate at ``at`` seconds relative to the mean rate."""
        return 1.0 + self.swing * math.sin(2.0 * math.pi * at / self.period_s)


@dataclass(frozen=True)
class Scenario:
    """A named trace and pool size: what the benchmark replays through every policy.

    Attributes:
        name: Short name (``ample``, ``scarce``).
        title: One line saying what is scarce or not.
        trace: The trace to draw.
        max_nodes: ``maxNodes`` of the pool (its GPUs are ``max_nodes`` x GPUs per node).
    """

    name: str
    title: str
    trace: TraceSpec
    max_nodes: int


# The defaults of `TraceSpec` (2,000 jobs, 1x1 .. 16x8 GPUs, run times 10 min .. 4 h) for both.
SCENARIOS: dict[str, Scenario] = {
    "ample": Scenario(
        "ample",
        "ample capacity: constant arrival rate, 50% mean load, the pool never reaches maxNodes",
        TraceSpec(jobs=2000, pool_gpus=1000 * 8, load=0.5, seed=1),
        1000,
    ),
    "scarce": Scenario(
        "scarce",
        "scarce GPUs: arrival rate swinging 85% +/- 50% of maxNodes x 8 GPUs over 8 h, "
        "demand above the pool for hours",
        TraceSpec(jobs=2000, pool_gpus=1000 * 8, load=0.85, swing=0.5, period_s=8 * 3600.0, seed=1),
        1000,
    ),
}


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace.

    Attributes:
        index: Position in the trace (arrival order).
        created_at: Seconds from the start of the trace.
        pods: GPUs of each pod of the gang.
        duration_s: How long the job runs once all its pods are bound (the truth).
        declared_s: The run time the job declares (``kubeforge.io/expected-runtime-seconds`` on
            its pods), which the planner sees; None: declares none, as a pod without the
            annotation.
    """

    index: int
    created_at: float
    pods: tuple[int, ...]
    duration_s: float
    declared_s: float | None = None

    @property
    def name(self) -> str:
        """Job name, unique in the trace."""
        return f"job-{self.index:05d}"

    @property
    def gpus(self) -> int:
        """GPUs of the whole job."""
        return sum(self.pods)


def generate_trace(spec: TraceSpec) -> tuple[TraceJob, ...]:
    """Draw the trace: Poisson arrivals, shapes by weight, log-uniform durations.

    With ``swing`` 0 the inter-arrival times are exponential at the mean rate. Otherwise the
    arrivals are a Poisson process whose rate follows the sinusoid, drawn by thinning: candidates
    at the top rate, each kept with probability rate(t) / top rate.
    """
    if not 0.0 <= spec.swing < 1.0:
        raise ValueError(f"swing must be in [0, 1), not {spec.swing}")
    rng = random.Random(spec.seed)
    rate_per_s = spec.arrivals_per_hour / 3600.0
    top_rate_per_s = rate_per_s * (1.0 + spec.swing)
    weights = [s.weight for s in spec.mix]
    low, high = spec.duration_s
    now = 0.0
    jobs = []
    for index in range(spec.jobs):
        if index and not spec.swing:
            now += rng.expovariate(rate_per_s)
        elif index:
            now += rng.expovariate(top_rate_per_s)
            while rng.random() * (1.0 + spec.swing) > spec.rate_factor(now):
                now += rng.expovariate(top_rate_per_s)
        shape = rng.choices(spec.mix, weights)[0]
        duration = low if high <= low else math.exp(rng.uniform(math.log(low), math.log(high)))
        jobs.append(
            TraceJob(index, round(now, 3), (shape.gpus_per_pod,) * shape.pods, round(duration, 3))
        )
    return tuple(jobs)


def _zero_wait_edges(trace: tuple[TraceJob, ...]) -> list[tuple[float, int]]:
    return sorted(
        [(j.created_at, j.gpus) for j in trace]
        + [(j.created_at + j.duration_s, -j.gpus) for j in trace],
        key=lambda e: (e[0], e[1]),  # at a tie, a job ending frees its GPUs first
    )


def peak_demand_gpus(trace: tuple[TraceJob, ...]) -> int:
    """Most GPUs running at once if every job started the moment it was created."""
    running = peak = 0
    for _, delta in _zero_wait_edges(trace):
        running += delta
        peak = max(peak, running)
    return peak


@dataclass(frozen=True)
class Overload:
    """How long the zero-wait demand of a trace stays above a pool's GPUs.

    Attributes:
        capacity_gpus: The pool's GPUs (``maxNodes`` x GPUs per node).
        hours_above: Total hours during which jobs started at creation would need more GPUs.
        longest_hours_above: The longest such stretch.
        gpu_hours_above: GPU-hours of demand above the capacity (work that must queue).
    """

    capacity_gpus: int
    hours_above: float
    longest_hours_above: float
    gpu_hours_above: float


def overload(trace: tuple[TraceJob, ...], capacity_gpus: int) -> Overload:
    """When the trace's zero-wait demand exceeds ``capacity_gpus``, and by how much."""
    running = 0
    above_s = longest_s = excess_s = 0.0
    since: float | None = None
    last = 0.0
    for at, delta in _zero_wait_edges(trace):
        if running > capacity_gpus:
            excess_s += (running - capacity_gpus) * (at - last)
        last = at
        running += delta
        if running > capacity_gpus and since is None:
            since = at
        elif running <= capacity_gpus and since is not None:
            above_s += at - since
            longest_s = max(longest_s, at - since)
            since = None
    return Overload(capacity_gpus, above_s / 3600.0, longest_s / 3600.0, excess_s / 3600.0)
