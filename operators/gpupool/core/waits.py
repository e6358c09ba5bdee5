"""How long a job waited: from its creation until all its GPU pods were bound. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.demand import (
    job_is_terminal,
    pod_gpus,
    pod_of,
    replica_groups,
)


def gpu_pods_wanted(job: Mapping[str, Any], resource: str) -> int:
    """Pods of the job (all replica groups) that ask for GPUs."""
    return sum(pods for _, pods, _ in replica_groups(job, resource))


def job_wait_seconds(
    job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], resource: str, now: float
) -> float | None:
    """Seconds from the job's creation until its last GPU pod was bound; None until then.

    The bind time is the pod's ``PodScheduled`` condition; a pod bound without a scheduler
    (``spec.nodeName`` set directly) has none, and counts as bound ``now``.
    """
    if job_is_terminal(job):
        return None
    wanted = gpu_pods_wanted(job, resource)
    bound_at: list[float] = []
    for pod in pods:
        if pod_of(job, pod) is None or not pod.get("spec", {}).get("nodeName"):
            continue
        if not pod_gpus(pod.get("spec", {}), resource):
            continue
        when = now
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
                when = parse_rfc3339(cond.get("lastTransitionTime")) or now
        bound_at.append(when)
    if not wanted or len(bound_at) < wanted:
        return None
    created = parse_rfc3339(job.get("metadata", {}).get("creationTimestamp"))
    return max(0.0, max(bound_at) - created)
