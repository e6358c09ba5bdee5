"""kopf glue: reconcile every GPUNodePool on a timer; serve metrics.

Run with ``kopf run -m kubeforge.operators.gpupool.handlers.pool --all-namespaces``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from kubeforge.core.kube import api_client
from kubeforge.operators.gpupool.api.crd import GROUP, PLURAL, VERSION
from kubeforge.operators.gpupool.clients.reconcile import Reconciler
from kubeforge.operators.gpupool.handlers import metrics

INTERVAL_S = float(os.environ.get("KUBEFORGE_RECONCILE_INTERVAL", "15"))
METRICS_PORT = int(os.environ.get("KUBEFORGE_METRICS_PORT", "8080"))
_state: dict[str, Reconciler] = {}


def _reconciler() -> Reconciler:
    if "r" not in _state:
        _state["r"] = Reconciler(api_client())
    return _state["r"]


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig named by KUBECONFIG (read now)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """One active replica per cluster through kopf peering; metrics on METRICS_PORT."""
    settings.peering.name = "kubeforge-gpupool"
    settings.peering.clusterwide = True
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    if METRICS_PORT:
        start_http_server(METRICS_PORT, addr=os.environ.get("KUBEFORGE_METRICS_ADDR", "0.0.0.0"))


@kopf.timer(GROUP, VERSION, PLURAL, interval=INTERVAL_S, initial_delay=0.5)
def reconcile_pool(body: kopf.Body, name: str, logger: kopf.Logger, **_: Any) -> None:
    """Plan and apply; every non-noop decision becomes an Event with its reasons."""
    reconciler = _reconciler()
    started = time.perf_counter()
    try:
        decision = reconciler.reconcile(dict(body), now=time.time())
    except Exception:
        metrics.ERRORS.labels(name).inc()
        raise
    if reconciler.last_snapshot is not None:
        metrics.record(name, reconciler.last_snapshot, decision, time.perf_counter() - started)
    if decision.decision.value != "noop":
        logger.info(f"{decision.decision.value}: {'; '.join(decision.reasons)}")
