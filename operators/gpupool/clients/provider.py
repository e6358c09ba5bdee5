"""The interface every node provider implements (kwok, Cluster API; a cloud provider next)."""

from __future__ import annotations

from typing import Protocol

from kubeforge.operators.gpupool.core.members import PoolMember


class ProviderError(RuntimeError):
    """The provider refused or failed; the message says what to check."""


class PoolChanges(Protocol):
    """What an executor asks of a pool: add, cordon and remove nodes (a provider, a simulator)."""

    def add_nodes(self, count: int, now: float) -> list[str]:
        """Ask for ``count`` more nodes; returns what stands for them."""
        ...

    def cordon(self, name: str) -> None:
        """Make the pool's node ``name`` unschedulable."""
        ...

    def remove(self, name: str) -> None:
        """Remove exactly the member ``name``; refuses anything the provider did not create."""
        ...


class NodeProvider(PoolChanges, Protocol):
    """Adds and removes a pool's nodes. Every method is idempotent and restart-safe.

    The provider derives what it has asked for from cluster objects, never from memory, so a
    restarted operator neither repeats a scale-up nor removes a node twice.
    """

    def members(self) -> list[PoolMember]:
        """Every node asked for, registered or not, including those being removed."""
        ...

    def prepare(self, now: float) -> None:
        """Per-reconcile upkeep before reading members (labels and taints, simulated GPUs)."""
        ...
