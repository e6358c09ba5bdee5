"""kopf glue of Pipeline and PipelineRun; loaded by :mod:`kubeforge.operators.main`."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import kopf

from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.operators.pipelineruns.api.crd import GROUP, PIPELINE, RUN, VERSION
from kubeforge.operators.pipelineruns.clients.reconciler import RunReconciler
from kubeforge.operators.pipelineruns.core.manifests import RUN_LABEL

INTERVAL_S = float(os.environ.get("KUBEFORGE_RUN_INTERVAL", "10"))
_state: dict[str, RunReconciler] = {}


def _reconciler() -> RunReconciler:
    if "r" not in _state:
        _state["r"] = RunReconciler(api_client())
    return _state["r"]


@kopf.on.startup()
def fresh_reconciler(**_: Any) -> None:
    """Read the configuration (image, MLflow, KFP host) anew each time the operator starts."""
    _state.clear()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@kopf.on.resume(GROUP, VERSION, PIPELINE.plural)
@kopf.on.create(GROUP, VERSION, PIPELINE.plural)
@kopf.on.update(GROUP, VERSION, PIPELINE.plural, field="spec")
def reconcile_pipeline(body: kopf.Body, **_: Any) -> None:
    """Resolve the pipeline and write whether runs can use it."""
    _reconciler().reconcile_pipeline(dict(body), _now())


@kopf.timer(GROUP, VERSION, RUN.plural, interval=INTERVAL_S, initial_delay=0.2)
def reconcile_run(body: kopf.Body, **_: Any) -> None:
    """Start the run once; then mirror its Job or KFP run into status."""
    _reconciler().reconcile_run(dict(body), _now())


@kopf.on.event("batch", "v1", "jobs", labels={RUN_LABEL: kopf.PRESENT})
def job_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A run's Job changed: mirror it now instead of at the next timer tick."""
    run = _reconciler().get_run(namespace or "", labels[RUN_LABEL])
    if run is not None and (run.get("status") or {}).get("backend") == "job":
        _reconciler().reconcile_run(run, _now())


@kopf.on.delete(GROUP, VERSION, RUN.plural)
def delete_run(body: kopf.Body, **_: Any) -> None:
    """Terminate the KFP run or delete the Job before the PipelineRun goes (finalizer)."""
    try:
        _reconciler().delete_run(dict(body))
    except KubeforgeError as exc:  # e.g. KFP unreachable: keep the finalizer and retry
        raise kopf.TemporaryError(f"cannot clean up yet: {exc}", delay=30) from exc
