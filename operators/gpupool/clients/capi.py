"""The Cluster API provider: scales a MachineDeployment through its ``scale`` subresource.

To remove a node it marks that node's Machine with ``cluster.x-k8s.io/delete-machine`` first,
then decrements the replicas, so the MachineSet controller deletes exactly that Machine.
Every replica change carries the resourceVersion it was computed from: a concurrent change
makes it fail (and the next reconcile recomputes) instead of scaling twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeforge.operators.gpupool.clients.provider import ProviderError
from kubeforge.operators.gpupool.core.machines import (
    DELETE_MACHINE,
    DEPLOYMENT_LABEL,
    GROUP,
    MARKED_AT_GENERATION,
    SCALED_UP_AT,
    VERSION,
    interrupted_removal,
    machine_members,
    machine_node,
)
from kubeforge.operators.gpupool.core.members import PoolMember
from kubeforge.operators.gpupool.core.nodes import POOL_LABEL

DEPLOYMENTS = "machinedeployments"
MACHINES = "machines"


@dataclass
class ClusterApiProvider:
    """Scales one MachineDeployment for one pool; labels and taints the Nodes it brings."""

    api_client: Any
    pool: str
    namespace: str
    deployment: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return fn(*args)
        except ApiException as exc:
            where = f"MachineDeployment {self.namespace}/{self.deployment}"
            if exc.status == 404:
                raise ProviderError(f"{what}: {where} not found") from exc
            if exc.status == 409:
                raise ProviderError(f"{what}: {where} changed meanwhile; will retry") from exc
            raise ProviderError(f"{what} ({where}) failed: {exc.status} {exc.reason}") from exc
        except OSError as exc:  # urllib3 connection errors derive from OSError
            raise ProviderError(f"{what}: API server unreachable: {exc}") from exc

    def deployment_object(self) -> dict[str, Any]:
        """The MachineDeployment."""
        obj: dict[str, Any] = self._call(
            "reading the MachineDeployment",
            self._custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            DEPLOYMENTS,
            self.deployment,
        )
        return obj

    def machines(self) -> list[dict[str, Any]]:
        """The deployment's Machines (by the label the MachineSet controller puts on them)."""
        listed = self._call(
            "listing Machines",
            lambda: self._custom().list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                MACHINES,
                label_selector=f"{DEPLOYMENT_LABEL}={self.deployment}",
            ),
        )
        return list(listed["items"])

    def _nodes_of(self, machines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from kubernetes.client.rest import ApiException

        nodes: dict[str, dict[str, Any]] = {}
        for machine in machines:
            name = machine_node(machine)
            if not name:
                continue
            try:
                node = self._core().read_node(name)
            except ApiException as exc:
                if exc.status == 404:  # nodeRef set, Node gone or not there yet
                    continue
                raise ProviderError(f"reading node {name} failed: {exc.reason}") from exc
            nodes[name] = self.api_client.sanitize_for_serialization(node)
        return nodes

    def members(self) -> list[PoolMember]:
        """Machines (with their Nodes) and replicas that have no Machine yet."""
        deployment = self.deployment_object()
        machines = self.machines()
        return machine_members(deployment, machines, self._nodes_of(machines))

    def prepare(self, now: float) -> None:
        """Finish a removal a stopped operator left half done; label and taint new Nodes."""
        deployment = self.deployment_object()
        pending = interrupted_removal(deployment, self.machines())
        if pending:
            replicas = int(deployment.get("spec", {}).get("replicas") or 0)
            self._scale(
                max(0, replicas - 1),
                deployment["metadata"]["resourceVersion"],
                f"finishing the removal of Machine {pending}",
            )
        for member in self.members():
            if member.node is None or member.leaving:
                continue
            meta = member.node.get("metadata", {})
            labels = {**self.labels, POOL_LABEL: self.pool}
            have = meta.get("labels") or {}
            taints = list((member.node.get("spec") or {}).get("taints") or [])
            keys = {(t.get("key"), t.get("effect")) for t in taints}
            missing = [t for t in self.taints if (t.get("key"), t.get("effect")) not in keys]
            patch: dict[str, Any] = {}
            if any(have.get(k) != v for k, v in labels.items()):
                patch["metadata"] = {"labels": labels}
            if missing:
                patch["spec"] = {"taints": taints + [dict(t) for t in missing]}
            if patch:
                self._core().patch_node(member.name, patch)

    def _scale(self, replicas: int, resource_version: str, what: str) -> None:
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        self._call(
            what,
            self._custom().patch_namespaced_custom_object_scale,
            GROUP,
            VERSION,
            self.namespace,
            DEPLOYMENTS,
            self.deployment,
            body,
        )

    def add_nodes(self, count: int, now: float) -> list[str]:
        """Raise ``spec.replicas`` by ``count`` from what the deployment says now."""
        deployment = self.deployment_object()
        replicas = int(deployment.get("spec", {}).get("replicas") or 0)
        # Stamp first (replicas with no Machine yet count as requested from then), on the
        # version read: if anything changed the deployment since, both steps fail and retry.
        stamped = self._call(
            "stamping the MachineDeployment",
            self._custom().patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            DEPLOYMENTS,
            self.deployment,
            {
                "metadata": {
                    "resourceVersion": deployment["metadata"]["resourceVersion"],
                    "annotations": {SCALED_UP_AT: f"{now:.3f}"},
                }
            },
        )
        target = replicas + count
        self._scale(target, stamped["metadata"]["resourceVersion"], f"scaling up to {target}")
        return [f"{self.deployment}/requested-{i}" for i in range(count)]

    def _member(self, name: str) -> PoolMember:
        for member in self.members():
            if member.name == name and not member.leaving:
                return member
        raise ProviderError(
            f"{name} is not a node of MachineDeployment {self.namespace}/{self.deployment}; "
            "not touching it"
        )

    def cordon(self, name: str) -> None:
        """Cordon the Node, only if it belongs to one of the deployment's Machines."""
        member = self._member(name)
        if member.node is None:
            raise ProviderError(f"{name} has no Node to cordon")
        self._core().patch_node(name, {"spec": {"unschedulable": True}})

    def remove(self, name: str) -> None:
        """Mark the member's Machine for deletion, then decrement the replicas by one.

        A member with no Machine yet (replicas the MachineSet has not created) is removed by
        decrementing alone. A Machine already marked is no member any more, so a repeated call
        after a restart decrements nothing; the mark records the deployment's generation, so
        :meth:`prepare` finishes a decrement that a stopped operator never made.
        """
        member = self._member(name)
        deployment = self.deployment_object()
        rv = deployment["metadata"]["resourceVersion"]
        replicas = int(deployment.get("spec", {}).get("replicas") or 0)
        if member.machine:
            self._call(
                f"marking Machine {member.machine} for deletion",
                self._custom().patch_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                MACHINES,
                member.machine,
                {
                    "metadata": {
                        "annotations": {
                            DELETE_MACHINE: f"kubeforge pool {self.pool}",
                            MARKED_AT_GENERATION: str(deployment["metadata"]["generation"]),
                        }
                    }
                },
            )
        self._scale(max(0, replicas - 1), rv, f"scaling down to {max(0, replicas - 1)}")
