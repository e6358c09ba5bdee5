"""The chart's opt-in packing profile, loaded by the real kube-scheduler, packs GPU pods.

The profile (NodeResourcesFit ``MostAllocated``) is what the pool simulator found to pay fewer
node-hours (``make bench-gpupool``: fragments on partly used nodes); here a control plane of
its own runs kube-scheduler with the rendered ``config.yaml`` plus a default profile beside it,
so the same scheduler shows both behaviours on the same kind of nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.testing.controlplane import ControlPlane
from kubeforge.testing.fixtures import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
PACKING_VALUES = ROOT / "charts" / "kubeforge" / "ci" / "packing-scheduler-values.yaml"
GPU = "nvidia.com/gpu"


def gpu_node(name: str, group: str) -> dict[str, Any]:
    """A Ready node of 8 GPUs (no kubelet: the scheduler only reads the object)."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", GPU: "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"group": group}},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def gpu_pod(name: str, scheduler: str, group: str) -> dict[str, Any]:
    """A pod of 2 GPUs for ``scheduler``, on the nodes of ``group``."""
    limits = {GPU: "2", "cpu": "1", "memory": "1Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "nodeSelector": {"group": group},
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "c", "image": "img", "resources": {"limits": limits, "requests": limits}}
            ],
        },
    }


def test_the_packing_profile_puts_gpu_pods_on_the_fullest_node(
    chart: Any, kube_bin_dir: Path
) -> None:
    from kubernetes import client, config

    objects = chart.render("kf", "ml", values=PACKING_VALUES)
    profile = chart.find(objects, "ConfigMap", "-scheduler-profile")
    scheduler_config = yaml.safe_load(profile["data"]["config.yaml"])
    (packing,) = scheduler_config["profiles"]
    assert packing["schedulerName"] == "kubeforge-packing"
    scheduler_config["profiles"].append({"schedulerName": "default-scheduler"})

    with ControlPlane(
        bin_dir=kube_bin_dir, with_controller_manager=False, scheduler_config=scheduler_config
    ) as plane:
        api = client.CoreV1Api(config.new_client_from_config(str(plane.kubeconfig)))
        # No controller manager: the namespace's default ServiceAccount is ours to make.
        api.create_namespaced_service_account("default", {"metadata": {"name": "default"}})
        for name, group in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")):
            api.create_node(gpu_node(name, group))
            # TaintNodesByCondition marks a new node not-ready; no node controller lifts it here.
            api.patch_node(name, {"spec": {"taints": []}})

        def place(pod: str, scheduler: str, group: str) -> str:
            api.create_namespaced_pod("default", gpu_pod(pod, scheduler, group))
            wait_for(lambda: bool(api.read_namespaced_pod(pod, "default").spec.node_name), 60)
            return str(api.read_namespaced_pod(pod, "default").spec.node_name)

        packed = [place(f"packed-{i}", "kubeforge-packing", "a") for i in range(3)]
        spread = [place(f"spread-{i}", "default-scheduler", "b") for i in range(2)]
        assert len(set(packed)) == 1, f"the packing profile spread the pods: {packed}"
        assert len(set(spread)) == 2, f"the default profile packed the pods: {spread}"
