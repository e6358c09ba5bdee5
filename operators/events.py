"""Kubernetes Events (core/v1) for the controllers' decisions, posted directly (every controller).

kopf turns log lines into Events only for handlers that get an object logger which posts;
timers (daemons inside kopf) get a ``LocalObjectLogger`` that never does, and its Events would
all carry the reason ``Logging``. So decisions are posted here, with their own reasons.
The same reason and message on the same object bump ``count`` on one Event (as client-go's
aggregation does), so a job that stays unschedulable does not flood the namespace.
Event times come from the caller's clock (:mod:`kubeforge.operators.clock`), never the wall clock.

Shared by every controller's ``clients/`` package; imports only the clock of the operators.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from kubeforge.operators.clock import SYSTEM_CLOCK, Clock, rfc3339

COMPONENT = "kubeforge-operator"


def event_name(involved: Mapping[str, Any], reason: str, message: str) -> str:
    """A deterministic Event name: the same event on the same object is one Event object."""
    key = f"{involved.get('uid', '')}|{reason}|{message}".encode()
    return f"{involved['name']}.{hashlib.sha256(key).hexdigest()[:16]}"


def post_event(
    api_client: Any,
    involved: Mapping[str, Any],
    reason: str,
    message: str,
    type_: str = "Normal",
    namespace: str = "default",
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Create the Event, or bump the count of the identical one.

    Args:
        api_client: A ``kubernetes.client.ApiClient``.
        involved: The object (a dict with apiVersion, kind, metadata) the Event is about.
        reason: One CamelCase word (``ScaleUp``, ``Unschedulable``...).
        message: What happened, for a person.
        type_: ``Normal`` or ``Warning``.
        namespace: Where to post Events about cluster-scoped objects.
        clock: Stamps ``firstTimestamp`` / ``lastTimestamp``; the controller's clock.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    meta = involved.get("metadata", {})
    ref = {
        "apiVersion": involved.get("apiVersion", ""),
        "kind": involved.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "uid": meta.get("uid", ""),
    }
    ns = ref["namespace"] or namespace
    name = event_name(ref, reason, message)
    now = rfc3339(clock.now())
    core = client.CoreV1Api(api_client)
    try:
        existing = core.read_namespaced_event(name, ns)
    except ApiException as exc:
        if exc.status != 404:
            raise
        body = {
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {k: v for k, v in ref.items() if v},
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
        }
        try:
            core.create_namespaced_event(ns, body)
        except ApiException as create_exc:
            if create_exc.status != 409:  # posted meanwhile by the other path: fine
                raise
        return
    core.patch_namespaced_event(
        name, ns, {"count": (existing.count or 1) + 1, "lastTimestamp": now}
    )
