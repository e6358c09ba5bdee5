"""Which PyTorchJobs a pool serves. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeforge.operators.gpupool.core.pool_config import PoolConfig


def serves(pool: PoolConfig, job: Mapping[str, Any]) -> bool:
    """True when the job is in the pool's namespaces, has its labels, and targets its nodes."""
    meta = job.get("metadata", {})
    if pool.namespaces and meta.get("namespace") not in pool.namespaces:
        return False
    labels = meta.get("labels", {}) or {}
    if any(labels.get(k) != v for k, v in pool.match_labels.items()):
        return False
    if not pool.node_selector:
        return True
    specs = job.get("spec", {}).get("pytorchReplicaSpecs", {}) or {}
    for spec in specs.values():
        selector = spec.get("template", {}).get("spec", {}).get("nodeSelector", {}) or {}
        if all(selector.get(k) == v for k, v in pool.node_selector.items()):
            return True
    return False
