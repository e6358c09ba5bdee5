"""kopf glue: reconcile every GPUNodePool every ``pool_interval_s`` seconds.

Loaded by the operator process, :mod:`kubeforge.operators.main` (login, peering, metrics server),
whose startup handler reads the settings into ``memo.settings``. A kopf timer's interval is fixed
when its decorator runs (at import), so each pool gets a daemon (kopf runs timers as daemons too)
that sleeps the interval read at startup between reconciles.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import kopf

from kubeforge.core.kube import api_client
from kubeforge.operators.gpupool.api.crd import GROUP, PLURAL, VERSION
from kubeforge.operators.gpupool.clients.reconcile import ClusterReads, Reconciler
from kubeforge.operators.gpupool.core.demand import JOB_NAME_LABEL, JOBSET_NAME_LABEL
from kubeforge.operators.gpupool.core.planner import Decision
from kubeforge.operators.gpupool.handlers import metrics
from kubeforge.operators.settings import OperatorSettings

_state: dict[str, Reconciler] = {}


def _reconciler(pool: str) -> Reconciler:
    # One per pool: kopf runs different pools' daemons in parallel threads; each reconciler
    # keeps its own pool's idle timers, backoff and measured waits.
    if pool not in _state:
        _state[pool] = Reconciler(api_client())
    return _state[pool]


@kopf.on.startup()
def fresh_reconcilers(**_: Any) -> None:
    """Start from the cluster, not from a previous run's memory (as a new process would)."""
    _state.clear()


@kopf.index("kubeflow.org", "v1", "pytorchjobs")
def pytorchjob_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
    """Every PyTorchJob, kept current by kopf's watch (no LIST per reconcile)."""
    return {(namespace, name): _plain(body)}


@kopf.index("trainer.kubeflow.org", "v1alpha1", "trainjobs")
def trainjob_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
    """Every TrainJob (Kubeflow Trainer v2); empty where Trainer is not installed."""
    return {(namespace, name): _plain(body)}


@kopf.index("", "v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT})
def training_pod_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
    """Every pod that belongs to a PyTorchJob (labelled with the job's name)."""
    return {(namespace, name): _plain(body)}


@kopf.index("", "v1", "pods", labels={JOBSET_NAME_LABEL: kopf.PRESENT})
def jobset_pod_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
    """Every pod of a JobSet (a TrainJob runs as a JobSet of its name)."""
    return {(namespace, name): _plain(body)}


def _plain(body: kopf.Body) -> dict[str, Any]:
    return {
        key: body.get(key) or {} for key in ("apiVersion", "kind", "metadata", "spec", "status")
    }


def _values(index: kopf.Index[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for store in index.values() for obj in store]


@kopf.daemon(GROUP, VERSION, PLURAL, initial_delay=0.5)
async def run_pool(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    name: str,
    logger: kopf.Logger,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Reconcile the pool, then sleep ``memo.settings.pool_interval_s``, until it is deleted.

    ``body`` and the indexes are kopf's live views, current at every reconcile. The blocking
    reconcile runs in a worker thread (as kopf runs a sync timer handler), so this loop itself
    exits the moment kopf stops it (a deleted pool's finalizer goes at once). An exception ends
    the loop; kopf starts it again after its backoff, as it retries a failed timer.
    """
    settings: OperatorSettings = memo.settings
    while not stopped:
        await asyncio.to_thread(reconcile_pool, body, name, logger, **kwargs)
        await stopped.wait(settings.pool_interval_s)


def reconcile_pool(body: kopf.Body, name: str, logger: kopf.Logger, **kwargs: Any) -> None:
    """Plan and apply; the reconciler posts an Event for every non-noop decision.

    kopf passes the indexes above as keyword arguments named after them.
    """
    reconciler = _reconciler(name)
    started = time.perf_counter()
    cluster = ClusterReads(
        _values(kwargs["pytorchjob_index"]) + _values(kwargs["trainjob_index"]),
        _values(kwargs["training_pod_index"]) + _values(kwargs["jobset_pod_index"]),
    )
    try:
        result = reconciler.reconcile(dict(body), cluster=cluster)
    except Exception:
        metrics.ERRORS.labels(name).inc()
        raise
    decision, obs = result.plan, result.observation
    metrics.record_losses(name, result.lost, result.recovered)
    if obs is not None and (decision is not None or obs.provider_error):
        metrics.record(
            name,
            obs,
            result.pool.gpu_resource,
            time.perf_counter() - started,
            result.actions,
            result.job_waits,
        )
    if decision is not None and decision.decision is not Decision.NOOP:
        logger.info(f"{decision.decision.value}: {'; '.join(decision.reasons)}")
    elif obs is not None and obs.provider_error:
        logger.warning(obs.provider_error)
