"""Create a Kubeflow training job (PyTorchJob or TrainJob) and wait for its outcome.

Both kinds are custom resources with the same life: get-or-create by name, then poll the
conditions until one of the kind's terminal conditions is true.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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
