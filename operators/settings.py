"""Operator settings: every ``KUBEFORGE_*`` variable the operator reads, read once at startup.

:mod:`kubeforge.operators.main` calls :meth:`OperatorSettings.from_env` in its startup handler
(not at import: one test process may run the operator several times) and hands the object to
the controllers through kopf's ``memo`` (``memo.settings``). Nothing else in ``operators/``
reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from kubeforge.core.config import IMAGE

# kopf renews a keep-alive 5-10 s before it expires but at most once a second, so a shorter
# lifetime leaves too little slack: a slow renewal would wake the standby next to the active one.
# (A lifetime of 0 even deletes the replica's own record, and every replica acts.)
MIN_PEERING_LIFETIME_S = 5


N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A variable holds a value the operator cannot use; the message names it."""


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator process is configured with.

    Attributes:
        peering: ``KUBEFORGE_PEERING``: name of the ClusterKopfPeering shared by the replicas.
        peering_priority: ``KUBEFORGE_PEERING_PRIORITY``: the highest replica acts; 0 lets each
            replica draw its own (kopf pauses *all* replicas of equal priority).
        peering_lifetime_s: ``KUBEFORGE_PEERING_LIFETIME``: seconds a replica's keep-alive stays
            valid (at least :data:`MIN_PEERING_LIFETIME_S`); None for kopf's own default (60).
        metrics_port: ``KUBEFORGE_METRICS_PORT``: Prometheus ``/metrics``; 0 serves none.
        metrics_addr: ``KUBEFORGE_METRICS_ADDR``: address the metrics server listens on.
        pool_interval_s: ``KUBEFORGE_RECONCILE_INTERVAL``: seconds between reconciles of a
            GPUNodePool.
        run_interval_s: ``KUBEFORGE_RUN_INTERVAL``: seconds between reconciles of a PipelineRun.
        image: ``KUBEFORGE_IMAGE``: the project image a PipelineRun's Job runs.
        kfp_host: ``KUBEFORGE_KFP_HOST``: Kubeflow Pipelines API; "" runs PipelineRuns as Jobs.
        tracking_uri: ``MLFLOW_TRACKING_URI`` given to a PipelineRun's Job ("" for none).
    """

    peering: str = "kubeforge"
    peering_priority: int = 0
    peering_lifetime_s: int | None = None
    metrics_port: int = 8080
    metrics_addr: str = "0.0.0.0"
    pool_interval_s: float = 15.0
    run_interval_s: float = 10.0
    image: str = IMAGE
    kfp_host: str = ""
    tracking_uri: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """The settings from ``env`` (``os.environ`` when None); unset variables keep defaults.

        Raises:
            SettingsError: A value is not a number, or the peering lifetime is too short.
        """
        env = os.environ if env is None else env
        lifetime = env.get("KUBEFORGE_PEERING_LIFETIME", "")
        return cls(
            peering=env.get("KUBEFORGE_PEERING", cls.peering),
            peering_priority=_number(env, "KUBEFORGE_PEERING_PRIORITY", int, cls.peering_priority),
            peering_lifetime_s=peering_lifetime(lifetime) if lifetime else None,
            metrics_port=_number(env, "KUBEFORGE_METRICS_PORT", int, cls.metrics_port),
            metrics_addr=env.get("KUBEFORGE_METRICS_ADDR", cls.metrics_addr),
            pool_interval_s=_number(
                env, "KUBEFORGE_RECONCILE_INTERVAL", float, cls.pool_interval_s
            ),
            run_interval_s=_number(env, "KUBEFORGE_RUN_INTERVAL", float, cls.run_interval_s),
            image=env.get("KUBEFORGE_IMAGE", cls.image),
            kfp_host=env.get("KUBEFORGE_KFP_HOST", cls.kfp_host),
            tracking_uri=env.get("MLFLOW_TRACKING_URI", cls.tracking_uri),
        )


def _number(env: Mapping[str, str], name: str, kind: type[N], default: N) -> N:
    value = env.get(name, "")
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {value!r}") from None


def peering_lifetime(value: str) -> int:
    """``KUBEFORGE_PEERING_LIFETIME`` as whole seconds.

    Raises:
        SettingsError: not an integer, or below ``MIN_PEERING_LIFETIME_S``.
    """
    try:
        seconds = int(value)
    except ValueError:
        raise SettingsError(
            f"KUBEFORGE_PEERING_LIFETIME must be whole seconds, not {value!r}"
        ) from None
    if seconds < MIN_PEERING_LIFETIME_S:
        raise SettingsError(
            f"KUBEFORGE_PEERING_LIFETIME must be at least {MIN_PEERING_LIFETIME_S} s, not {seconds}"
        )
    return seconds
