"""The kwok provider: creates and deletes simulated Node objects itself (tests, simulation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.clients.provider import ProviderError
from kubeforge.operators.gpupool.core.members import PoolMember
from kubeforge.operators.gpupool.core.nodes import (
    MANAGED_LABEL,
    MANAGER,
    POOL_LABEL,
    build_node,
    gpu_status_patch,
    node_name,
)

__all__ = ["KwokProvider", "ProviderError"]


@dataclass
class KwokProvider:
    """Adds and removes Node objects of one pool; GPUs appear ``gpu_delay_s`` after creation.

    The clock is the caller's (``now`` arguments), so tests never sleep.
    """

    api_client: Any
    pool: str
    gpu_resource: str
    gpus_per_node: int
    gpu_delay_s: float
    labels: dict[str, str] | None = None
    taints: list[dict[str, str]] | None = None
    product: str = ""

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def nodes(self) -> list[Any]:
        """Nodes this provider manages for the pool."""
        selector = f"{POOL_LABEL}={self.pool},{MANAGED_LABEL}={MANAGER}"
        return list(self._core().list_node(label_selector=selector).items)

    def members(self) -> list[PoolMember]:
        """The pool's Node objects; a node being deleted is leaving."""
        serialize = self.api_client.sanitize_for_serialization
        members = []
        for node in self.nodes():
            raw = serialize(node)
            meta = raw["metadata"]
            requested = (meta.get("annotations") or {}).get("kubeforge.io/requested-at")
            members.append(
                PoolMember(
                    name=meta["name"],
                    requested_at=(
                        float(requested) if requested else parse_rfc3339(meta["creationTimestamp"])
                    ),
                    node=raw,
                    leaving=bool(meta.get("deletionTimestamp")),
                )
            )
        return members

    def prepare(self, now: float) -> None:
        """Simulate the device plugin: nodes past the delay advertise their GPUs."""
        self.advertise_gpus(now)

    def add_nodes(self, count: int, now: float) -> list[str]:
        """Get-or-create ``count`` more nodes above the highest index; returns their names.

        A name is not given again while a higher one exists: a node that vanished (deleted
        under its pods) is not stood in for by a new node of its name, which would take over
        the pods still bound to the old one.
        """
        from kubernetes.client.rest import ApiException

        taken = {n.metadata.name for n in self.nodes()}
        created: list[str] = []
        prefix = f"{self.pool}-"
        indexes = [
            int(name[len(prefix) :])
            for name in taken
            if name.startswith(prefix) and name[len(prefix) :].isdigit()
        ]
        index = max(indexes, default=-1) + 1
        while len(created) < count:
            name = node_name(self.pool, index)
            index += 1
            if name in taken:
                continue
            body = build_node(
                self.pool, index - 1, self.labels or {}, self.taints or [], self.product
            )
            body["metadata"]["annotations"]["kubeforge.io/requested-at"] = f"{now:.3f}"
            try:
                self._core().create_node(body)
            except ApiException as exc:
                if exc.status != 409:  # already there: a repeated reconcile, not an error
                    raise ProviderError(f"creating node {name} failed: {exc.reason}") from exc
            created.append(name)
        return created

    def advertise_gpus(self, now: float) -> list[str]:
        """Make nodes older than the delay advertise their GPUs; returns the nodes changed."""
        changed = []
        for node in self.nodes():
            requested = float(node.metadata.annotations.get("kubeforge.io/requested-at", "0"))
            allocatable = (node.status.allocatable or {}) if node.status else {}
            if self.gpu_resource in allocatable or now - requested < self.gpu_delay_s:
                continue
            self._core().patch_node_status(
                node.metadata.name, gpu_status_patch(self.gpu_resource, self.gpus_per_node)
            )
            changed.append(node.metadata.name)
        return changed

    def cordon(self, name: str) -> None:
        """Mark the node unschedulable."""
        self._owned(name)
        self._core().patch_node(name, {"spec": {"unschedulable": True}})

    def remove(self, name: str) -> None:
        """Delete exactly this node, only if this provider created it for this pool."""
        self._owned(name)
        self._core().delete_node(name)

    def _owned(self, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            labels = self._core().read_node(name).metadata.labels or {}
        except ApiException as exc:
            raise ProviderError(f"node {name} cannot be read: {exc.reason}") from exc
        if labels.get(POOL_LABEL) != self.pool or labels.get(MANAGED_LABEL) != MANAGER:
            raise ProviderError(
                f"node {name} was not created by kubeforge for pool {self.pool}; not touching it"
            )
