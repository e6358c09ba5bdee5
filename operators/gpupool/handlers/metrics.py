"""Prometheus metrics of the GPU pool operator (served on the operator's ``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from kubeforge.operators.gpupool.clients.executor import Action
from kubeforge.operators.gpupool.core.losses import GangLoss
from kubeforge.operators.gpupool.core.status import Observation, gpu_counts, node_counts

NODES = Gauge(
    "kubeforge_pool_nodes",
    "Pool nodes by state (requested, registering, gpu_ready, cordoned, draining, failed)",
    ["pool", "state"],
)
GPUS = Gauge(
    "kubeforge_pool_gpus",
    "Pool GPUs by state (capacity, allocatable, allocated, idle)",
    ["pool", "state"],
)
PENDING = Gauge("kubeforge_pool_pending_gang_gpus", "GPUs of whole jobs waiting", ["pool"])
SCALE = Counter(
    "kubeforge_pool_scale_events",
    "Nodes added or removed, by direction and reason "
    "(gang_demand, min_nodes, idle, provision_timeout)",
    ["pool", "direction", "reason"],
)
DECISION = Histogram(
    "kubeforge_pool_decision_seconds",
    "Time to read the cluster and plan one pool",
    ["pool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JOB_WAIT = Histogram(
    "kubeforge_pool_job_wait_seconds",
    "Seconds from a PyTorchJob's creation until all its GPU pods were bound",
    ["pool"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
ERRORS = Counter(
    "kubeforge_pool_reconcile_errors",
    "Reconciles that raised or found the provider unavailable",
    ["pool"],
)
LOSSES = Counter(
    "kubeforge_pool_gang_node_losses",
    "Nodes found gone under running gangs (each loss stalls the whole gang)",
    ["pool"],
)
GPU_MINUTES_LOST = Counter(
    "kubeforge_pool_gang_gpu_minutes_lost",
    "GPU-minutes gangs stalled between losing a node and running on a full set again",
    ["pool"],
)
RECOVERY = Histogram(
    "kubeforge_pool_gang_recovery_seconds",
    "Seconds from a node lost under a running gang until every rank runs again",
    ["pool"],
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
_SNAKE = {"gpuReady": "gpu_ready"}


def record_losses(pool: str, lost: Iterable[GangLoss], recovered: Iterable[GangLoss]) -> None:
    """Count node losses under gangs, and each recovery's time and stalled GPU-minutes."""
    for _ in lost:
        LOSSES.labels(pool).inc()
    for loss in recovered:
        RECOVERY.labels(pool).observe(loss.recovery_s or 0.0)
        GPU_MINUTES_LOST.labels(pool).inc(loss.gpu_minutes_lost(loss.recovered_at or 0.0))


def record(
    pool: str,
    obs: Observation,
    resource: str,
    seconds: float,
    actions: Iterable[Action],
    waits: Iterable[float],
) -> None:
    """Update every pool metric from one reconcile."""
    if obs.provider_error:
        ERRORS.labels(pool).inc()
    else:
        for state, count in node_counts(obs, (n for n in obs.nodes if n.cordoned)).items():
            NODES.labels(pool, _SNAKE.get(state, state)).set(count)
        for state, count in gpu_counts(obs, resource).items():
            GPUS.labels(pool, state).set(count)
    if obs.plan is not None:
        PENDING.labels(pool).set(sum(v.gpus for v in obs.plan.jobs))
    DECISION.labels(pool).observe(seconds)
    for action in actions:
        SCALE.labels(pool, action.direction, action.reason).inc(action.nodes)
    for wait in waits:
        JOB_WAIT.labels(pool).observe(wait)
