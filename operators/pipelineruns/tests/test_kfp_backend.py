"""The KFP backend of PipelineRuns: real API server for the run, KFP REST contract for the calls."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock
from kubeforge.operators.pipelineruns.clients.reconciler import RunReconciler
from kubeforge.operators.settings import OperatorSettings
from kubeforge.testing.builders import pipelinerun
from kubeforge.testing.fixtures import Kubectl
from kubeforge.testing.kfp_contract import KfpContractServer

pytestmark = pytest.mark.cluster
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()


def _apply_run(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    run = (
        pipelinerun(name, namespace)
        .pipeline("main")
        .parameters(data_uri="gs://b/d.csv", epochs=3)
        .experiment("team-a")
    )
    kubectl("apply", "-f", "-", stdin=run.json())
    return _get(kubectl, namespace, name)


def _get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "kfrun", name, "-n", namespace, "-o", "json").stdout))


def test_a_run_is_uploaded_created_mirrored_and_terminated_through_the_kfp_api(
    pipeline_crds: None,
    kubectl: Kubectl,
    api_client: Any,
    namespace: str,
    kfp_server: KfpContractServer,
) -> None:
    settings = OperatorSettings(
        image="img", tracking_uri="http://mlflow:5000", kfp_host=kfp_server.host
    )
    reconciler = RunReconciler(api_client, settings, ManualClock(NOW))
    run = _apply_run(kubectl, namespace, "first")
    reconciler.reconcile_run(run)
    reconciler.reconcile_run(run)  # a repeated start (no status seen yet) adopts the run
    status = _get(kubectl, namespace, "first")["status"]
    assert status["backend"] == "kfp" and status["phase"] == "Pending"
    assert len(kfp_server.runs()) == 1
    run_id = status["kfpRunId"]
    assert status["url"] == f"{kfp_server.host}/#/runs/details/{run_id}"
    created = kfp_server.runs()[0]
    assert created.runtime_config.parameters["epochs"] == 3
    assert created.runtime_config.parameters["mlflow_tracking_uri"] == "http://mlflow:5000"

    kfp_server.set_run_state(run_id, "RUNNING")
    reconciler.reconcile_run(_get(kubectl, namespace, "first"))
    assert _get(kubectl, namespace, "first")["status"]["phase"] == "Running"

    # A second run of the same pipeline uploads nothing new.
    second = _apply_run(kubectl, namespace, "second")
    reconciler.reconcile_run(second)
    assert len(kfp_server.runs()) == 2

    reconciler.delete_run(_get(kubectl, namespace, "first"))  # what the finalizer does
    kfp_server.set_run_state(run_id, "CANCELED")
    ops = kfp_server.operations()
    assert ops.count("pipeline_service_create_pipeline") == 1
    assert ops.count("upload_pipeline_version") == 1  # the same IR: uploaded once
    assert ops.count("run_service_create_run") == 2
    assert "run_service_get_run" in ops
    assert ops[-1] == "run_service_terminate_run"
    assert kfp_server.violations == []


def test_an_unreachable_kfp_endpoint_fails_the_run_naming_it_and_starts_nothing(
    pipeline_crds: None, kubectl: Kubectl, api_client: Any, namespace: str
) -> None:
    from kubeforge.testing.controlplane import free_port

    host = f"http://127.0.0.1:{free_port()}"
    settings = OperatorSettings(image="img", kfp_host=host)
    reconciler = RunReconciler(api_client, settings, ManualClock(NOW))
    reconciler.reconcile_run(_apply_run(kubectl, namespace, "nowhere"))
    status = _get(kubectl, namespace, "nowhere")["status"]
    assert status["phase"] == "Failed"
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "KfpUnavailable" and host in failed["message"]
    assert "backend" not in status
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "KfpUnavailable" in events
