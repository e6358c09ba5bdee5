"""A pool reconciled against the real API server, with the kwok provider and an injected clock."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock
from kubeforge.operators.gpupool.clients.reconcile import Reconciler, ReconcileResult
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan
from kubeforge.testing.builders import finish_job, gpu_pool, pytorchjob, read_pool, training_pod
from kubeforge.testing.fixtures import Kubectl, wait_for_crd

pytestmark = pytest.mark.cluster
MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"


@pytest.fixture
def pool(kubectl: Kubectl, api_client: Any, pytorchjob_crd: str) -> Any:
    from kubernetes import client

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"sim-{secrets.token_hex(3)}"
    body = (
        gpu_pool(name)
        .product("NVIDIA-H100")
        .kwok(gpuDelay="30s")
        .scaling(maxNodes=3)
        .scale_down(idleAfter="5m", minNodeAge="1m")
        .serving()
        .node_labels(**{"kubeforge.io/pool-label": name})
        .obj()
    )
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    yield name
    for node in Reconciler(api_client).provider_nodes(read_pool(api_client, name)):
        client.CoreV1Api(api_client).delete_node(node.metadata.name)
    kubectl("delete", "gpunodepool", name)


def reconciler(api_client: Any, clock: ManualClock) -> Reconciler:
    """A reconciler on the test's clock (a fresh one is what a restarted operator has)."""
    return Reconciler(api_client, clock)


def step(r: Reconciler, api_client: Any, pool: str, now: float) -> PoolPlan:
    """One reconcile of ``pool`` at ``now``; the provider is reachable, so a plan comes back."""
    result = reconcile_at(r, api_client, pool, now)
    assert result.plan is not None
    return result.plan


def reconcile_at(r: Reconciler, api_client: Any, pool: str, now: float) -> ReconcileResult:
    """One reconcile of ``pool`` with the reconciler's clock set to ``now``."""
    assert isinstance(r.clock, ManualClock)
    r.clock.at = now
    return r.reconcile(read_pool(api_client, pool))


