"""The kopf operator itself, running against the real API server."""

from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.core.testing.controlplane import free_port
from kubeforge.core.testing.fixtures import Kubectl, wait_for, wait_for_crd

pytestmark = pytest.mark.cluster
MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"


def test_operator_scales_a_pool_and_exports_metrics(
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    pytorchjob_crd: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kopf.testing import KopfRunner

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    pool = f"op-{secrets.token_hex(3)}"
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "kubeforge.io/v1alpha1",
                "kind": "GPUNodePool",
                "metadata": {"name": pool},
                "spec": {
                    "gpu": {"perNode": 8},
                    "provider": {"kwok": {}},
                    "jobSelector": {"nodeSelector": {"kubeforge.io/pool": pool}},
                },
            }
        ),
    )
    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBEFORGE_RECONCILE_INTERVAL", "1")
    monkeypatch.setenv("KUBEFORGE_METRICS_PORT", str(port))
    monkeypatch.setenv("KUBEFORGE_METRICS_ADDR", "127.0.0.1")
    submit_pytorchjob(
        api_client,
        build_pytorchjob(
            "bert",
            namespace,
            "img",
            ["train"],
            workers=1,
            gpus_per_replica=8,
            node_selector={"kubeforge.io/pool": pool},
        ),
    )

    def pool_nodes() -> list[str]:
        out = kubectl("get", "nodes", "-l", f"kubeforge.io/pool={pool}", "-o", "name").stdout
        return out.split()

    args = ["run", "--standalone", "-A", "-m", "kubeforge.operators.main"]
    try:
        with KopfRunner(args, timeout=120) as runner:
            wait_for(lambda: len(pool_nodes()) == 2, timeout=60)

            def ready() -> bool:
                status = json.loads(kubectl("get", "gpool", pool, "-o", "json").stdout)
                return bool(status.get("status", {}).get("readyNodes") == 2)

            wait_for(ready, timeout=30)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            assert len(pool_nodes()) == 2  # no double scale-up while the operator kept running
            # Delete while the operator runs: it removes its own finalizer.
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        assert runner.exception is None
        assert f'kubeforge_pool_nodes{{pool="{pool}",state="gpu_ready"}} 2.0' in text
        assert f'kubeforge_pool_scale_events_total{{direction="up",pool="{pool}"}} 2.0' in text
        assert f'kubeforge_pool_pending_gang_gpus{{pool="{pool}"}} 16.0' in text
        assert f'kubeforge_pool_decision_seconds_count{{pool="{pool}"}}' in text
    finally:
        for node in pool_nodes():
            kubectl("delete", node)
