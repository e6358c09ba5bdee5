"""Cluster API bookkeeping: a MachineDeployment's replicas and Machines as pool members. Pure.

Nodes are matched to Machines through the Machine's ``status.nodeRef``. Everything is derived
from the objects themselves (``spec.replicas``, Machines, their annotations), never from the
operator's memory, so a restarted operator sees exactly what the one before it left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.members import PoolMember

GROUP = "cluster.x-k8s.io"
VERSION = "v1beta2"
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"
DELETE_MACHINE = "cluster.x-k8s.io/delete-machine"
SCALED_UP_AT = "kubeforge.io/scaled-up-at"
# On a Machine marked for deletion: the deployment's generation when it was marked. While the
# deployment still has that generation, the decrement that must follow the mark has not happened.
MARKED_AT_GENERATION = "kubeforge.io/marked-at-generation"


def machine_node(machine: Mapping[str, Any]) -> str:
    """The name of the Node a Machine became ("" while it has none)."""
    ref = (machine.get("status") or {}).get("nodeRef") or {}
    return str(ref.get("name", ""))


def machine_members(
    deployment: Mapping[str, Any],
    machines: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
) -> list[PoolMember]:
    """The pool's members from a MachineDeployment, its Machines and their Nodes (by name).

    * A Machine being deleted, or marked with ``cluster.x-k8s.io/delete-machine``, is leaving:
      its removal was already asked for, so it is never removed twice nor counted as capacity.
    * Replicas asked for but with no Machine yet are in-flight members named
      ``<deployment>/requested-<i>``, requested when the operator last scaled up (or when the
      deployment was created), so they are counted and never requested again.
    """
    meta = deployment.get("metadata", {})
    replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
    scaled = (meta.get("annotations") or {}).get(SCALED_UP_AT)
    pending_since = float(scaled) if scaled else parse_rfc3339(meta.get("creationTimestamp"))
    members: list[PoolMember] = []
    kept = 0
    for machine in sorted(machines, key=lambda m: str(m.get("metadata", {}).get("name"))):
        mmeta = machine.get("metadata", {})
        name = str(mmeta.get("name", ""))
        leaving = bool(mmeta.get("deletionTimestamp")) or DELETE_MACHINE in (
            mmeta.get("annotations") or {}
        )
        node_name = machine_node(machine)
        node = nodes.get(node_name) if node_name else None
        members.append(
            PoolMember(
                name=node_name if node is not None else f"machine/{name}",
                requested_at=parse_rfc3339(mmeta.get("creationTimestamp")),
                node=node,
                machine=name,
                leaving=leaving,
            )
        )
        kept += not leaving
    for i in range(max(0, replicas - kept)):
        members.append(
            PoolMember(f"{meta.get('name', '')}/requested-{i}", requested_at=pending_since)
        )
    return members


def interrupted_removal(
    deployment: Mapping[str, Any], machines: Iterable[Mapping[str, Any]]
) -> str:
    """The Machine marked for deletion whose replica decrement never happened ("" if none).

    A removal marks the Machine with the deployment's ``metadata.generation``, then decrements
    ``spec.replicas``, which bumps the generation. A Machine still carrying the *current*
    generation was marked by an operator that stopped before decrementing.
    """
    generation = str(deployment.get("metadata", {}).get("generation", ""))
    for machine in sorted(machines, key=lambda m: str(m.get("metadata", {}).get("name"))):
        meta = machine.get("metadata", {})
        annotations = meta.get("annotations") or {}
        if (
            not meta.get("deletionTimestamp")
            and DELETE_MACHINE in annotations
            and annotations.get(MARKED_AT_GENERATION) == generation
        ):
            return str(meta.get("name", ""))
    return ""
