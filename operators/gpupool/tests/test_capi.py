"""The Cluster API provider against the real API server and the real Cluster API CRDs.

The Cluster API controllers cannot run in the test cluster (they need a management cluster and
an infrastructure provider), so the test plays the MachineSet controller alone: it creates
Machines and their Nodes as the MachineDeployment's replicas grow, advertises the Nodes' GPUs
(a device plugin's part), and deletes the Machine that carries ``cluster.x-k8s.io/delete-machine``
when the replicas shrink. The Nodes are kwok's, so everything on them is real: the training
operator makes the jobs' pods, the scheduler binds them, kwok runs and completes them.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.clock import ManualClock
from kubeforge.operators.gpupool.clients.reconcile import Reconciler, ReconcileResult
from kubeforge.operators.gpupool.core.machines import DELETE_MACHINE, DEPLOYMENT_LABEL
from kubeforge.operators.gpupool.core.nodes import gpu_status_patch
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan
from kubeforge.testing.builders import (
    gpu_pool,
    job_conditions,
    job_pods,
    machine,
    machine_deployment,
    node,
    pytorchjob,
    read_pool,
)
from kubeforge.testing.controllers import Kwok, TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd

pytestmark = pytest.mark.cluster
MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"
CAPI = ("cluster.x-k8s.io", "v1beta2")
TAINT = {"key": "kubeforge.io/gpu", "value": "h100", "effect": "NoSchedule"}


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
        for gone in marked[: max(0, excess)]:
            name = gone["status"]["nodeRef"]["name"]
            self.custom.delete_namespaced_custom_object(
                *CAPI, self.namespace, "machines", gone["metadata"]["name"]
            )
            self.core.delete_node(name)
            self.nodes.remove(name)
        for _ in range(replicas - len(machines)):
            name = f"{self.deployment}-{secrets.token_hex(3)}"
            body = machine(name, machine_deployment(self.deployment, self.namespace)).obj()
            self.custom.create_namespaced_custom_object(*CAPI, self.namespace, "machines", body)
            joined = f"node-{name}"
            self.core.create_node(node(joined).kwok().obj())  # kwok plays its kubelet
            self.nodes.append(joined)
            self.custom.patch_namespaced_custom_object_status(
                *CAPI, self.namespace, "machines", name, {"status": {"nodeRef": {"name": joined}}}
            )

    def gpus_appear(self) -> None:
        for name in self.nodes:
            self.core.patch_node_status(name, gpu_status_patch("nvidia.com/gpu", 8))

    def cleanup(self) -> None:
        for name in self.nodes:
            self.core.delete_node(name)


def reconcile_at(r: Reconciler, api_client: Any, pool: str, now: float) -> ReconcileResult:
    """One reconcile of ``pool`` with the reconciler's clock set to ``now``."""
    assert isinstance(r.clock, ManualClock)
    r.clock.at = now
    return r.reconcile(read_pool(api_client, pool))


def step(r: Reconciler, api_client: Any, pool: str, now: float) -> PoolPlan:
    """One reconcile at ``now``; the provider is reachable, so a plan comes back."""
    result = reconcile_at(r, api_client, pool, now)
    assert result.plan is not None
    return result.plan


@pytest.fixture
def capi_pool(
    kubectl: Kubectl,
    api_client: Any,
    pytorchjob_crd: str,
    cluster_api_crds: list[str],
    namespace: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
) -> Any:
    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"capi-{secrets.token_hex(3)}"
    kubectl("apply", "-f", "-", stdin=json.dumps(machine_deployment("gpu-md", namespace).obj()))
    body = (
        gpu_pool(name)
        .cluster_api(namespace, "gpu-md")
        .scaling(maxNodes=4)
        .scale_down(idleAfter="5m", minNodeAge="1m")
        .job_namespaces(namespace)
        .node_labels(**{"kubeforge.io/gpu": "h100"})
        .taint(**TAINT)
        .obj()
    )
    kubectl("apply", "-f", "-", stdin=json.dumps(body))
    capi = FakeCapi(api_client, namespace, "gpu-md")
    yield name, capi
    capi.cleanup()
    kubectl("delete", "gpunodepool", name)


