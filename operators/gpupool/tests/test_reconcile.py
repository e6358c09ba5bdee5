"""A pool reconciled against the real API server, with the kwok provider and an injected clock."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.core.testing.fixtures import Kubectl, wait_for_crd
from kubeforge.operators.gpupool.clients.reconcile import Reconciler
from kubeforge.operators.gpupool.core.planner import Decision

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
    for node in Reconciler(api_client).provider_nodes(_get(api_client, name)):
        client.CoreV1Api(api_client).delete_node(node.metadata.name)
    kubectl("delete", "gpunodepool", name)


def _get(api_client: Any, name: str) -> dict[str, Any]:
    from kubernetes import client

    obj: dict[str, Any] = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        "kubeforge.io", "v1alpha1", "gpunodepools", name
    )
    return obj


def _job(api_client: Any, namespace: str, pool: str, name: str, workers: int) -> None:
    manifest = build_pytorchjob(
        name,
        namespace,
        "img",
        ["train"],
        workers=workers,
        gpus_per_replica=8,
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
    api_client: Any, namespace: str, pool: str
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    r = Reconciler(api_client)
    _job(api_client, namespace, pool, "llm", workers=1)  # Master + 1 Worker, 8 GPUs each

    first = r.reconcile(_get(api_client, pool), now=0)
    assert first.decision is Decision.SCALE_UP and first.add_nodes == 2
    nodes = sorted(n.metadata.name for n in r.provider_nodes(_get(api_client, pool)))
    assert len(nodes) == 2

    # GPUs not advertised yet: the nodes in flight count, nothing is requested twice.
    again = r.reconcile(_get(api_client, pool), now=10)
    assert again.decision is Decision.NOOP
    assert len(r.provider_nodes(_get(api_client, pool))) == 2

    r.reconcile(_get(api_client, pool), now=40)  # past gpuDelay: GPUs appear
    status = _get(api_client, pool)["status"]
    assert status["readyNodes"] == 2 and status["gpusAllocatable"] == 16

    pods = [
        _bind_pod(api_client, namespace, "llm", k, n)
        for k, n in zip(("master", "worker"), nodes, strict=True)
    ]
    busy = r.reconcile(_get(api_client, pool), now=50)
    assert busy.decision is Decision.NOOP
    assert _get(api_client, pool)["status"]["gpusAllocated"] == 16

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
    assert r.reconcile(_get(api_client, pool), now=100).decision is Decision.NOOP  # idle from 100
    assert r.reconcile(_get(api_client, pool), now=300).decision is Decision.NOOP  # < idleAfter
    drain = r.reconcile(_get(api_client, pool), now=401)
    assert drain.decision is Decision.DRAIN and sorted(drain.nodes_to_drain) == nodes
    assert all(core.read_node(n).spec.unschedulable for n in nodes)
    gone = r.reconcile(_get(api_client, pool), now=402)
    assert gone.decision is Decision.SCALE_DOWN and sorted(gone.nodes_to_remove) == nodes
    assert r.provider_nodes(_get(api_client, pool)) == []


def test_a_job_larger_than_the_pool_is_reported_and_scales_nothing(
    api_client: Any, namespace: str, pool: str
) -> None:
    _job(api_client, namespace, pool, "huge", workers=5)  # 6 nodes of 8 GPUs; maxNodes is 3
    r = Reconciler(api_client)
    decision = r.reconcile(_get(api_client, pool), now=0)
    assert decision.decision is Decision.NOOP
    assert r.provider_nodes(_get(api_client, pool)) == []
    conditions = {c["type"]: c for c in _get(api_client, pool)["status"]["conditions"]}
    assert conditions["CapacityUnavailable"]["status"] == "True"
    assert "above maxNodes 3" in conditions["CapacityUnavailable"]["message"]