def events(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    """Events about the object ``name`` as kubectl shows them: reason -> message."""
    out = kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    return {e["reason"]: e["message"] for e in json.loads(out)["items"]}


def test_a_job_arrives_nodes_come_gpus_appear_job_ends_nodes_go(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    clock = ManualClock()
    r = reconciler(api_client, clock)
    # Master + 1 Worker, 8 GPUs each
    pytorchjob("llm").namespace(namespace).workers(1).gpus(8).pool(pool).submit(api_client)

    first = step(r, api_client, pool, 0)
    assert first.decision is Decision.SCALE_UP and first.add_nodes == 2
    nodes = sorted(n.metadata.name for n in r.provider_nodes(read_pool(api_client, pool)))
    assert len(nodes) == 2
    status = read_pool(api_client, pool)["status"]
    assert status["nodes"]["registering"] == 2 and status["nodes"]["gpuReady"] == 0
    assert status["jobs"] == [
        {
            "job": f"{namespace}/llm",
            "gpus": 16,
            "placement": "needs_nodes",
            "reason": "whole job needs 2 new node(s)",
        }
    ]
    assert status["lastScaleUpTime"] and "lastScaleDownTime" not in status
    assert "scale up by 2" in events(kubectl, "default", pool)["ScaleUp"]

    # GPUs not advertised yet: the nodes in flight count, nothing is requested twice.
    again = step(r, api_client, pool, 10)
    assert again.decision is Decision.NOOP
    assert len(r.provider_nodes(read_pool(api_client, pool))) == 2

    step(r, api_client, pool, 40)  # past gpuDelay: GPUs appear
    status = read_pool(api_client, pool)["status"]
    assert status["readyNodes"] == 2 and status["gpusAllocatable"] == 16
    assert status["nodes"]["gpuReady"] == 2 and status["nodes"]["registering"] == 0
    assert status["gpus"] == {"capacity": 16, "allocatable": 16, "allocated": 0, "idle": 16}
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["message"].startswith("2 GPU-ready node(s)")

    pods = [
        training_pod("llm", kind).on(node).create(api_client, namespace)
        for kind, node in zip(("master", "worker"), nodes, strict=True)
    ]
    busy = reconcile_at(r, api_client, pool, 50)
    assert busy.plan is not None and busy.plan.decision is Decision.NOOP
    status = read_pool(api_client, pool)["status"]
    assert status["gpusAllocated"] == 16 and status["gpus"]["idle"] == 0
    assert status["jobs"] == [] and status["pendingJobs"] == 0
    assert busy.job_waits and busy.job_waits[0] >= 0  # all pods bound: the job's wait is measured

    finish_job(api_client, namespace, "llm", pods)
    assert step(r, api_client, pool, 100).decision is Decision.NOOP  # idle from 100
    # A restarted operator (a fresh Reconciler) keeps the idle timers: they live on the Nodes.
    r = reconciler(api_client, clock)
    assert step(r, api_client, pool, 300).decision is Decision.NOOP  # < idleAfter
    assert core.read_node(nodes[0]).metadata.annotations["kubeforge.io/idle-since"] == "100.000"
    r = reconciler(api_client, clock)
    drain = step(r, api_client, pool, 401)
    assert drain.decision is Decision.DRAIN and sorted(drain.nodes_to_drain) == nodes
    assert all(core.read_node(n).spec.unschedulable for n in nodes)
    assert read_pool(api_client, pool)["status"]["nodes"]["cordoned"] == 2
    assert "idle longer than 300s" in events(kubectl, "default", pool)["Cordon"]
    gone = step(r, api_client, pool, 402)
    assert gone.decision is Decision.SCALE_DOWN and sorted(gone.nodes_to_remove) == nodes
    assert r.provider_nodes(read_pool(api_client, pool)) == []
    assert read_pool(api_client, pool)["status"]["lastScaleDownTime"]
    assert "remove cordoned idle node(s)" in events(kubectl, "default", pool)["ScaleDown"]


def test_a_job_larger_than_the_pool_is_reported_and_scales_nothing(
    api_client: Any, namespace: str, pool: str
) -> None:
    # 6 nodes of 8 GPUs; maxNodes is 3
    pytorchjob("huge").namespace(namespace).workers(5).gpus(8).pool(pool).submit(api_client)
    r = reconciler(api_client, ManualClock())
    decision = step(r, api_client, pool, 0)
    assert decision.decision is Decision.NOOP
    assert r.provider_nodes(read_pool(api_client, pool)) == []
    conditions = {c["type"]: c for c in read_pool(api_client, pool)["status"]["conditions"]}
    assert conditions["CapacityUnavailable"]["status"] == "True"
    assert "above maxNodes 3" in conditions["CapacityUnavailable"]["message"]


def test_a_pod_larger_than_a_node_gets_an_event_on_the_job(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    # The pool's nodes have 8 GPUs.
    pytorchjob("wide").namespace(namespace).workers(1).gpus(16).pool(pool).submit(api_client)
    r = reconciler(api_client, ManualClock())
    assert step(r, api_client, pool, 0).decision is Decision.NOOP
    assert r.provider_nodes(read_pool(api_client, pool)) == []
    on_job = events(kubectl, namespace, "wide")
    assert on_job["Unschedulable"] == (
        f"pool {pool}: a pod asks for 16 GPUs but the pool's nodes have 8"
    )
    status = read_pool(api_client, pool)["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["CapacityUnavailable"]["status"] == "True"
    assert "asks for 16 GPUs" in conditions["CapacityUnavailable"]["message"]
    assert status["jobs"][0]["placement"] == "unschedulable"
    # The same verdict on the next reconcile is the same Event, counted, not a new one.
    step(r, api_client, pool, 15)
    listed = json.loads(
        kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.name=wide",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert [e["count"] for e in listed] == [2]


def test_nodes_not_gpu_ready_within_provision_timeout_are_replaced(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    from kubernetes import client

    kubectl(
        "patch",
        "gpunodepool",
        pool,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"scaling": {"provisionTimeout": "20s"}}}),
    )  # gpuDelay is 30s: the first nodes can never make it in time
    pytorchjob("slow").namespace(namespace).workers(1).gpus(8).pool(pool).submit(api_client)
    r = reconciler(api_client, ManualClock())
    assert step(r, api_client, pool, 0).add_nodes == 2
    retry = step(r, api_client, pool, 25)
    # The late nodes stop counting as in flight: they are removed and asked for again.
    assert retry.decision is Decision.SCALE_UP and retry.add_nodes == 2
    nodes = r.provider_nodes(read_pool(api_client, pool))
    assert sorted(n.metadata.annotations["kubeforge.io/requested-at"] for n in nodes) == [
        "25.000",
        "25.000",
    ]
    status = read_pool(api_client, pool)["status"]
    assert status["nodes"]["failed"] == 2
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ProvisionTimeout")
    message = events(kubectl, "default", pool)["ProvisionTimeout"]
    assert f"{pool}-0000 requested 25s ago" in message and "provisionTimeout 20s" in message
    core = client.CoreV1Api(api_client)
    assert all(core.read_node(n.metadata.name) for n in nodes)
