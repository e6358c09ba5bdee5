"""Turn Kubernetes objects (as plain dicts) into the planner's inputs. Pure: no API calls.

Two job kinds are demand: Kubeflow training operator ``PyTorchJob`` (kubeflow.org/v1), whose
pods carry ``training.kubeflow.org/job-name``, and Kubeflow Trainer v2 ``TrainJob``
(trainer.kubeflow.org/v1alpha1), run as a JobSet of the same name whose pods carry
``jobset.sigs.k8s.io/jobset-name``. Both count the same way: the whole gang from the spec,
minus the pods already bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.planner import JobDemand, NodeState

TERMINAL = ("Succeeded", "Failed")
JOB_TERMINAL = ("Succeeded", "Failed", "Complete")  # PyTorchJob, TrainJob conditions
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
TRAINJOB_GROUP = "trainer.kubeflow.org"
TRAINING_POD_LABELS = (JOB_NAME_LABEL, JOBSET_NAME_LABEL)


def is_trainjob(job: Mapping[str, Any]) -> bool:
    """A Kubeflow Trainer v2 TrainJob (else a PyTorchJob)."""
    return job.get("kind") == "TrainJob" or str(job.get("apiVersion", "")).startswith(
        TRAINJOB_GROUP + "/"
    )


def is_training_pod(pod: Mapping[str, Any]) -> bool:
    """A pod of a PyTorchJob or of a TrainJob's JobSet."""
    labels = pod.get("metadata", {}).get("labels") or {}
    return any(key in labels for key in TRAINING_POD_LABELS)


def replica_groups(job: Mapping[str, Any], resource: str) -> list[tuple[str, int, int]]:
    """``(group, pods, GPUs per pod)`` of a job's pods that ask for GPUs.

    A PyTorchJob's groups are its replica types; a TrainJob has one, ``node``: ``numNodes``
    pods with ``resourcesPerNode`` (the JobSet's trainer node job).
    """
    spec = job.get("spec", {}) or {}
    if is_trainjob(job):
        trainer = spec.get("trainer") or {}
        resources = trainer.get("resourcesPerNode") or {}
        gpus = pod_gpus({"containers": [{"resources": resources}]}, resource)
        return [("node", int(trainer.get("numNodes") or 1), gpus)] if gpus else []
    groups = []
    for kind, replica in sorted((spec.get("pytorchReplicaSpecs") or {}).items()):
        gpus = pod_gpus(replica.get("template", {}).get("spec", {}) or {}, resource)
        if gpus:
            groups.append((kind.lower(), int(replica.get("replicas", 1)), gpus))
    return groups


def pod_of(job: Mapping[str, Any], pod: Mapping[str, Any]) -> str | None:
    """The pod's group in ``job`` (replica type or replicated job); None if not the job's."""
    labels = pod.get("metadata", {}).get("labels") or {}
    name = job.get("metadata", {}).get("name")
    if is_trainjob(job):
        if labels.get(JOBSET_NAME_LABEL) != name:
            return None
        return str(labels.get(REPLICATED_JOB_LABEL, "node"))
    if labels.get(JOB_NAME_LABEL) != name:
        return None
    return str(labels.get(REPLICA_TYPE_LABEL, "")).lower()


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
    """True when the job's Succeeded, Complete (TrainJob) or Failed condition is true."""
    for cond in job.get("status", {}).get("conditions", []) or []:
        if cond.get("type") in JOB_TERMINAL and cond.get("status") == "True":
            return True
    return False


def job_is_suspended(job: Mapping[str, Any]) -> bool:
    """True when the job is suspended (by its user, or by Kueue until admitted).

    A PyTorchJob's ``spec.runPolicy.suspend``, a TrainJob's ``spec.suspend``.
    """
    spec = job.get("spec", {}) or {}
    if is_trainjob(job):
        return bool(spec.get("suspend"))
    return bool((spec.get("runPolicy") or {}).get("suspend"))


def job_demand(
    job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], resource: str
) -> JobDemand:
    """A PyTorchJob's or TrainJob's pending GPUs from its *spec* (pods not made yet count).

    Per replica group (:func:`replica_groups`), its pods' GPUs, minus the pods of that group
    already bound to a node or finished there (a rank that succeeded needs no node again; a
    failed one is replaced by its controller). A suspended job (Kueue has not admitted it) has
    no pods to place: it demands nothing.
    """
    meta = job.get("metadata", {})
    bound: dict[str, int] = {}
    for pod in pods:
        group = pod_of(job, pod)
        if group is None:
            continue
        if pod.get("spec", {}).get("nodeName") and pod.get("status", {}).get("phase") != "Failed":
            bound[group] = bound.get(group, 0) + 1
    unbound: list[int] = []
    if not job_is_terminal(job) and not job_is_suspended(job):
        for group, replicas, gpus in replica_groups(job, resource):
            unbound += [gpus] * max(0, replicas - bound.get(group, 0))
    priority = (job.get("spec", {}).get("runPolicy") or {}).get("schedulingPolicy", {}) or {}
    return JobDemand(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        created_at=parse_rfc3339(meta.get("creationTimestamp")),
        unbound_pod_gpus=tuple(unbound),
        priority=quantity(priority.get("priority")) if "priority" in priority else 0,
    )


def expected_end(pod: Mapping[str, Any]) -> float | None:
    """When a running pod is expected to end: its start time plus its declared run time.

    None when the pod declares no (valid) run time or has not started.
    """
    declared = (pod.get("metadata", {}).get("annotations") or {}).get(EXPECTED_RUNTIME_ANNOTATION)
    started = (pod.get("status") or {}).get("startTime")
    if declared is None or not started:
        return None
    try:
        seconds = float(declared)
    except ValueError:
        return None
    if not seconds >= 0:  # negative or NaN
        return None
    return parse_rfc3339(started) + seconds


def expected_free_at(live_pods: list[Mapping[str, Any]], resource: str) -> float | None:
    """When every training pod on a node is expected to end; None if the planner cannot tell.

    It cannot when a training pod declares no run time, or another pod holds GPUs there.
    """
    training = [p for p in live_pods if is_training_pod(p)]
    if not training or any(
        pod_gpus(p.get("spec", {}), resource) for p in live_pods if not is_training_pod(p)
    ):
        return None
    ends = [expected_end(p) for p in training]
    if any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)


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
    busy = any(is_training_pod(p) for p in live)
    return NodeState(
        name=str(meta.get("name", "")),
        created_at=created,
        gpu_ready=allocatable > 0,
        allocatable_gpus=allocatable,
        allocated_gpus=allocated,
        busy=busy,
        idle_since=None if busy else idle_since,
        cordoned=bool(node.get("spec", {}).get("unschedulable")),
        expected_free_at=expected_free_at(live, resource),
    )
