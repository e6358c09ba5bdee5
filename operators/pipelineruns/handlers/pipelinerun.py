"""kopf glue of Pipeline and PipelineRun; loaded by :mod:`kubeforge.operators.main`.

Thin: each handler hands the object to the :class:`RunReconciler`, built once per operator
start from ``memo.settings`` (read by main's startup handler) and the system clock. A kopf
timer's interval is fixed when its decorator runs (at import), so each PipelineRun gets a daemon
that sleeps ``settings.run_interval_s`` between reconciles, as the GPU pool's does.
May import everything of the controller and the operators' shared modules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.operators.clock import SYSTEM_CLOCK
from kubeforge.operators.pipelineruns.api.crd import GROUP, PIPELINE, RUN, VERSION
from kubeforge.operators.pipelineruns.clients.reconciler import RunReconciler
from kubeforge.operators.pipelineruns.core.manifests import RUN_LABEL
from kubeforge.operators.settings import OperatorSettings

_state: dict[str, RunReconciler] = {}


def _reconciler(memo: kopf.Memo) -> RunReconciler:
    if "r" not in _state:
        settings: OperatorSettings = memo.settings
        _state["r"] = RunReconciler(api_client(), settings, SYSTEM_CLOCK)
    return _state["r"]


@kopf.on.startup()
def fresh_reconciler(**_: Any) -> None:
    """Use the settings (image, MLflow, KFP host) read anew each time the operator starts."""
    _state.clear()


@kopf.on.resume(GROUP, VERSION, PIPELINE.plural)
@kopf.on.create(GROUP, VERSION, PIPELINE.plural)
@kopf.on.update(GROUP, VERSION, PIPELINE.plural, field="spec")
def reconcile_pipeline(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Resolve the pipeline and write whether runs can use it."""
    _reconciler(memo).reconcile_pipeline(dict(body))


@kopf.daemon(GROUP, VERSION, RUN.plural, initial_delay=0.2)
async def follow_run(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Start the run once; then mirror its Job or KFP run into status, every interval.

    Async so that a waiting run holds no thread (a sync daemon keeps one of kopf's few worker
    threads for its whole life); each reconcile runs in a worker thread, as a timer's did.
    An exception ends the loop; kopf starts it again after its backoff, as it retries a timer.
    """
    settings: OperatorSettings = memo.settings
    while not stopped:
        await asyncio.to_thread(_reconciler(memo).reconcile_run, dict(body))
        await stopped.wait(settings.run_interval_s)


@kopf.on.event("batch", "v1", "jobs", labels={RUN_LABEL: kopf.PRESENT})
def job_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """A run's Job changed: mirror it now instead of at the next tick."""
    reconciler = _reconciler(memo)
    run = reconciler.get_run(namespace or "", labels[RUN_LABEL])
    if run is not None and (run.get("status") or {}).get("backend") == "job":
        reconciler.reconcile_run(run)


@kopf.on.delete(GROUP, VERSION, RUN.plural)
def delete_run(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Terminate the KFP run or delete the Job before the PipelineRun goes (finalizer)."""
    try:
        _reconciler(memo).delete_run(dict(body))
    except KubeforgeError as exc:  # e.g. KFP unreachable: keep the finalizer and retry
        raise kopf.TemporaryError(f"cannot clean up yet: {exc}", delay=30) from exc
