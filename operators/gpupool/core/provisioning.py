"""provisionTimeout: a node requested but not GPU-ready in time counts as failed. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubeforge.operators.gpupool.core.planner import NodeState


@dataclass(frozen=True)
class ProvisionCheck:
    """Members split into those still within their provisioning time and those past it."""

    healthy: tuple[NodeState, ...]
    failed: tuple[NodeState, ...]

    def reason(self, timeout_s: float, now: float) -> str:
        """Why the failed nodes failed, for a person."""
        return "; ".join(
            f"{n.name} requested {now - n.created_at:.0f}s ago, GPUs not ready within "
            f"provisionTimeout {timeout_s:.0f}s"
            for n in self.failed
        )


def check_provisioning(nodes: Iterable[NodeState], timeout_s: float, now: float) -> ProvisionCheck:
    """Nodes not GPU-ready ``timeout_s`` after they were requested are failed.

    Failed nodes are no longer in-flight capacity: the planner must not wait for them forever.
    """
    healthy: list[NodeState] = []
    failed: list[NodeState] = []
    for node in nodes:
        late = not node.gpu_ready and now - node.created_at >= timeout_s
        (failed if late else healthy).append(node)
    return ProvisionCheck(tuple(healthy), tuple(failed))
