"""The operator process: every controller's kopf handlers, one login, one peering group.

Run with ``kopf run --all-namespaces -m kubeforge.operators.main`` (the chart's container command).
Each controller keeps its handlers in its own ``handlers/`` package; importing them here registers
them with kopf, so one process (and one active replica, through peering) runs them all.
"""

from __future__ import annotations

import os
import random
from typing import Any

import kopf
from prometheus_client import start_http_server

from kubeforge.operators.gpupool.handlers import pool as _gpupool  # noqa: F401 - registers handlers
from kubeforge.operators.pipelineruns.handlers import pipelinerun  # noqa: F401 - registers handlers


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig named by KUBECONFIG (read now)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """One active replica per cluster through kopf peering; metrics on KUBEFORGE_METRICS_PORT.

    Peering: ``KUBEFORGE_PEERING`` (name), ``KUBEFORGE_PEERING_PRIORITY`` (highest acts) and
    ``KUBEFORGE_PEERING_LIFETIME`` (seconds a replica's keep-alive stays valid).
    """
    # Read at startup, not import: one test process may run the operator several times.
    settings.peering.name = os.environ.get("KUBEFORGE_PEERING", "kubeforge")
    settings.peering.clusterwide = True
    # Replicas of equal priority all pause (kopf's rule), so each replica draws its own.
    settings.peering.priority = int(os.environ.get("KUBEFORGE_PEERING_PRIORITY", "0")) or (
        random.randint(1, 2**31 - 1)
    )
    # How long a silent replica counts as alive: a standby takes over about this long after the
    # active replica dies. kopf's own default (60 s) when unset.
    lifetime = os.environ.get("KUBEFORGE_PEERING_LIFETIME", "")
    if lifetime:
        settings.peering.lifetime = _peering_lifetime(lifetime)
    # Handlers' own log lines at INFO and above become Events; timers never post, so the
    # controllers post their decisions themselves (kubeforge.operators.events).
    settings.posting.level = 20
    port = int(os.environ.get("KUBEFORGE_METRICS_PORT", "8080"))
    if port:
        start_http_server(port, addr=os.environ.get("KUBEFORGE_METRICS_ADDR", "0.0.0.0"))


# kopf renews a keep-alive 5-10 s before it expires but at most once a second, so a shorter
# lifetime leaves too little slack: a slow renewal would wake the standby next to the active one.
# (A lifetime of 0 even deletes the replica's own record, and every replica acts.)
MIN_PEERING_LIFETIME_S = 5


def _peering_lifetime(value: str) -> int:
    """``KUBEFORGE_PEERING_LIFETIME`` as whole seconds; a bad value stops the operator.

    Raises:
        kopf.PermanentError: not an integer, or below ``MIN_PEERING_LIFETIME_S``.
    """
    try:
        seconds = int(value)
    except ValueError:
        raise kopf.PermanentError(
            f"KUBEFORGE_PEERING_LIFETIME must be whole seconds, not {value!r}"
        ) from None
    if seconds < MIN_PEERING_LIFETIME_S:
        raise kopf.PermanentError(
            f"KUBEFORGE_PEERING_LIFETIME must be at least {MIN_PEERING_LIFETIME_S} s, not {seconds}"
        )
    return seconds
