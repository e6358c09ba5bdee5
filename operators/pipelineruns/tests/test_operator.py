"""The operator process runs PipelineRuns: kubectl apply → one Job → status → delete cleans up."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from kubeforge.testing.fixtures import Kubectl, wait_for

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).parents[3] / "manifests" / "examples"


def test_operator_runs_an_applied_pipelinerun_and_its_finalizer_cleans_up(
    pipeline_crds: None,
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    namespace: str,
    kwok_node: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kopf.testing import KopfRunner
    from kubernetes import client

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBEFORGE_RUN_INTERVAL", "30")  # the Job watch mirrors it sooner
    monkeypatch.setenv("KUBEFORGE_RECONCILE_INTERVAL", "1")
    monkeypatch.setenv("KUBEFORGE_METRICS_PORT", "0")
    monkeypatch.setenv("KUBEFORGE_IMAGE", "registry.example/kubeforge:e2e")
    monkeypatch.delenv("KUBEFORGE_KFP_HOST", raising=False)
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)

    def status(kind: str, name: str) -> dict[str, Any]:
        out = kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        return dict(json.loads(out).get("status", {}))

    def jobs() -> list[str]:
        return [j.metadata.name for j in batch.list_namespaced_job(namespace).items]

    def pods() -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod(namespace).items]

    args = ["run", "--standalone", "-A", "-m", "kubeforge.operators.main"]
    with KopfRunner(args, timeout=120) as runner:
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
        wait_for(lambda: status("pipeline", "digits").get("phase") == "Ready", timeout=60)
        wait_for(lambda: jobs() == ["digits-1"], timeout=60)
        image = batch.read_namespaced_job("digits-1", namespace).spec.template.spec.containers[0]
        assert image.image == "registry.example/kubeforge:e2e"
        # The real Job controller runs the pod to completion; the Job watch mirrors it well
        # before the daemon's next 30 s tick.
        wait_for(lambda: status("pipelinerun", "digits-1").get("phase") == "Succeeded", 15)
        assert len(pods()) == 1
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
        assert jobs() == ["digits-1"]  # re-applied: still one run
        kubectl("delete", "pipelinerun", "digits-1", "-n", namespace, "--timeout=60s")
        wait_for(lambda: jobs() == [] and pods() == [], timeout=60)
    assert runner.exception is None


def test_a_namespace_holding_a_started_run_really_goes_away(
    pipeline_crds: None,
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    kwok_node: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kopf.testing import KopfRunner
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBEFORGE_METRICS_PORT", "0")
    monkeypatch.delenv("KUBEFORGE_KFP_HOST", raising=False)
    core = client.CoreV1Api(api_client)
    # Its own namespace: deleting it is what the test does.
    doomed = f"kf-test-gone-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": doomed}})

    def started() -> bool:
        out = kubectl("get", "pipelinerun", "digits-1", "-n", doomed, "-o", "json").stdout
        return bool(json.loads(out).get("status", {}).get("backend"))

    def gone() -> bool:
        try:
            core.read_namespace(doomed)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    args = ["run", "--standalone", "-A", "-m", "kubeforge.operators.main"]
    with KopfRunner(args, timeout=120) as runner:
        kubectl("apply", "-n", doomed, "-f", str(EXAMPLES))
        wait_for(started, timeout=60)
        # The namespace controller deletes the run; the operator's finalizer lets it go.
        core.delete_namespace(doomed)
        wait_for(gone, timeout=120)
    assert runner.exception is None
