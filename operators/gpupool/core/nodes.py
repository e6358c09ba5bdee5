"""Pure builders of the Node objects the kwok provider creates."""

from __future__ import annotations

from typing import Any

POOL_LABEL = "kubeforge.io/pool"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "kubeforge"


def node_name(pool: str, index: int) -> str:
    """Deterministic node names, so a repeated create finds the node it already made."""
    return f"{pool}-{index:04d}"


def build_node(
    pool: str,
    index: int,
    labels: dict[str, str],
    taints: list[dict[str, str]],
    product: str = "",
) -> dict[str, Any]:
    """A simulated Node of the pool: labelled, tainted, no GPUs advertised yet."""
    all_labels = {**labels, POOL_LABEL: pool, MANAGED_LABEL: MANAGER, "type": "kwok"}
    if product:
        all_labels["nvidia.com/gpu.product"] = product
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(pool, index),
            "labels": all_labels,
            # A real kwok controller picks up nodes with this annotation and runs their pods.
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": {"taints": [dict(t) for t in taints]},
    }


def gpu_status_patch(resource: str, gpus: int) -> dict[str, Any]:
    """The status patch that makes a node advertise its GPUs (what a device plugin does)."""
    amounts = {resource: str(gpus), "cpu": "64", "memory": "512Gi", "pods": "110"}
    return {
        "status": {
            "capacity": amounts,
            "allocatable": amounts,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KwokReady"}],
        }
    }
