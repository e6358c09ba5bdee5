"""The operator process (``kopf run -m kubeforge.operators.main``) killed and restarted, and two
replicas side by side, against the real API server."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.core.testing.controlplane import free_port, stop_process_groups
from kubeforge.core.testing.fixtures import Kubectl, wait_for, wait_for_crd
from kubeforge.operators.gpupool.clients.kwok import KwokProvider
from kubeforge.operators.gpupool.tests.test_operator import parse_metrics

pytestmark = pytest.mark.cluster
CRDS = Path(__file__).parents[3] / "manifests" / "crds"


class Operator:
    """One operator process with its own metrics port and log file."""

    def __init__(self, kubeconfig: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.log = log
        kopf = Path(sys.executable).parent / "kopf"
        environ = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBEFORGE_RECONCILE_INTERVAL": "1",
            "KUBEFORGE_METRICS_PORT": str(self.port),
            "KUBEFORGE_METRICS_ADDR": "127.0.0.1",
            **env,
        }
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(kopf), "run", "--all-namespaces", "-m", "kubeforge.operators.main"],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def decisions(self, pool: str) -> float:
        """How many times this process planned ``pool`` (0 before its metrics server is up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                samples = parse_metrics(r.read().decode())
        except OSError:
            return 0.0
        return samples.get(("kubeforge_pool_decision_seconds_count", (("pool", pool),)), 0.0)

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a crashed or evicted pod."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop_process_groups([self.proc], grace_s=30)


@contextlib.contextmanager
def kwok_pool(kubectl: Kubectl, api_client: Any, spec: dict[str, Any]) -> Iterator[str]:
    kubectl("apply", "--server-side", "-f", str(CRDS / "kubeforge.io_gpunodepools.yaml"))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"proc-{secrets.token_hex(3)}"
    spec = {**spec, "jobSelector": {"nodeSelector": {"kubeforge.io/pool": name}}}
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": name},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps({**body, "spec": spec}))
    try:
        yield name
    finally:
        # The operator's finalizer outlives a killed operator: drop it, then delete.
        kubectl(
            "patch",
            "gpunodepool",
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kubectl("delete", "gpunodepool", name, "--ignore-not-found")
        kubectl("delete", "nodes", "-l", f"kubeforge.io/pool={name}", "--ignore-not-found")


def pool_nodes(kubectl: Kubectl, pool: str) -> list[str]:
    out = kubectl("get", "nodes", "-l", f"kubeforge.io/pool={pool}", "-o", "name").stdout
    return sorted(out.split())


def submit(api_client: Any, namespace: str, pool: str, workers: int) -> None:
    submit_pytorchjob(
        api_client,
        build_pytorchjob(
            "train",
            namespace,
            "img",
            ["train"],
            workers=workers,
            gpus_per_replica=8,
            node_selector={"kubeforge.io/pool": pool},
        ),
    )


def test_killed_mid_scale_up_and_restarted_repeats_nothing(
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    pytorchjob_crd: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    # GPUs take an hour to appear: the scale-up stays in flight for the whole test.
    with kwok_pool(
        kubectl, api_client, {"gpu": {"perNode": 8}, "provider": {"kwok": {"gpuDelay": "1h"}}}
    ) as pool:
        # What a crashed operator left behind: one of the job's two nodes already created.
        KwokProvider(api_client, pool, gpu_delay_s=3600).add_nodes(1, now=time.time())
        submit(api_client, namespace, pool, workers=1)  # 2 nodes of 8 GPUs
        env = {"KUBEFORGE_PEERING": f"restart-{pool}"}
        first = Operator(kubeconfig, tmp_path / "first.log", **env)
        try:
            wait_for(lambda: len(pool_nodes(kubectl, pool)) == 2, timeout=60)
            wait_for(lambda: first.decisions(pool) >= 3, timeout=30)
        finally:
            first.kill()
        assert len(pool_nodes(kubectl, pool)) == 2
        second = Operator(kubeconfig, tmp_path / "second.log", **env)
        try:
            wait_for(lambda: second.decisions(pool) >= 5, timeout=60)
            assert len(pool_nodes(kubectl, pool)) == 2  # nothing repeated
            status = json.loads(kubectl("get", "gpool", pool, "-o", "json").stdout)["status"]
            assert status["nodes"]["registering"] == 2
            assert status["jobs"][0]["decision"] == "waiting"
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        finally:
            second.stop()
        scale_ups = json.loads(
            kubectl(
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                f"involvedObject.name={pool},reason=ScaleUp",
                "-o",
                "json",
            ).stdout
        )["items"]
        # One scale-up in all, by one node, by the first process; none after the restart.
        assert [(e["count"], e["message"].split(":")[0]) for e in scale_ups] == [
            (1, "scale up by 1")
        ]


def test_two_replicas_only_one_acts(
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    pytorchjob_crd: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    kubectl("apply", "--server-side", "-f", str(CRDS / "kopf.dev_clusterkopfpeerings.yaml"))
    wait_for_crd(api_client, "clusterkopfpeerings.kopf.dev")
    peering = f"peers-{secrets.token_hex(3)}"
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": peering},
            }
        ),
    )
    with kwok_pool(kubectl, api_client, {"gpu": {"perNode": 8}, "provider": {"kwok": {}}}) as pool:
        low = Operator(
            kubeconfig,
            tmp_path / "low.log",
            KUBEFORGE_PEERING=peering,
            KUBEFORGE_PEERING_PRIORITY="10",
        )
        high = Operator(
            kubeconfig,
            tmp_path / "high.log",
            KUBEFORGE_PEERING=peering,
            KUBEFORGE_PEERING_PRIORITY="20",
        )
        try:

            def both_registered() -> bool:
                obj = json.loads(kubectl("get", "clusterkopfpeering", peering, "-o", "json").stdout)
                return sorted(p["priority"] for p in obj.get("status", {}).values()) == [10, 20]

            wait_for(both_registered, timeout=60)
            submit(api_client, namespace, pool, workers=1)
            wait_for(lambda: high.decisions(pool) >= 5, timeout=60)
            assert len(pool_nodes(kubectl, pool)) == 2
            assert low.proc.poll() is None  # still running, yet it never planned the pool
            assert low.decisions(pool) == 0
            assert "Pausing operations in favour of" in low.log.read_text()
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        finally:
            high.stop()
            low.stop()
            kubectl("delete", "clusterkopfpeering", peering, "--ignore-not-found")
