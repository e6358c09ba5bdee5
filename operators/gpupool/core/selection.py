"""Which PyTorchJobs and TrainJobs a pool serves. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeforge.operators.gpupool.core.demand import is_trainjob
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
    return any(
        all(selector.get(k) == v for k, v in pool.node_selector.items())
        for selector in _node_selectors(job)
    )


def _node_selectors(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The nodeSelectors of a job's pod templates.

    A PyTorchJob's replica templates; a TrainJob's ``runtimePatches`` of its replicated jobs
    (what its user sets; the runtime's own template is not read here).
    """
    spec = job.get("spec", {}) or {}
    if is_trainjob(job):
        selectors = []
        for patch in spec.get("runtimePatches") or []:
            template = (patch.get("trainingRuntimeSpec") or {}).get("template") or {}
            for replicated in (template.get("spec") or {}).get("replicatedJobs") or []:
                pod = ((replicated.get("template") or {}).get("spec") or {}).get("template") or {}
                selectors.append((pod.get("spec") or {}).get("nodeSelector") or {})
        return selectors
    return [
        replica.get("template", {}).get("spec", {}).get("nodeSelector", {}) or {}
        for replica in (spec.get("pytorchReplicaSpecs") or {}).values()
    ]
