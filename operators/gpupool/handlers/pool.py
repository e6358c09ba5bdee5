"""kopf glue: reconcile every GPUNodePool on a timer.

Loaded by the operator process, :mod:`kubeforge.operators.main` (login, peering, metrics server).
"""

from __future__ import annotations

import os
import time
from typing import Any

import kopf

from kubeforge.core.kube import api_client
from kubeforge.operators.gpupool.api.crd import GROUP, PLURAL, VERSION
from kubeforge.operators.gpupool.clients.reconcile import Reconciler
from kubeforge.operators.gpupool.handlers import metrics

INTERVAL_S = float(os.environ.get("KUBEFORGE_RECONCILE_INTERVAL", "15"))
_state: dict[str, Reconciler] = {}


def _reconciler() -> Reconciler:
    if "r" not in _state:
        _state["r"] = Reconciler(api_client())
    return _state["r"]


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
