"""A pool reconciled against the real API server, with the kwok provider and an injected clock."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.operators.gpupool.clients.reconcile import Reconciler
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan
from kubeforge.testing.fixtures import Kubectl, read_pool, wait_for_crd

pytestmark = pytest.mark.cluster
MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"


@pytest.fixture
def pool(kubectl: Kubectl, api_client: Any, pytorchjob_crd: str) -> Any:
    from kubernetes import client

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"sim-{secrets.token_hex(3)}"
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": name},
        "spec": {
            "gpu": {"perNode": 8, "product": "NVIDIA-H100"},
            "provider": {"kwok": {"gpuDelay": "30s"}},
            "scaling": {"maxNodes": 3},
            "scaleDown": {"idleAfter": "5m", "minNodeAge": "1m"},
            "jobSelector": {"nodeSelector": {"kubeforge.io/pool": name}},
            "nodeTemplate": {"labels": {"kubeforge.io/pool-label": name}},
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    yield name
    for node in Reconciler(api_client).provider_nodes(read_pool(api_client, name)):
        client.CoreV1Api(api_client).delete_node(node.metadata.name)
    kubectl("delete", "gpunodepool", name)


def step(r: Reconciler, api_client: Any, pool: str, now: float) -> PoolPlan:
    """One reconcile of ``pool`` at ``now``; the provider is reachable, so a plan comes back."""
    decision = r.reconcile(read_pool(api_client, pool), now=now)
    assert decision is not None
    return decision


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


def _job(
    api_client: Any, namespace: str, pool: str, name: str, workers: int, gpus: int = 8
) -> None:
    manifest = build_pytorchjob(
        name,
        namespace,
        "img",
        ["train"],
        workers=workers,
        gpus_per_replica=gpus,
        node_selector={"kubeforge.io/pool": pool},
    )
    submit_pytorchjob(api_client, manifest)


def _bind_pod(api_client: Any, namespace: str, job: str, kind: str, node: str) -> str:
    from kubernetes import client

    name = f"{job}-{kind}-{secrets.token_hex(2)}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={
                "training.kubeflow.org/job-name": job,
                "training.kubeflow.org/replica-type": kind,
            },
        ),
        spec=client.V1PodSpec(
            node_name=node,
            containers=[
                client.V1Container(
                    name="pytorch",
                    image="img",
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "8"}),
                )
            ],
        ),
    )
    client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod)
    return name


def test_a_job_arrives_nodes_come_gpus_appear_job_ends_nodes_go(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    r = Reconciler(api_client)
    _job(api_client, namespace, pool, "llm", workers=1)  # Master + 1 Worker, 8 GPUs each

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
            "decision": "needs_nodes",
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
        _bind_pod(api_client, namespace, "llm", k, n)
        for k, n in zip(("master", "worker"), nodes, strict=True)
    ]
    busy = step(r, api_client, pool, 50)
    assert busy.decision is Decision.NOOP
    status = read_pool(api_client, pool)["status"]
    assert status["gpusAllocated"] == 16 and status["gpus"]["idle"] == 0
    assert status["jobs"] == [] and status["pendingJobs"] == 0
    assert r.job_waits and r.job_waits[0] >= 0  # all pods bound: the job's wait is measured

    # The job finishes: pods succeed, the job's Succeeded condition is set.
    for name in pods:
        core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": "Succeeded"}})
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        "kubeflow.org",
        "v1",
        namespace,
        "pytorchjobs",
        "llm",
        {"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}},
    )
    assert step(r, api_client, pool, 100).decision is Decision.NOOP  # idle from 100
    # A restarted operator (a fresh Reconciler) keeps the idle timers: they live on the Nodes.
    r = Reconciler(api_client)
    assert step(r, api_client, pool, 300).decision is Decision.NOOP  # < idleAfter
    assert core.read_node(nodes[0]).metadata.annotations["kubeforge.io/idle-since"] == "100.000"
    r = Reconciler(api_client)
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
    _job(api_client, namespace, pool, "huge", workers=5)  # 6 nodes of 8 GPUs; maxNodes is 3
    r = Reconciler(api_client)
    decision = step(r, api_client, pool, 0)
    assert decision.decision is Decision.NOOP
    assert r.provider_nodes(read_pool(api_client, pool)) == []
    conditions = {c["type"]: c for c in read_pool(api_client, pool)["status"]["conditions"]}
    assert conditions["CapacityUnavailable"]["status"] == "True"
    assert "above maxNodes 3" in conditions["CapacityUnavailable"]["message"]


def test_a_pod_larger_than_a_node_gets_an_event_on_the_job(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    _job(api_client, namespace, pool, "wide", workers=1, gpus=16)  # nodes have 8 GPUs
    r = Reconciler(api_client)
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
    assert status["jobs"][0]["decision"] == "unschedulable"
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
    _job(api_client, namespace, pool, "slow", workers=1)
    r = Reconciler(api_client)
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
