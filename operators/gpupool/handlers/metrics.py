"""Prometheus metrics of the GPU pool operator (served on the operator's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan, Snapshot

NODES = Gauge("kubeforge_pool_nodes", "Pool nodes by state", ["pool", "state"])
GPUS = Gauge("kubeforge_pool_gpus", "Pool GPUs by state", ["pool", "state"])
PENDING = Gauge("kubeforge_pool_pending_gang_gpus", "GPUs of whole jobs waiting", ["pool"])
SCALE = Counter(
    "kubeforge_pool_scale_events", "Scale decisions applied, by direction", ["pool", "direction"]
)
DECISION = Histogram(
    "kubeforge_pool_decision_seconds",
    "Time to read the cluster and plan one pool",
    ["pool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ERRORS = Counter("kubeforge_pool_reconcile_errors", "Reconciles that raised", ["pool"])


def record(pool: str, snap: Snapshot, plan: PoolPlan, seconds: float) -> None:
    """Update every pool metric from one reconcile."""
    ready = [n for n in snap.nodes if n.gpu_ready and not n.cordoned]
    NODES.labels(pool, "gpu_ready").set(len(ready))
    NODES.labels(pool, "registering").set(sum(1 for n in snap.nodes if not n.gpu_ready))
    NODES.labels(pool, "cordoned").set(sum(1 for n in snap.nodes if n.cordoned))
    allocatable = sum(n.allocatable_gpus for n in ready)
    allocated = sum(n.allocated_gpus for n in ready)
    GPUS.labels(pool, "allocatable").set(allocatable)
    GPUS.labels(pool, "allocated").set(allocated)
    GPUS.labels(pool, "idle").set(allocatable - allocated)
    PENDING.labels(pool).set(sum(j.gpus for j in snap.jobs))
    DECISION.labels(pool).observe(seconds)
    if plan.decision is Decision.SCALE_UP:
        SCALE.labels(pool, "up").inc(plan.add_nodes)
    elif plan.decision is Decision.SCALE_DOWN:
        SCALE.labels(pool, "down").inc(len(plan.nodes_to_remove))
