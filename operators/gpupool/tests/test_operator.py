"""The kopf operator itself, running against the real API server.

Its PyTorchJob's pods are the real training operator's, bound by the real scheduler to the nodes
the operator added, and run by kwok.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubeforge.testing.builders import gpu_pool, job_pods, parse_metrics, pytorchjob
from kubeforge.testing.controllers import Kwok, TrainingOperator
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
    kwok: Kwok,
    training_operator: TrainingOperator,
) -> None:
    from kopf.testing import KopfRunner

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    pool = f"op-{secrets.token_hex(3)}"
    kubectl(
        "apply",
        "-f",
        "-",
        # GPUs a few seconds after a node is asked for: long enough to see the nodes in flight.
        stdin=json.dumps(gpu_pool(pool).kwok(gpuDelay="8s").serving().obj()),
    )
    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBEFORGE_RECONCILE_INTERVAL", "1")
    monkeypatch.setenv("KUBEFORGE_METRICS_PORT", str(port))
    monkeypatch.setenv("KUBEFORGE_METRICS_ADDR", "127.0.0.1")
    job = pytorchjob("bert").namespace(namespace).workers(1).gpus(8).pool(pool)
    job.runs_for("15s").submit(api_client)

    def pool_nodes() -> list[str]:
        out = kubectl("get", "nodes", "-l", f"kubeforge.io/pool={pool}", "-o", "name").stdout
        return out.split()

    args = ["run", "--standalone", "-A", "-m", "kubeforge.operators.main"]
    url = f"http://127.0.0.1:{port}/metrics"

    def metric(name: str, **labels: str) -> float | None:
        with urllib.request.urlopen(url, timeout=5) as resp:
            samples = parse_metrics(resp.read().decode())
        return samples.get((name, tuple(sorted({"pool": pool, **labels}.items()))))

    try:
        with KopfRunner(args, timeout=120) as runner:
            wait_for(lambda: len(pool_nodes()) == 2, timeout=60)
            # The nodes are in flight: the gang's 16 GPUs are pending demand.
            wait_for(lambda: metric("kubeforge_pool_pending_gang_gpus") == 16, timeout=30)
            with urllib.request.urlopen(url, timeout=5) as resp:
                in_flight = parse_metrics(resp.read().decode())

            def ready() -> bool:
                status = json.loads(kubectl("get", "gpool", pool, "-o", "json").stdout)
                return bool(status.get("status", {}).get("readyNodes") == 2)

            wait_for(ready, timeout=60)
            assert len(pool_nodes()) == 2  # no double scale-up while the operator kept running

            # The real scheduler binds the job's pods: no demand is left, its queue wait is
            # measured once.
            wait_for(lambda: metric("kubeforge_pool_pending_gang_gpus") == 0, timeout=60)
            bound = {p.spec.node_name for p in job_pods(api_client, namespace, "bert")}
            assert {f"node/{name}" for name in bound} == set(pool_nodes())
            wait_for(lambda: metric("kubeforge_pool_job_wait_seconds_count") == 1, timeout=30)
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            time.sleep(2)  # two more reconciles: the same job is not measured twice
            assert metric("kubeforge_pool_job_wait_seconds_count") == 1
            # Delete while the operator runs: it removes its own finalizer.
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        assert runner.exception is None
        registering = (("pool", pool), ("state", "registering"))
        assert in_flight[("kubeforge_pool_nodes", registering)] == 2
        samples = parse_metrics(text)
        assert samples[("kubeforge_pool_nodes", (("pool", pool), ("state", "gpu_ready")))] == 2
        up = (("direction", "up"), ("pool", pool), ("reason", "gang_demand"))
        assert samples[("kubeforge_pool_scale_events_total", up)] == 2
        assert samples[("kubeforge_pool_gpus", (("pool", pool), ("state", "allocatable")))] == 16
        assert samples[("kubeforge_pool_gpus", (("pool", pool), ("state", "allocated")))] == 16
        assert samples[("kubeforge_pool_decision_seconds_count", (("pool", pool),))] >= 1
        states = {labels[1][1] for name, labels in samples if name == "kubeforge_pool_nodes"}
        assert {"requested", "registering", "gpu_ready", "cordoned", "draining", "failed"} <= states
    finally:
        for node in pool_nodes():
            kubectl("delete", node)
