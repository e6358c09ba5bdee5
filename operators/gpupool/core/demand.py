"""Turn Kubernetes objects (as plain dicts) into the planner's inputs. Pure: no API calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.planner import JobDemand, NodeState

TERMINAL = ("Succeeded", "Failed")
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"


def quantity(value: Any) -> int:
    """A resource quantity of whole units (GPUs) as an int; 0 when unset."""
    return int(str(value)) if value not in (None, "") else 0


def pod_gpus(pod_spec: Mapping[str, Any], resource: str) -> int:
    """GPUs a pod asks for: the sum over its containers (limits, else requests)."""
    total = 0
    for container in pod_spec.get("containers", []) or []:
        res = container.get("resources", {}) or {}
        asked = (res.get("limits") or {}).get(resource, (res.get("requests") or {}).get(resource))
        total += quantity(asked)
    return total


def job_is_terminal(job: Mapping[str, Any]) -> bool:
    """True when the job's Succeeded or Failed condition is true."""
    for cond in job.get("status", {}).get("conditions", []) or []:
        if cond.get("type") in TERMINAL and cond.get("status") == "True":
            return True
    return False


def job_is_suspended(job: Mapping[str, Any]) -> bool:
    """True when ``spec.runPolicy.suspend`` is set (by its user, or by Kueue until admitted)."""
    return bool((job.get("spec", {}).get("runPolicy") or {}).get("suspend"))


def job_demand(
    job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], resource: str
) -> JobDemand:
    """A PyTorchJob's pending GPUs from its *spec* (so pods not created yet still count).

    Per replica type, ``replicas`` pods of the template's GPUs, minus the pods of that type
    already bound to a node or finished there (a rank that succeeded needs no node again; a
    failed one is replaced by its operator). A suspended job (Kueue has not admitted it) has
    no pods to place: it demands nothing.
    """
    meta = job.get("metadata", {})
    bound: dict[str, int] = {}
    for pod in pods:
        labels = pod.get("metadata", {}).get("labels", {}) or {}
        if labels.get(JOB_NAME_LABEL) != meta.get("name"):
            continue
        if pod.get("spec", {}).get("nodeName") and pod.get("status", {}).get("phase") != "Failed":
            kind = str(labels.get(REPLICA_TYPE_LABEL, "")).lower()
            bound[kind] = bound.get(kind, 0) + 1
    unbound: list[int] = []
    if not job_is_terminal(job) and not job_is_suspended(job):
        specs = job.get("spec", {}).get("pytorchReplicaSpecs", {}) or {}
        for kind, spec in sorted(specs.items()):
            gpus = pod_gpus(spec.get("template", {}).get("spec", {}) or {}, resource)
            missing = max(0, int(spec.get("replicas", 1)) - bound.get(kind.lower(), 0))
            if gpus:
                unbound += [gpus] * missing
    priority = job.get("spec", {}).get("runPolicy", {}).get("schedulingPolicy", {}) or {}
    return JobDemand(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        created_at=parse_rfc3339(meta.get("creationTimestamp")),
        unbound_pod_gpus=tuple(unbound),
        priority=quantity(priority.get("priority")) if "priority" in priority else 0,
    )


def node_state(
    node: Mapping[str, Any],
    pods_on_node: Iterable[Mapping[str, Any]],
    idle_since: float | None,
    resource: str,
) -> NodeState:
    """A pool node from its Node object and the non-terminal pods bound to it.

    ``idle_since`` is remembered by the caller (the operator's index): when the node last ran a
    training pod. A node counts as GPU-ready only once its allocatable GPUs have appeared.
    """
    meta = node.get("metadata", {})
    # The provider records when it asked for the node on the operator's clock; prefer that.
    requested = (meta.get("annotations") or {}).get("kubeforge.io/requested-at")
    created = float(requested) if requested else parse_rfc3339(meta.get("creationTimestamp"))
    allocatable = quantity((node.get("status", {}).get("allocatable") or {}).get(resource))
    live = [p for p in pods_on_node if p.get("status", {}).get("phase") not in TERMINAL]
    allocated = sum(pod_gpus(p.get("spec", {}), resource) for p in live)
    busy = any(JOB_NAME_LABEL in (p.get("metadata", {}).get("labels") or {}) for p in live)
    return NodeState(
        name=str(meta.get("name", "")),
        created_at=created,
        gpu_ready=allocatable > 0,
        allocatable_gpus=allocatable,
        allocated_gpus=allocated,
        busy=busy,
        idle_since=None if busy else idle_since,
        cordoned=bool(node.get("spec", {}).get("unschedulable")),
    )
