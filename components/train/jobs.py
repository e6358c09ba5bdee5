"""Create a Kubeflow training job (PyTorchJob or TrainJob), wait for its outcome, cost it.

Both kinds are custom resources with the same life: get-or-create by name, then poll the
conditions until one of the kind's terminal conditions is true. What the job cost in GPUs is read
from its pods through the API: each pod holds the GPUs it requested from the moment the scheduler
bound it to a node until its containers ended.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubeforge.core.errors import KubeforgeError


@dataclass(frozen=True)
class JobKind:
    """What differs between the training job kinds train runs on a cluster."""

    kind: str
    group: str
    version: str
    plural: str
    install: str  # what a cluster without the CRD lacks
    succeeded: str  # the condition type of success (its failure is always "Failed")
    poll_s: float
    pod_label: str  # the label its controllers put on the job's pods, valued with the job's name


# Extended resources that are GPUs; for these a request always equals the limit.
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")


def submit_job(api_client: Any, kind: JobKind, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the job, or return the existing one of the same name (get-or-create).

    Raises:
        KubeforgeError: the cluster has no CRD for ``kind``, or the API server refused the job
            (its message, which names the field, is kept).
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api_client)
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    try:
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, manifest
        )
        return created
    except ApiException as exc:
        if exc.status == 409:
            existing: dict[str, Any] = custom.get_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, name
            )
            return existing
        if exc.status == 404:
            raise KubeforgeError(
                f"the cluster has no {kind.kind} CRD: install {kind.install}", "train_backend"
            ) from exc
        raise KubeforgeError(
            f"creating {kind.kind} {namespace}/{name} failed: {exc.reason}: {exc.body}"
        ) from exc


def wait_for_job(api_client: Any, kind: JobKind, namespace: str, name: str, timeout: float) -> str:
    """Wait until the job's success or Failed condition is true; return which."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = custom.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name
        )
        for cond in job.get("status", {}).get("conditions", []) or []:
            if cond.get("status") == "True" and cond.get("type") in (kind.succeeded, "Failed"):
                return str(cond["type"])
        time.sleep(kind.poll_s)
    raise KubeforgeError(f"{kind.kind} {namespace}/{name} did not finish within {timeout:.0f}s")


def _time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339 string or datetime) as an aware datetime; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def pod_gpus(pod: dict[str, Any]) -> int:
    """GPUs the pod holds: its containers' sum, or its largest init container's if larger."""

    def gpus(container: dict[str, Any]) -> int:
        resources = container.get("resources") or {}
        amounts = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return sum(int(amounts.get(name, 0)) for name in GPU_RESOURCES)

    spec = pod.get("spec") or {}
    running = sum(gpus(c) for c in spec.get("containers") or [])
    init = max((gpus(c) for c in spec.get("initContainers") or []), default=0)
    return max(running, init)


def pod_gpu_seconds(pod: dict[str, Any], now: datetime) -> float:
    """GPUs the pod requested x seconds from its binding to a node until its containers ended.

    Start: the ``PodScheduled`` condition's transition (the scheduler reserved the GPUs then),
    else ``status.startTime``. End: the last container's ``finishedAt`` once all have ended;
    for a finished pod without them, its last condition change; for a live pod, ``now``.
    ``pod`` is the API's JSON form (camelCase keys).
    """
    gpus = pod_gpus(pod)
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    scheduled = next(
        (c for c in conditions if c.get("type") == "PodScheduled" and c.get("status") == "True"),
        None,
    )
    start = _time(scheduled.get("lastTransitionTime")) if scheduled else None
    start = start or _time(status.get("startTime"))
    if not gpus or start is None:
        return 0.0
    states = [(c.get("state") or {}) for c in status.get("containerStatuses") or []]
    ended = [_time((s.get("terminated") or {}).get("finishedAt")) for s in states]
    if states and all(ended):
        end = max(e for e in ended if e is not None)
    elif status.get("phase") in ("Succeeded", "Failed"):
        changes = [_time(c.get("lastTransitionTime")) for c in conditions]
        end = max((c for c in changes if c is not None), default=now)
    else:
        end = now
    return gpus * max(0.0, (end - start).total_seconds())


def pod_run_seconds(pod: dict[str, Any]) -> float | None:
    """Seconds from the pod's ``startTime`` until its last container ended; None if still running.

    The GPU pool's planner adds a pod's declared run time to the same ``startTime`` to know when
    its node frees (``kubeforge.io/expected-runtime-seconds``), so this is what to declare.
    """
    status = pod.get("status") or {}
    start = _time(status.get("startTime"))
    states = [(c.get("state") or {}) for c in status.get("containerStatuses") or []]
    ended = [_time((s.get("terminated") or {}).get("finishedAt")) for s in states]
    if start is None or not states or not all(ended):
        return None
    return max(0.0, (max(e for e in ended if e is not None) - start).total_seconds())


def job_pods(api_client: Any, kind: JobKind, namespace: str, name: str) -> list[dict[str, Any]]:
    """The job's pods still present, in the API's JSON form (camelCase keys)."""
    from kubernetes import client

    pods = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"{kind.pod_label}={name}"
    )
    as_json = client.ApiClient().sanitize_for_serialization
    return [as_json(pod) for pod in pods.items]


def job_gpu_hours(pods: list[dict[str, Any]], now: datetime | None = None) -> float | None:
    """GPU-hours a job's pods (:func:`job_pods`) held; None when none of its pods is left.

    Pods that a controller already deleted (a restarted replica, a clean-up policy) are not
    counted: the figure is what the pods still present show, never an estimate.
    """
    if not pods:
        return None
    moment = now or datetime.now(UTC)
    return sum(pod_gpu_seconds(pod, moment) for pod in pods) / 3600.0


def job_run_seconds(pods: list[dict[str, Any]]) -> float | None:
    """How long a finished job's pods ran (the longest); None when none is left or finished."""
    return max((r for r in map(pod_run_seconds, pods) if r is not None), default=None)
