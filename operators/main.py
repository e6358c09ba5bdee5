"""The operator process: every controller's kopf handlers, one login, one peering group.

Run with ``kopf run --all-namespaces -m kubeforge.operators.main`` (the chart's container command).
Each controller keeps its handlers in its own ``handlers/`` package; importing them here registers
them with kopf, so one process (and one active replica, through peering) runs them all. The
settings (:mod:`kubeforge.operators.settings`) are read here once, at startup, and reach the
handlers as ``memo.settings``.

The top of the operators package: it may import every controller's handlers.
"""

from __future__ import annotations

import random
from typing import Any

import kopf
from prometheus_client import start_http_server

from kubeforge.operators.gpupool.handlers import pool as _gpupool  # noqa: F401 - registers handlers
from kubeforge.operators.pipelineruns.handlers import pipelinerun  # noqa: F401 - registers handlers
from kubeforge.operators.settings import OperatorSettings, SettingsError


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig named by KUBECONFIG (read now)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Read :class:`OperatorSettings` once; peering, metrics server; ``memo.settings`` for all.

    One active replica per cluster through kopf peering (``KUBEFORGE_PEERING``, the highest
    ``KUBEFORGE_PEERING_PRIORITY`` acts, ``KUBEFORGE_PEERING_LIFETIME``); metrics on
    ``KUBEFORGE_METRICS_PORT``. A bad value stops the operator with a message naming it.
    """
    # Read at startup, not import: one test process may run the operator several times.
    try:
        config = OperatorSettings.from_env()
    except SettingsError as exc:
        raise kopf.PermanentError(str(exc)) from None
    memo.settings = config  # kopf copies the operator's memo into every resource's memo
    settings.peering.name = config.peering
    settings.peering.clusterwide = True
    # Replicas of equal priority all pause (kopf's rule), so each replica draws its own.
    settings.peering.priority = config.peering_priority or random.randint(1, 2**31 - 1)
    # How long a silent replica counts as alive: a standby takes over about this long after the
    # active replica dies. kopf's own default (60 s) when unset.
    if config.peering_lifetime_s is not None:
        settings.peering.lifetime = config.peering_lifetime_s
    # Handlers' own log lines at INFO and above become Events; timers never post, so the
    # controllers post their decisions themselves (kubeforge.operators.events).
    settings.posting.level = 20
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.metrics_addr)
