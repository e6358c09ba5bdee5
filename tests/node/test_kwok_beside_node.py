"""kwok's simulated GPU nodes on the same cluster as the real node (issue 15, item 3).

kwok manages only the nodes annotated ``kwok.x-k8s.io/node: fake`` (the ones a GPUNodePool's
kwok provider creates) and the pods bound there; the real node, its kubelet's status and its pods
are left alone. CPU work really runs in a container on the real node while a GPU pool grows kwok
GPU nodes for a PyTorchJob gang that the real training operator runs there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.builders import gpu_pool, job_conditions, job_pods, submit_gang
from kubeforge.testing.controllers import Kwok, TrainingOperator
from kubeforge.testing.controlplane import stop_process_groups
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd
from kubeforge.testing.node import BUSYBOX_IMAGE, POD_CIDR, on_real_node

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).parents[2] / "manifests" / "crds"


@pytest.fixture
def operator(kubectl: Kubectl, api_client: Any, kubeconfig: Path, tmp_path: Path) -> Iterator[Path]:
    """The Kubeforge operator as a process on this machine, in a peering of its own; its log."""
    for crd in ("kubeforge.io_gpunodepools.yaml", "kopf.dev_clusterkopfpeerings.yaml"):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS / crd))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    wait_for_crd(api_client, "clusterkopfpeerings.kopf.dev")
    peering = f"beside-{secrets.token_hex(3)}"
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
    kubectl("apply", "-f", "-", stdin=json.dumps({**body, "metadata": {"name": peering}}))
    log = tmp_path / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBEFORGE_PEERING": peering,
        "KUBEFORGE_RECONCILE_INTERVAL": "1",
        "KUBEFORGE_METRICS_PORT": "0",
    }
    kopf = Path(sys.executable).parent / "kopf"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(kopf), "run", "--all-namespaces", "-m", "kubeforge.operators.main"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield log
    stop_process_groups([proc], grace_s=30)
    kubectl("delete", "clusterkopfpeering", peering, "--ignore-not-found")


def _ready(node: Any) -> Any:
    return next(c for c in node.status.conditions if c.type == "Ready")


@pytest.mark.timeout(300)
def test_real_pod_runs_on_the_real_node_while_a_pool_grows_kwok_gpu_nodes_for_a_gang(
    real_node: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
    pytorchjob_crd: str,
    operator: Path,
    api_client: Any,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    core = client.CoreV1Api(api_client)
    work = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cpu-work"},
        "spec": on_real_node(
            {
                "containers": [
                    {
                        "name": "main",
                        "image": BUSYBOX_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "i=0; while true; do i=$((i+1)); sleep 0.2; done"],
                    }
                ]
            }
        ),
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(work))
    wait_for(lambda: core.read_namespaced_pod("cpu-work", namespace).status.phase == "Running", 60)

    pool = f"beside-{secrets.token_hex(3)}"
    # Its nodes stay after the gang finishes, for the checks below.
    body = gpu_pool(pool).kwok(gpuDelay="2s").serving().scale_down(idleAfter="1h").obj()
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    try:
        submit_gang(api_client, namespace, pool, workers=1)  # Master + 1 Worker, 8 GPUs each

        def pool_nodes() -> set[str]:
            nodes = core.list_node(label_selector=f"kubeforge.io/pool={pool}").items
            return {n.metadata.name for n in nodes}

        wait_for(lambda: len(pool_nodes()) == 2, timeout=90)
        # Every rank bound to one of the pool's nodes and given a running status by kwok.
        seen: dict[str, Any] = {}

        def ranks_ran() -> bool:
            for rank in job_pods(api_client, namespace, "train"):
                if rank.status.phase in ("Running", "Succeeded") and rank.status.pod_ip:
                    seen.setdefault(rank.metadata.name, rank)
            return len(seen) == 2

        wait_for(ranks_ran, timeout=120)
        wait_for(
            lambda: job_conditions(api_client, namespace, "train").get("Succeeded") == "True", 90
        )

        # The gang ran on kwok's GPU nodes: kwok gave its pods their status (no container runtime,
        # addresses outside the real node's pod range); none of them touched the real node.
        gpu_nodes = pool_nodes()
        assert len(gpu_nodes) == 2
        assert {rank.spec.node_name for rank in seen.values()} == gpu_nodes
        for rank in seen.values():
            assert ipaddress.ip_address(rank.status.pod_ip) not in ipaddress.ip_network(POD_CIDR)
            for status in rank.status.container_statuses or []:
                assert not (status.container_id or "").startswith("containerd://")
        for name in pool_nodes():
            gpu_node = core.read_node(name)
            assert gpu_node.status.allocatable["nvidia.com/gpu"] == "8"
            assert gpu_node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"

        # Meanwhile the CPU work kept running in its container on the real node, the kubelet's.
        pod = core.read_namespaced_pod("cpu-work", namespace)
        assert pod.spec.node_name == real_node
        assert pod.status.phase == "Running"
        (status,) = pod.status.container_statuses
        assert status.container_id.startswith("containerd://")
        assert status.restart_count == 0 and status.state.running is not None
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(POD_CIDR)
        node = core.read_node(real_node)
        assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
        assert _ready(node).status == "True" and _ready(node).reason == "KubeletReady"
        assert node.status.node_info.container_runtime_version.startswith("containerd://")
        assert "nvidia.com/gpu" not in (node.status.allocatable or {})
        # Through the apiserver to the real kubelet and into the real container.
        out = kubectl("exec", "-n", namespace, "cpu-work", "--", "echo", "real").stdout
        assert out.strip() == "real"
    finally:
        kubectl("delete", "gpunodepool", pool, "--wait=false", check=False)
        kubectl("delete", "nodes", "-l", f"kubeforge.io/pool={pool}", "--ignore-not-found")
        print(operator.read_text(errors="replace")[-3000:])
