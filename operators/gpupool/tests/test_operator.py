"""The kopf operator itself, running against the real API server."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubeforge.testing.builders import kwok_pool, parse_metrics, pytorchjob, training_pod
from kubeforge.testing.controlplane import free_port
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd

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
        stdin=json.dumps(kwok_pool(pool)),
    )
    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBEFORGE_RECONCILE_INTERVAL", "1")
    monkeypatch.setenv("KUBEFORGE_METRICS_PORT", str(port))
    monkeypatch.setenv("KUBEFORGE_METRICS_ADDR", "127.0.0.1")
    pytorchjob("bert").namespace(namespace).workers(1).gpus(8).pool(pool).submit(api_client)

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

            # The job's pods are bound (as the scheduler would): its queue wait is measured once.
            for kind, node in zip(("master", "worker"), sorted(pool_nodes()), strict=True):
                bound = training_pod("bert", kind).named(f"bert-{kind}-0")
                bound.on(node.removeprefix("node/")).create(api_client, namespace)
            wait_key = ("kubeforge_pool_job_wait_seconds_count", (("pool", pool),))

            def waited() -> bool:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return parse_metrics(r.read().decode()).get(wait_key) == 1

            wait_for(waited, timeout=30)
            time.sleep(2)  # two more reconciles: the same job is not measured twice
            assert waited()
            # Delete while the operator runs: it removes its own finalizer.
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        assert runner.exception is None
        samples = parse_metrics(text)
        assert samples[("kubeforge_pool_nodes", (("pool", pool), ("state", "gpu_ready")))] == 2
        up = (("direction", "up"), ("pool", pool), ("reason", "gang_demand"))
        assert samples[("kubeforge_pool_scale_events_total", up)] == 2
        assert samples[("kubeforge_pool_gpus", (("pool", pool), ("state", "allocatable")))] == 16
        assert samples[("kubeforge_pool_pending_gang_gpus", (("pool", pool),))] == 16
        assert samples[("kubeforge_pool_decision_seconds_count", (("pool", pool),))] >= 1
        states = {labels[1][1] for name, labels in samples if name == "kubeforge_pool_nodes"}
        assert {"requested", "registering", "gpu_ready", "cordoned", "draining", "failed"} <= states
    finally:
        for node in pool_nodes():
            kubectl("delete", node)
