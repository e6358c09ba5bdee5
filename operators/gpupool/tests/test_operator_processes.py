"""The operator process (``kopf run -m kubeforge.operators.main``) killed and restarted, and two
replicas side by side, against the real API server.

The jobs' pods are the real training operator's; the pools' GPUs take an hour to appear, so the
pods stay Pending while the nodes are in flight.
"""

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

from kubeforge.operators.gpupool.clients.kwok import KwokProvider
from kubeforge.testing.builders import (
    GPU,
    gpu_pool,
    job_pods,
    parse_metrics,
    scale_up_events,
    submit_gang,
)
from kubeforge.testing.controllers import TrainingOperator
from kubeforge.testing.controlplane import free_port, stop_process_groups
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd

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
def applied_pool(kubectl: Kubectl, api_client: Any, **kwok: str) -> Iterator[str]:
    """A kwok pool (``kwok`` fields, e.g. ``gpuDelay="1h"``) serving the jobs that select it."""
    kubectl("apply", "--server-side", "-f", str(CRDS / "kubeforge.io_gpunodepools.yaml"))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"proc-{secrets.token_hex(3)}"
    body = gpu_pool(name).kwok(**kwok).serving().obj()
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
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


@contextlib.contextmanager
def cluster_peering(kubectl: Kubectl, api_client: Any) -> Iterator[str]:
    """A fresh ``ClusterKopfPeering`` of its own, so tests' replicas never see each other."""
    kubectl("apply", "--server-side", "-f", str(CRDS / "kopf.dev_clusterkopfpeerings.yaml"))
    wait_for_crd(api_client, "clusterkopfpeerings.kopf.dev")
    name = f"peers-{secrets.token_hex(3)}"
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    try:
        yield name
    finally:
        kubectl("delete", "clusterkopfpeering", name, "--ignore-not-found")


def peer_records(kubectl: Kubectl, peering: str) -> list[tuple[int, int]]:
    """(priority, lifetime in s) of each replica in the peering object (dead ones until cleaned)."""
    obj = json.loads(kubectl("get", "clusterkopfpeering", peering, "-o", "json").stdout)
    peers = (obj.get("status") or {}).values()
    return sorted((int(p["priority"]), int(p["lifetime"])) for p in peers)


def pool_nodes(kubectl: Kubectl, pool: str) -> list[str]:
    out = kubectl("get", "nodes", "-l", f"kubeforge.io/pool={pool}", "-o", "name").stdout
    return sorted(out.split())


def test_killed_mid_scale_up_and_restarted_repeats_nothing(
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    pytorchjob_crd: str,
    namespace: str,
    tmp_path: Path,
    training_operator: TrainingOperator,
) -> None:
    # GPUs take an hour to appear: the scale-up stays in flight for the whole test.
    with applied_pool(kubectl, api_client, gpuDelay="1h") as pool:
        # What a crashed operator left behind: one of the job's two nodes already created.
        KwokProvider(api_client, pool, GPU, 8, gpu_delay_s=3600).add_nodes(1, now=time.time())
        submit_gang(api_client, namespace, pool, workers=1)  # 2 nodes of 8 GPUs
        # The training operator made both pods; Pending, they are still the job's demand.
        wait_for(lambda: len(job_pods(api_client, namespace, "train")) == 2, timeout=60)
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
            assert status["jobs"][0]["placement"] == "waiting"
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        finally:
            second.stop()
        scale_ups = scale_up_events(kubectl, pool)
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
    training_operator: TrainingOperator,
) -> None:
    with (
        cluster_peering(kubectl, api_client) as peering,
        applied_pool(kubectl, api_client) as pool,
    ):
        # The leader first: a replica alone in the peering rightly acts, so the standby starts
        # only once the leader's record is there (started the other way round on a loaded
        # machine, the standby once planned the pool before the leader had registered).
        high = Operator(
            kubeconfig,
            tmp_path / "high.log",
            KUBEFORGE_PEERING=peering,
            KUBEFORGE_PEERING_PRIORITY="20",
        )
        started = [high]
        try:
            wait_for(lambda: peer_records(kubectl, peering) == [(20, 60)], timeout=60)
            low = Operator(
                kubeconfig,
                tmp_path / "low.log",
                KUBEFORGE_PEERING=peering,
                KUBEFORGE_PEERING_PRIORITY="10",
            )
            started.append(low)
            # kopf's own peer lifetime (60 s) unless KUBEFORGE_PEERING_LIFETIME is set.
            wait_for(lambda: peer_records(kubectl, peering) == [(10, 60), (20, 60)], timeout=60)
            submit_gang(api_client, namespace, pool, workers=1)
            wait_for(lambda: high.decisions(pool) >= 5, timeout=60)
            assert len(pool_nodes(kubectl, pool)) == 2
            assert low.proc.poll() is None  # still running, yet it never planned the pool
            assert low.decisions(pool) == 0
            assert "Pausing operations in favour of" in low.log.read_text()
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        finally:
            for operator in started:
                operator.stop()


# Short enough for a test, long enough that a slow keep-alive on a busy machine does not wake the
# standby early (kopf renews 5-10 s before expiry). The chart keeps kopf's 60 s by default.
LIFETIME_S = 10


def test_standby_takes_over_when_the_active_replica_dies(
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    pytorchjob_crd: str,
    namespace: str,
    tmp_path: Path,
    training_operator: TrainingOperator,
) -> None:
    # GPUs take an hour to appear: the first job's nodes are still in flight at the takeover.
    with (
        cluster_peering(kubectl, api_client) as peering,
        applied_pool(kubectl, api_client, gpuDelay="1h") as pool,
    ):
        env = {"KUBEFORGE_PEERING": peering, "KUBEFORGE_PEERING_LIFETIME": str(LIFETIME_S)}
        high = Operator(kubeconfig, tmp_path / "high.log", KUBEFORGE_PEERING_PRIORITY="20", **env)
        started = [high]
        try:
            submit_gang(api_client, namespace, pool, workers=1, name="first")  # 2 nodes of 8 GPUs
            wait_for(lambda: len(pool_nodes(kubectl, pool)) == 2, timeout=60)
            standby = Operator(
                kubeconfig, tmp_path / "low.log", KUBEFORGE_PEERING_PRIORITY="10", **env
            )
            started.append(standby)
            pair = [(10, LIFETIME_S), (20, LIFETIME_S)]
            wait_for(lambda: peer_records(kubectl, peering) == pair, timeout=60)
            wait_for(
                lambda: "Pausing operations in favour of" in standby.log.read_text(), timeout=30
            )
            planned = high.decisions(pool)
            wait_for(lambda: high.decisions(pool) >= planned + 3, timeout=30)
            assert standby.decisions(pool) == 0  # standing by while the active one plans

            high.kill()
            killed = time.monotonic()
            wait_for(lambda: standby.decisions(pool) >= 1, timeout=LIFETIME_S + 40)
            print(f"standby planned the pool {time.monotonic() - killed:.1f} s after the kill")
            assert "Resuming operations after the pause" in standby.log.read_text()
            # The dead replica's record expired and was cleaned out of the peering.
            wait_for(lambda: peer_records(kubectl, peering) == [(10, LIFETIME_S)], timeout=30)
            planned = standby.decisions(pool)
            wait_for(lambda: standby.decisions(pool) >= planned + 3, timeout=30)
            assert len(pool_nodes(kubectl, pool)) == 2  # the in-flight nodes not requested again

            submit_gang(api_client, namespace, pool, workers=1, name="second")
            wait_for(lambda: len(pool_nodes(kubectl, pool)) == 4, timeout=60)
            planned = standby.decisions(pool)
            wait_for(lambda: standby.decisions(pool) >= planned + 3, timeout=30)
            assert len(pool_nodes(kubectl, pool)) == 4  # each job's nodes requested once
            status = json.loads(kubectl("get", "gpool", pool, "-o", "json").stdout)["status"]
            assert status["nodes"]["registering"] == 4
            assert sorted((j["job"], j["placement"]) for j in status["jobs"]) == [
                (f"{namespace}/first", "waiting"),
                (f"{namespace}/second", "waiting"),
            ]
            kubectl("delete", "gpool", pool, "--wait=true", "--timeout=60s")
        finally:
            for operator in started:
                operator.kill()
        # Two scale-ups in all, one per job: the first by the dead replica, the second by the
        # standby; neither repeated (an identical Event would have count 2).
        scale_ups = sorted(
            (e["count"], e["message"].split(":")[0], e["message"].split(": ")[1].split(" (")[0])
            for e in scale_up_events(kubectl, pool)
        )
        assert scale_ups == [
            (1, "scale up by 2", f"{namespace}/first"),
            (1, "scale up by 2", f"{namespace}/second"),
        ]


def test_too_short_peering_lifetime_stops_the_operator(
    kubectl: Kubectl, kubeconfig: Path, tmp_path: Path
) -> None:
    # A lifetime this short would let a slow keep-alive wake the standby beside the active one.
    operator = Operator(
        kubeconfig,
        tmp_path / "short.log",
        KUBEFORGE_PEERING=f"short-{secrets.token_hex(3)}",
        KUBEFORGE_PEERING_LIFETIME="2",
    )
    try:
        assert operator.proc.wait(timeout=120) != 0
    finally:
        operator.kill()
    assert "KUBEFORGE_PEERING_LIFETIME must be at least 5 s, not 2" in operator.log.read_text()
