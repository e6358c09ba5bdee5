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


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace."""

    index: int
    created_at: float
    pods: tuple[int, ...]
    duration_s: float

    @property
    def name(self) -> str:
        """Job name, unique in the trace."""
        return f"job-{self.index:05d}"

    @property
    def gpus(self) -> int:
        """GPUs of the whole job."""
        return sum(self.pods)


def generate_trace(spec: TraceSpec) -> tuple[TraceJob, ...]:
    """Draw the trace: exponential inter-arrival times, shapes by weight, log-uniform durations."""
    rng = random.Random(spec.seed)
    rate_per_s = spec.arrivals_per_hour / 3600.0
    weights = [s.weight for s in spec.mix]
    low, high = spec.duration_s
    now = 0.0
    jobs = []
    for index in range(spec.jobs):
        if index:
            now += rng.expovariate(rate_per_s)
        shape = rng.choices(spec.mix, weights)[0]
        duration = low if high <= low else math.exp(rng.uniform(math.log(low), math.log(high)))
        jobs.append(
            TraceJob(index, round(now, 3), (shape.gpus_per_pod,) * shape.pods, round(duration, 3))
        )
    return tuple(jobs)


def peak_demand_gpus(trace: tuple[TraceJob, ...]) -> int:
    """Most GPUs running at once if every job started the moment it was created."""
    edges = sorted(
        [(j.created_at, j.gpus) for j in trace]
        + [(j.created_at + j.duration_s, -j.gpus) for j in trace],
        key=lambda e: (e[0], e[1]),  # at a tie, a job ending frees its GPUs first
    )
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak
