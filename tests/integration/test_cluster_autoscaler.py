"""The real Cluster Autoscaler (kwok provider) beside the real scheduler, kwok, training operator.

Nothing here plays a controller: a PyTorchJob's pods stay Pending until the autoscaler adds
kwok nodes for them, the scheduler binds them, kwok runs and completes them, and the autoscaler
removes the nodes once they are unneeded.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from kubeforge.testing.builders import job_conditions, job_pods, pytorchjob
from kubeforge.testing.controllers import (
    CA_KWOK_TAINT,
    ClusterAutoscaler,
    Kwok,
    TrainingOperator,
)
from kubeforge.testing.fixtures import wait_for

pytestmark = pytest.mark.cluster


def test_autoscaler_adds_kwok_gpu_nodes_for_a_pending_gang_and_removes_them_after(
    api_client: Any,
    namespace: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
    cluster_autoscaler: ClusterAutoscaler,
) -> None:
    group = cluster_autoscaler.groups[0].name
    assert cluster_autoscaler.nodes() == []
    key, value, effect = CA_KWOK_TAINT
    job = pytorchjob("gang").namespace(namespace).workers(1).gpus(8)
    job.selects(**{cluster_autoscaler.group_label: group}).tolerates(key, value, effect)
    job.runs_for("10s").submit(api_client)

    seen: set[str] = set()

    def all_ranks_ran() -> bool:
        seen.update(cluster_autoscaler.nodes())
        pods = job_pods(api_client, namespace, "gang")
        # A rank whose node came first may be done before the other starts: Running or after.
        return len(pods) == 2 and all(p.status.phase in ("Running", "Succeeded") for p in pods)

    try:
        wait_for(all_ranks_ran, timeout=180)
    except AssertionError:
        log = cluster_autoscaler.log.read_text(errors="replace").splitlines()
        raise AssertionError(
            "the gang never ran; autoscaler log:\n" + "\n".join(log[-40:])
        ) from None
    pods = job_pods(api_client, namespace, "gang")
    placed = {p.spec.node_name for p in pods}
    # One 8-GPU node per 8-GPU rank: the autoscaler added exactly the two nodes the gang needs,
    # and the scheduler put one rank on each.
    assert len(placed) == 2
    assert placed == set(cluster_autoscaler.nodes())
    core = client.CoreV1Api(api_client)
    for name in placed:
        node = core.read_node(name)
        assert node.metadata.labels[cluster_autoscaler.group_label] == group
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert any(t.key == key for t in node.spec.taints or [])

    wait_for(lambda: job_conditions(api_client, namespace, "gang").get("Succeeded") == "True", 120)
    # The pods are done: the nodes are unneeded and the autoscaler deletes them.
    wait_for(lambda: not cluster_autoscaler.nodes(), timeout=180)
    seen.update(cluster_autoscaler.nodes())
    assert seen == placed  # no node beyond the two, at any time we looked
