"""A node lost under a running gang: the whole gang is replanned at once, the loss recorded.

The cluster test runs the real training operator, scheduler, controller manager (its pod
garbage collector deletes the pods of a vanished node) and kwok; the test deletes a Node, as a
spot reclaim or a dead host would, and drives only the pool's reconciler on its own clock.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock, rfc3339
from kubeforge.operators.gpupool.clients.reconcile import Reconciler, ReconcileResult
from kubeforge.operators.gpupool.core.losses import GangPlacement, LossTracker
from kubeforge.operators.gpupool.core.planner import Decision
from kubeforge.testing.builders import gpu_pool, job_conditions, job_pods, pytorchjob, read_pool
from kubeforge.testing.controllers import Kwok, TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd

MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"


def gang(nodes: set[str], all_bound: bool = True) -> GangPlacement:
    return GangPlacement("ml/llm", 16, frozenset(nodes), all_bound)


def test_a_vanished_node_under_a_running_gang_is_one_loss_until_every_rank_runs_again() -> None:
    tracker = LossTracker()
    assert tracker.observe([gang({"a", "b"})], {"a", "b", "c"}, 0.0) == ([], [])
    # "c" (idle) and "b" (under the gang) go; only the gang's node is a loss, seen once.
    lost, recovered = tracker.observe([gang({"a"}, all_bound=False)], {"a"}, 10.0)
    assert [(x.job, x.nodes, x.gpus, x.lost_at) for x in lost] == [("ml/llm", ("b",), 16, 10.0)]
    assert recovered == []
    assert tracker.gone({"a", "d"}) == {"b", "c"}  # pods may still be bound to them
    assert tracker.observe([gang({"a"}, all_bound=False)], {"a", "d"}, 40.0) == ([], [])
    lost, recovered = tracker.observe([gang({"a", "d"})], {"a", "d"}, 70.0)
    assert lost == [] and [(x.recovery_s, x.gpu_minutes_lost(99.0)) for x in recovered] == [
        (60.0, 16.0)
    ]


def test_a_finished_or_deleted_job_leaves_no_open_loss() -> None:
    tracker = LossTracker()
    tracker.observe([gang({"a", "b"})], {"a", "b"}, 0.0)
    lost, _ = tracker.observe([], {"a"}, 5.0)  # the job went away with the node
    assert len(lost) == 1 and tracker.open == {}


def test_a_restarted_operator_keeps_open_losses_from_the_status_and_records_their_recovery() -> (
    None
):
    history = [
        {
            "job": "ml/old",
            "nodes": ["x"],
            "gpus": 8,
            "lostAt": rfc3339(1.0),
            "recoveredAt": rfc3339(5.0),
        },
        {"job": "ml/llm", "nodes": ["b"], "gpus": 16, "lostAt": rfc3339(10.0)},
    ]
    tracker = LossTracker.resume(history)
    assert list(tracker.open) == ["ml/llm"]  # the recovered one is history only
    assert tracker.gone({"a", "d"}) == {"b"}  # pods still bound to "b" run nowhere
    assert tracker.observe([gang({"a"}, all_bound=False)], {"a", "d"}, 40.0) == ([], [])
    lost, recovered = tracker.observe([gang({"a", "d"})], {"a", "d"}, 70.0)
    assert lost == [] and [(x.job, x.recovery_s) for x in recovered] == [("ml/llm", 60.0)]


@pytest.mark.cluster
def test_deleting_a_node_under_a_running_pytorchjob_replaces_it_and_the_job_finishes(
    api_client: Any,
    kubectl: Kubectl,
    namespace: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
) -> None:
    from kubernetes import client

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    pool = f"loss-{secrets.token_hex(3)}"
    body = (
        gpu_pool(pool)
        .kwok(gpuDelay="30s")
        .scaling(maxNodes=3)
        .scale_down(idleAfter="10m", minNodeAge="10m")
        .serving()
        .obj()
    )
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    core = client.CoreV1Api(api_client)
    r = Reconciler(api_client, ManualClock())

    def reconcile(at: float) -> ReconcileResult:
        assert isinstance(r.clock, ManualClock)
        r.clock.at = at
        result = r.reconcile(read_pool(api_client, pool))
        assert result.plan is not None
        return result

    def ranks() -> dict[str, Any]:
        return {p.metadata.name: p for p in job_pods(api_client, namespace, "llm")}

    def running_on(nodes: set[str]) -> bool:
        pods = ranks()
        return len(pods) == 2 and all(
            p.spec.node_name in nodes and p.status.phase == "Running" for p in pods.values()
        )

    def pool_nodes() -> set[str]:
        return {n.metadata.name for n in r.provider_nodes(read_pool(api_client, pool))}

    try:
        # Master + 1 Worker, 8 GPUs each; kwok ends each rank 120 s after it runs.
        job = pytorchjob("llm").namespace(namespace).workers(1).gpus(8).pool(pool)
        job.runs_for("120s").submit(api_client)
        wait_for(lambda: len(ranks()) == 2, 60)
        assert reconcile(0).plan.add_nodes == 2  # type: ignore[union-attr]
        reconcile(30)  # GPUs appear
        first = pool_nodes()
        wait_for(lambda: running_on(first), 90)
        assert reconcile(40).plan.decision is Decision.NOOP  # type: ignore[union-attr]

        # One of the gang's nodes disappears (spot reclaim): the gang is stalled. (The lower
        # of the two: a new kwok node takes the next index, never a vanished node's name.)
        lost_node = min(first)
        lost_rank = next(n for n, p in ranks().items() if p.spec.node_name == lost_node)
        core.delete_node(lost_node)
        loss = reconcile(50)
        assert [(x.job, x.nodes, x.gpus) for x in loss.lost] == [
            (f"{namespace}/llm", (lost_node,), 16)
        ]
        # The lost rank's pod is still bound to the vanished node (the pod garbage collector
        # has not run yet); it counts as unbound: one node, for the gang, in the same reconcile.
        assert loss.plan is not None and loss.plan.decision is Decision.SCALE_UP
        assert loss.plan.add_nodes == 1
        status = read_pool(api_client, pool)["status"]
        assert status["nodeLosses"] == [
            {
                "job": f"{namespace}/llm",
                "nodes": [lost_node],
                "gpus": 16,
                "lostAt": "1970-01-01T00:00:50Z",
                "gpuMinutesLost": 0.0,
            }
        ]
        warnings = kubectl(
            "get", "events", "-n", "default", "--field-selector", "reason=NodeLost", "-o", "json"
        ).stdout
        assert any(lost_node in e["message"] for e in json.loads(warnings)["items"])
        assert reconcile(60).plan.decision is Decision.NOOP  # type: ignore[union-attr]

        # The operator restarts before the gang recovers: the new process (nothing in memory)
        # reads the open loss from the pool's status and records its recovery.
        r = Reconciler(api_client, ManualClock())
        reconcile(80)  # the replacement advertises its GPUs
        survivors = pool_nodes()
        assert lost_node not in survivors and len(survivors) == 2
        # The garbage collector deletes the orphaned rank, the training operator makes it
        # again, the scheduler binds it to the new node, kwok runs it.
        wait_for(lambda: running_on(survivors) and lost_rank in ranks(), 180)
        back = reconcile(90)
        assert [(x.recovery_s, x.gpu_minutes_lost(90)) for x in back.recovered] == [
            (40.0, 16 * 40 / 60)
        ]
        (entry,) = read_pool(api_client, pool)["status"]["nodeLosses"]
        assert entry["recoveredAt"] == "1970-01-01T00:01:30Z" and entry["recoverySeconds"] == 40
        assert entry["gpuMinutesLost"] == round(16 * 40 / 60, 2)
        wait_for(
            lambda: job_conditions(api_client, namespace, "llm").get("Succeeded") == "True", 150
        )
    finally:
        for node in r.provider_nodes(read_pool(api_client, pool)):
            core.delete_node(node.metadata.name)
        kubectl("delete", "gpunodepool", pool)