def test_scale_up_restart_safe_then_remove_exactly_the_idle_machines(
    api_client: Any, namespace: str, capi_pool: Any
) -> None:
    from kubernetes import client

    pool, capi = capi_pool
    core = client.CoreV1Api(api_client)
    t0 = time.time()  # Machines carry real creation times; the injected clock starts there
    clock = ManualClock(t0)
    # The pool's nodes are tainted: its jobs tolerate the taint. big ends soon, small runs on.
    for name, workers, runs in (("big", 1, "10s"), ("small", 0, "1h")):  # 2 nodes, 1 node
        job = pytorchjob(name).namespace(namespace).workers(workers).gpus(8)
        job.selects(**{"kubeforge.io/gpu": "h100"}).tolerates(TAINT["key"], TAINT["value"])
        job.runs_for(runs).submit(api_client)

    first = step(Reconciler(api_client, clock), api_client, pool, t0)
    assert first.decision is Decision.SCALE_UP and first.add_nodes == 3
    assert capi.replicas() == 3
    assert read_pool(api_client, pool)["status"]["nodes"]["requested"] == 3

    # A restarted operator (a fresh Reconciler, no memory) asks for nothing more.
    r = Reconciler(api_client, clock)
    assert step(r, api_client, pool, t0 + 5).decision is Decision.NOOP
    assert capi.replicas() == 3

    capi.sync()  # Machines and their Nodes appear, GPUs not yet advertised
    assert step(r, api_client, pool, t0 + 10).decision is Decision.NOOP
    assert capi.replicas() == 3
    status = read_pool(api_client, pool)["status"]
    assert status["nodes"]["registering"] == 3 and status["nodes"]["requested"] == 0
    for name in capi.nodes:  # the operator labels and taints the pool's nodes
        stored = core.read_node(name)
        assert stored.metadata.labels["kubeforge.io/gpu"] == "h100"
        assert stored.metadata.labels["kubeforge.io/pool"] == pool
        assert (TAINT["key"], TAINT["value"], "NoSchedule") in {
            (t.key, t.value, t.effect) for t in stored.spec.taints
        }

    capi.gpus_appear()
    step(r, api_client, pool, t0 + 20)
    assert read_pool(api_client, pool)["status"]["nodes"]["gpuReady"] == 3

    # The real scheduler binds the three pods, one per node; kwok runs them.
    def placed() -> dict[str, list[str]]:
        return {
            job: [p.spec.node_name for p in job_pods(api_client, namespace, job)]
            for job in ("big", "small")
        }

    def all_bound() -> bool:
        nodes = [name for names in placed().values() for name in names]
        return len(nodes) == 3 and all(nodes)

    wait_for(all_bound, timeout=90)
    big_nodes, (small_node,) = placed()["big"], placed()["small"]
    assert sorted([*big_nodes, small_node]) == sorted(capi.nodes)
    assert step(r, api_client, pool, t0 + 30).decision is Decision.NOOP

    # kwok completes big's ranks and the training operator marks it Succeeded; small runs on.
    wait_for(lambda: job_conditions(api_client, namespace, "big").get("Succeeded") == "True", 90)
    wait_for(
        lambda: {p.status.phase for p in job_pods(api_client, namespace, "big")} == {"Succeeded"}
    )
    assert job_conditions(api_client, namespace, "small").get("Running") == "True"
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
    again = step(Reconciler(api_client, clock), api_client, pool, t0 + 403)
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
    t0 = time.time()
    clock = ManualClock(t0)
    r = Reconciler(api_client, clock)
    step(r, api_client, pool, t0)
    assert capi.replicas() == 1  # the decrement is made...
    step(r, api_client, pool, t0 + 1)
    step(Reconciler(api_client, clock), api_client, pool, t0 + 2)
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
    r = Reconciler(api_client, ManualClock())
    assert reconcile_at(r, api_client, pool, 1000).plan is None
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

    backing_off = reconcile_at(r, api_client, pool, 1002)
    assert backing_off.plan is None and backing_off.observation is None  # not tried
    assert "(attempt 1)" in json.dumps(read_pool(api_client, pool)["status"]["conditions"])
    assert reconcile_at(r, api_client, pool, 1006).plan is None  # tried again, failed again
    assert "retrying in 10s (attempt 2)" in json.dumps(read_pool(api_client, pool)["status"])

    kubectl("apply", "-f", "-", stdin=json.dumps(machine_deployment("absent", namespace).obj()))
    assert reconcile_at(r, api_client, pool, 1017).plan is not None
    ready = {c["type"]: c for c in read_pool(api_client, pool)["status"]["conditions"]}["Ready"]
    assert ready["status"] == "True"
