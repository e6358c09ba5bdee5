"""The Cluster API provider against the real API server and the real Cluster API CRDs.

The test plays the Cluster API controllers and the kubelet: it creates Machines and Nodes as
the MachineDeployment's replicas grow, advertises GPUs, and deletes the Machine that carries
``cluster.x-k8s.io/delete-machine`` when the replicas shrink.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.operators.gpupool.clients.reconcile import Reconciler
from kubeforge.operators.gpupool.core.capi import DELETE_MACHINE, DEPLOYMENT_LABEL
from kubeforge.operators.gpupool.core.nodes import gpu_status_patch
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan
from kubeforge.testing.fixtures import Kubectl, read_pool, wait_for_crd

pytestmark = pytest.mark.cluster
MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"
CAPI = ("cluster.x-k8s.io", "v1beta2")
TAINT = {"key": "kubeforge.io/gpu", "value": "h100", "effect": "NoSchedule"}


def machine_deployment(name: str, namespace: str) -> dict[str, Any]:
    template_spec = {
        "clusterName": "gpu-cluster",
        "bootstrap": {"dataSecretName": f"{name}-bootstrap"},
        "infrastructureRef": {
            "apiGroup": "infrastructure.cluster.x-k8s.io",
            "kind": "DockerMachineTemplate",
            "name": f"{name}-infra",
        },
    }
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachineDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterName": "gpu-cluster",
            "replicas": 0,
            "selector": {"matchLabels": {DEPLOYMENT_LABEL: name}},
            "template": {
                "metadata": {"labels": {DEPLOYMENT_LABEL: name}},
                "spec": template_spec,
            },
        },
    }


class FakeCapi:
    """What the MachineSet controller and the kubelet would do, one pass at a time."""

    def __init__(self, api_client: Any, namespace: str, deployment: str) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.deployment = deployment
        self.nodes: list[str] = []

    def replicas(self) -> int:
        md = self.custom.get_namespaced_custom_object(
            *CAPI, self.namespace, "machinedeployments", self.deployment
        )
        return int(md["spec"].get("replicas") or 0)

    def machines(self) -> list[dict[str, Any]]:
        return list(
            self.custom.list_namespaced_custom_object(
                *CAPI,
                self.namespace,
                "machines",
                label_selector=f"{DEPLOYMENT_LABEL}={self.deployment}",
            )["items"]
        )

    def sync(self) -> None:
        """Create Machines (each with a Node, no GPUs yet) or delete the marked ones."""
        machines = self.machines()
        replicas = self.replicas()
        excess = len(machines) - replicas
        marked = [m for m in machines if DELETE_MACHINE in m["metadata"].get("annotations", {})]
        for machine in marked[: max(0, excess)]:
            node = machine["status"]["nodeRef"]["name"]
            self.custom.delete_namespaced_custom_object(
                *CAPI, self.namespace, "machines", machine["metadata"]["name"]
            )
            self.core.delete_node(node)
            self.nodes.remove(node)
        for _ in range(replicas - len(machines)):
            name = f"{self.deployment}-{secrets.token_hex(3)}"
            body = machine_deployment(self.deployment, self.namespace)["spec"]["template"]
            body = {
                "apiVersion": "cluster.x-k8s.io/v1beta2",
                "kind": "Machine",
                "metadata": {"name": name, "namespace": self.namespace, **body["metadata"]},
                "spec": body["spec"],
            }
            self.custom.create_namespaced_custom_object(*CAPI, self.namespace, "machines", body)
            node = f"node-{name}"
            self.core.create_node({"metadata": {"name": node}})
            self.nodes.append(node)
            self.custom.patch_namespaced_custom_object_status(
                *CAPI, self.namespace, "machines", name, {"status": {"nodeRef": {"name": node}}}
            )

    def gpus_appear(self) -> None:
        for node in self.nodes:
            self.core.patch_node_status(node, gpu_status_patch("nvidia.com/gpu", 8))

    def cleanup(self) -> None:
        for node in self.nodes:
            self.core.delete_node(node)


def step(r: Reconciler, api_client: Any, pool: str, now: float) -> PoolPlan:
    decision = r.reconcile(read_pool(api_client, pool), now=now)
    assert decision is not None
    return decision


@pytest.fixture
def capi_pool(
    kubectl: Kubectl,
    api_client: Any,
    pytorchjob_crd: str,
    cluster_api_crds: list[str],
    namespace: str,
) -> Any:
    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"capi-{secrets.token_hex(3)}"
    kubectl("apply", "-f", "-", stdin=json.dumps(machine_deployment("gpu-md", namespace)))
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": name},
        "spec": {
            "gpu": {"perNode": 8},
            "provider": {"clusterAPI": {"namespace": namespace, "machineDeployment": "gpu-md"}},
            "scaling": {"maxNodes": 4},
            "scaleDown": {"idleAfter": "5m", "minNodeAge": "1m"},
            "jobSelector": {"namespaces": [namespace]},
            "nodeTemplate": {"labels": {"kubeforge.io/gpu": "h100"}, "taints": [TAINT]},
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    capi = FakeCapi(api_client, namespace, "gpu-md")
    yield name, capi
    capi.cleanup()
    kubectl("delete", "gpunodepool", name)


def _job(api_client: Any, namespace: str, name: str, workers: int) -> None:
    submit_pytorchjob(
        api_client,
        build_pytorchjob(name, namespace, "img", ["train"], workers=workers, gpus_per_replica=8),
    )


def _bind(api_client: Any, namespace: str, job: str, kind: str, node: str) -> str:
    from kubernetes import client

    name = f"{job}-{kind}-{secrets.token_hex(2)}"
    labels = {"training.kubeflow.org/job-name": job, "training.kubeflow.org/replica-type": kind}
    limits = {"nvidia.com/gpu": "8"}
    pod = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "pytorch", "image": "img", "resources": {"limits": limits}}],
        },
    }
    client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod)
    return name


def _finish(api_client: Any, namespace: str, job: str, pods: list[str]) -> None:
    from kubernetes import client

    for pod in pods:
        client.CoreV1Api(api_client).patch_namespaced_pod_status(
            pod, namespace, {"status": {"phase": "Succeeded"}}
        )
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        "kubeflow.org",
        "v1",
        namespace,
        "pytorchjobs",
        job,
        {"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}},
    )


def test_scale_up_restart_safe_then_remove_exactly_the_idle_machines(
    api_client: Any, namespace: str, capi_pool: Any
) -> None:
    from kubernetes import client

    pool, capi = capi_pool
    core = client.CoreV1Api(api_client)
    t0 = time.time()  # Machines carry real creation times; the injected clock starts there
    _job(api_client, namespace, "big", workers=1)  # 2 nodes
    _job(api_client, namespace, "small", workers=0)  # 1 node

    first = step(Reconciler(api_client), api_client, pool, t0)
    assert first.decision is Decision.SCALE_UP and first.add_nodes == 3
    assert capi.replicas() == 3
    assert read_pool(api_client, pool)["status"]["nodes"]["requested"] == 3

    # A restarted operator (a fresh Reconciler, no memory) asks for nothing more.
    r = Reconciler(api_client)
    assert step(r, api_client, pool, t0 + 5).decision is Decision.NOOP
    assert capi.replicas() == 3

    capi.sync()  # Machines and their Nodes appear, GPUs not yet advertised
    assert step(r, api_client, pool, t0 + 10).decision is Decision.NOOP
    assert capi.replicas() == 3
    status = read_pool(api_client, pool)["status"]
    assert status["nodes"]["registering"] == 3 and status["nodes"]["requested"] == 0
    for name in capi.nodes:  # the operator labels and taints the pool's nodes
        node = core.read_node(name)
        assert node.metadata.labels["kubeforge.io/gpu"] == "h100"
        assert node.metadata.labels["kubeforge.io/pool"] == pool
        assert (TAINT["key"], TAINT["value"], "NoSchedule") in {
            (t.key, t.value, t.effect) for t in node.spec.taints
        }

    capi.gpus_appear()
    step(r, api_client, pool, t0 + 20)
    assert read_pool(api_client, pool)["status"]["nodes"]["gpuReady"] == 3
    small_node, *big_nodes = capi.nodes
    big_pods = [
        _bind(api_client, namespace, "big", kind, node)
        for kind, node in zip(("master", "worker"), big_nodes, strict=True)
    ]
    _bind(api_client, namespace, "small", "master", small_node)
    assert step(r, api_client, pool, t0 + 30).decision is Decision.NOOP

    _finish(api_client, namespace, "big", big_pods)  # small keeps running
    step(r, api_client, pool, t0 + 100)  # idle from here
    drain = step(r, api_client, pool, t0 + 401)
    assert drain.decision is Decision.DRAIN and sorted(drain.nodes_to_drain) == sorted(big_nodes)
    gone = step(r, api_client, pool, t0 + 402)
    assert gone.decision is Decision.SCALE_DOWN

    # Exactly the idle nodes' Machines are marked, and the replicas went down by as many.
    marked = {
        m["status"]["nodeRef"]["name"]
        for m in capi.machines()
        if DELETE_MACHINE in m["metadata"].get("annotations", {})
    }
    assert marked == set(big_nodes)
    assert capi.replicas() == 1
    # Restarted again before Cluster API deleted them: nothing is removed twice.
    again = step(Reconciler(api_client), api_client, pool, t0 + 403)
    assert again.decision is Decision.NOOP
    assert capi.replicas() == 1
    assert read_pool(api_client, pool)["status"]["nodes"]["draining"] == 2

    capi.sync()  # the MachineSet controller deletes the marked Machines
    assert capi.nodes == [small_node]
    assert [m["status"]["nodeRef"]["name"] for m in capi.machines()] == [small_node]


def test_a_removal_stopped_between_mark_and_decrement_is_finished_once(
    api_client: Any, namespace: str, capi_pool: Any
) -> None:
    from kubernetes import client

    pool, capi = capi_pool
    custom = client.CustomObjectsApi(api_client)
    custom.patch_namespaced_custom_object_scale(
        *CAPI, namespace, "machinedeployments", "gpu-md", {"spec": {"replicas": 2}}
    )
    capi.sync()
    capi.gpus_appear()
    md = custom.get_namespaced_custom_object(*CAPI, namespace, "machinedeployments", "gpu-md")
    victim = capi.machines()[0]["metadata"]["name"]
    # What an operator killed right after marking leaves: the mark, replicas unchanged.
    custom.patch_namespaced_custom_object(
        *CAPI,
        namespace,
        "machines",
        victim,
        {
            "metadata": {
                "annotations": {
                    DELETE_MACHINE: "kubeforge",
                    "kubeforge.io/marked-at-generation": str(md["metadata"]["generation"]),
                }
            }
        },
    )
    r = Reconciler(api_client)
    step(r, api_client, pool, time.time())
    assert capi.replicas() == 1  # the decrement is made...
    step(r, api_client, pool, time.time() + 1)
    step(Reconciler(api_client), api_client, pool, time.time() + 2)
    assert capi.replicas() == 1  # ...once
    status = read_pool(api_client, pool)["status"]["nodes"]
    assert (status["draining"], status["requested"], status["gpuReady"]) == (1, 0, 1)
    capi.sync()
    assert [m["metadata"]["name"] for m in capi.machines()] != [victim]
    assert len(capi.machines()) == 1


def test_a_missing_machine_deployment_backs_off_and_says_so(
    api_client: Any, kubectl: Kubectl, namespace: str, capi_pool: Any
) -> None:
    pool, _ = capi_pool
    kubectl(
        "patch",
        "gpunodepool",
        pool,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"provider": {"clusterAPI": {"machineDeployment": "absent"}}}}),
    )
    r = Reconciler(api_client)
    assert r.reconcile(read_pool(api_client, pool), now=1000) is None
    ready = {c["type"]: c for c in read_pool(api_client, pool)["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ProviderUnavailable")
    assert f"MachineDeployment {namespace}/absent not found" in ready["message"]
    assert "retrying in 5s (attempt 1)" in ready["message"]
    warnings = json.loads(
        kubectl(
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            f"involvedObject.name={pool},reason=ProviderUnavailable",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert warnings and warnings[0]["type"] == "Warning"

    assert r.reconcile(read_pool(api_client, pool), now=1002) is None  # backing off: not tried
    assert "(attempt 1)" in json.dumps(read_pool(api_client, pool)["status"]["conditions"])
    assert r.reconcile(read_pool(api_client, pool), now=1006) is None  # tried again, failed again
    assert "retrying in 10s (attempt 2)" in json.dumps(read_pool(api_client, pool)["status"])

    kubectl("apply", "-f", "-", stdin=json.dumps(machine_deployment("absent", namespace)))
    assert r.reconcile(read_pool(api_client, pool), now=1017) is not None
    ready = {c["type"]: c for c in read_pool(api_client, pool)["status"]["conditions"]}["Ready"]
    assert ready["status"] == "True"
