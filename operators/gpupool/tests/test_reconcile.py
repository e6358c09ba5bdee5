"""A pool reconciled against the real API server, the kwok provider and an injected clock.

Nothing here plays a controller: the real training operator makes the jobs' pods and services,
the real scheduler binds them, kwok runs and completes them, Kueue admits or suspends jobs; the
test drives only the pool's reconciler, on its own clock (GPUs appear ``gpuDelay`` after a node is
requested on that clock, idle timers run on it).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.operators.clock import ManualClock
from kubeforge.operators.events import COMPONENT
from kubeforge.operators.gpupool.clients.reconcile import Reconciler, ReconcileResult
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan
from kubeforge.testing.builders import (
    delete_kueue_queue,
    gpu_pool,
    job_conditions,
    job_pods,
    job_suspended,
    kueue_queue,
    pytorchjob,
    read_pool,
    scale_up_events,
    set_kueue_quota,
)
from kubeforge.testing.controllers import Kueue, Kwok, TrainingOperator
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd

pytestmark = pytest.mark.cluster
MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"


@pytest.fixture
def pool(
    kubectl: Kubectl,
    api_client: Any,
    pytorchjob_crd: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
) -> Any:
    """A pool of at most 4 kwok nodes of 8 GPUs (GPUs 30 s after a node is requested)."""
    from kubernetes import client

    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    name = f"sim-{secrets.token_hex(3)}"
    body = (
        gpu_pool(name)
        .product("NVIDIA-H100")
        .kwok(gpuDelay="30s")
        .scaling(maxNodes=4)
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


def patch_scaling(kubectl: Kubectl, pool: str, **scaling: Any) -> None:
    """Merge ``scaling`` into the pool's ``spec.scaling``."""
    body = json.dumps({"spec": {"scaling": scaling}})
    kubectl("patch", "gpunodepool", pool, "--type=merge", "-p", body)


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
    """The pool operator's Events about the object ``name``: reason -> message.

    The training operator posts its own on a job (``Unschedulable`` too, per pod).
    """
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
    items = json.loads(out)["items"]
    return {e["reason"]: e["message"] for e in items if e["source"].get("component") == COMPONENT}


def scale_ups(kubectl: Kubectl, pool: str) -> list[tuple[int, str]]:
    """The pool's ``ScaleUp`` Events: (count, message), first posted first."""
    return [(e["count"], e["message"]) for e in scale_up_events(kubectl, pool)]


def pool_nodes(r: Reconciler, api_client: Any, pool: str) -> list[str]:
    """The names of the pool's nodes."""
    return sorted(n.metadata.name for n in r.provider_nodes(read_pool(api_client, pool)))


def wait_for_pods(api_client: Any, namespace: str, job: str, count: int) -> None:
    """Until the training operator has made the job's ``count`` pods."""
    wait_for(lambda: len(job_pods(api_client, namespace, job)) == count, timeout=60)


def all_running(api_client: Any, namespace: str, job: str, count: int) -> bool:
    """The job's ``count`` pods are bound and kwok runs them."""
    pods = job_pods(api_client, namespace, job)
    return len(pods) == count and all(
        p.spec.node_name and p.status.phase == "Running" for p in pods
    )


def succeeded(api_client: Any, namespace: str, job: str) -> bool:
    """The training operator marked the job Succeeded."""
    return job_conditions(api_client, namespace, job).get("Succeeded") == "True"


def unschedulable(api_client: Any, namespace: str, job: str) -> bool:
    """The scheduler tried every pod of the job and found no node for it."""
    pods = job_pods(api_client, namespace, job)
    return bool(pods) and all(
        not p.spec.node_name
        and any(
            c.type == "PodScheduled" and c.reason == "Unschedulable"
            for c in p.status.conditions or []
        )
        for p in pods
    )


def test_a_gang_gets_exactly_its_nodes_runs_to_success_and_the_idle_nodes_go(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    clock = ManualClock()
    r = reconciler(api_client, clock)
    # Master + 3 Workers, 8 GPUs each; kwok completes each rank 20 s after it is Ready.
    job = pytorchjob("llm").namespace(namespace).workers(3).gpus(8).pool(pool).runs_for("20s")
    job.submit(api_client)
    wait_for_pods(api_client, namespace, "llm", 4)  # the training operator's pods
    services = {s.metadata.name for s in core.list_namespaced_service(namespace).items}
    assert {"llm-master-0", "llm-worker-0", "llm-worker-2"} <= services

    first = step(r, api_client, pool, 0)
    assert first.decision is Decision.SCALE_UP and first.add_nodes == 4
    nodes = pool_nodes(r, api_client, pool)
    assert len(nodes) == 4
    status = read_pool(api_client, pool)["status"]
    assert status["nodes"]["registering"] == 4 and status["nodes"]["gpuReady"] == 0
    assert status["jobs"] == [
        {
            "job": f"{namespace}/llm",
            "gpus": 32,
            "placement": "needs_nodes",
            "reason": "whole job needs 4 new node(s)",
        }
    ]
    assert status["lastScaleUpTime"] and "lastScaleDownTime" not in status
    assert "scale up by 4" in events(kubectl, "default", pool)["ScaleUp"]

    # GPUs not advertised yet: the scheduler has nowhere to put a rank, and the nodes in flight
    # count: nothing is requested twice.
    wait_for(lambda: unschedulable(api_client, namespace, "llm"), timeout=60)
    again = step(r, api_client, pool, 10)
    assert again.decision is Decision.NOOP
    assert pool_nodes(r, api_client, pool) == nodes

    appear = reconcile_at(r, api_client, pool, 40)  # past gpuDelay: GPUs appear
    status = read_pool(api_client, pool)["status"]
    assert status["readyNodes"] == 4 and status["gpusAllocatable"] == 32
    assert status["nodes"]["gpuReady"] == 4 and status["nodes"]["registering"] == 0
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["message"].startswith("4 GPU-ready node(s)")

    # The real scheduler binds one 8-GPU rank on each 8-GPU node; kwok runs them.
    wait_for(lambda: all_running(api_client, namespace, "llm", 4), timeout=90)
    assert sorted(p.spec.node_name for p in job_pods(api_client, namespace, "llm")) == nodes
    busy = reconcile_at(r, api_client, pool, 50)
    assert busy.plan is not None and busy.plan.decision is Decision.NOOP
    status = read_pool(api_client, pool)["status"]
    assert status["gpusAllocated"] == 32 and status["gpus"]["idle"] == 0
    assert status["jobs"] == [] and status["pendingJobs"] == 0
    # All pods bound (the scheduler may beat the reconcile that advertised the GPUs): the
    # job's wait is measured, once.
    waits = appear.job_waits + busy.job_waits
    assert len(waits) == 1 and waits[0] >= 0

    # kwok completes the ranks; the training operator marks the job Succeeded.
    wait_for(lambda: succeeded(api_client, namespace, "llm"), timeout=120)
    wait_for(
        lambda: all(p.status.phase == "Succeeded" for p in job_pods(api_client, namespace, "llm")),
        30,
    )
    assert step(r, api_client, pool, 100).decision is Decision.NOOP  # idle from 100
    assert read_pool(api_client, pool)["status"]["gpusAllocated"] == 0
    # A restarted operator (a fresh Reconciler) keeps the idle timers: they live on the Nodes.
    r = reconciler(api_client, clock)
    assert step(r, api_client, pool, 300).decision is Decision.NOOP  # < idleAfter
    assert core.read_node(nodes[0]).metadata.annotations["kubeforge.io/idle-since"] == "100.000"
    r = reconciler(api_client, clock)
    drain = step(r, api_client, pool, 401)
    assert drain.decision is Decision.DRAIN and sorted(drain.nodes_to_drain) == nodes
    assert all(core.read_node(n).spec.unschedulable for n in nodes)
    assert read_pool(api_client, pool)["status"]["nodes"]["cordoned"] == 4
    assert "idle longer than 300s" in events(kubectl, "default", pool)["Cordon"]
    gone = step(r, api_client, pool, 402)
    assert gone.decision is Decision.SCALE_DOWN and sorted(gone.nodes_to_remove) == nodes
    assert pool_nodes(r, api_client, pool) == []
    assert read_pool(api_client, pool)["status"]["lastScaleDownTime"]
    assert "remove cordoned idle node(s)" in events(kubectl, "default", pool)["ScaleDown"]
    assert [count for count, _ in scale_ups(kubectl, pool)] == [1]  # one scale-up in all


def test_two_jobs_arriving_while_nodes_boot_get_their_own_nodes_once(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    r = reconciler(api_client, ManualClock())
    for name in ("first", "second"):
        job = pytorchjob(name).namespace(namespace).workers(1).gpus(8).pool(pool).runs_for("2s")
        job.submit(api_client)
        wait_for_pods(api_client, namespace, name, 2)
        if name == "first":
            assert step(r, api_client, pool, 0).add_nodes == 2
    # The second arrives while the first's nodes boot: it gets 2 nodes of its own, the first's
    # in-flight nodes are not asked for again.
    second = step(r, api_client, pool, 10)
    assert second.decision is Decision.SCALE_UP and second.add_nodes == 2
    assert step(r, api_client, pool, 20).decision is Decision.NOOP
    nodes = pool_nodes(r, api_client, pool)
    assert len(nodes) == 4
    assert [m.split(" (")[0] for _, m in scale_ups(kubectl, pool)] == [
        f"scale up by 2: {namespace}/first",
        f"scale up by 2: {namespace}/second",
    ]

    step(r, api_client, pool, 45)  # GPUs appear on all four (the last requested at 10)
    wait_for(lambda: all(succeeded(api_client, namespace, n) for n in ("first", "second")), 120)
    placed = [
        p.spec.node_name for n in ("first", "second") for p in job_pods(api_client, namespace, n)
    ]
    assert sorted(placed) == nodes  # one rank per node, on exactly the nodes asked for
    assert step(r, api_client, pool, 50).decision is Decision.NOOP
    assert pool_nodes(r, api_client, pool) == nodes
    assert [count for count, _ in scale_ups(kubectl, pool)] == [1, 1]


def test_a_job_larger_than_the_pool_is_reported_and_scales_nothing(
    api_client: Any, namespace: str, pool: str
) -> None:
    # 6 nodes of 8 GPUs; maxNodes is 4
    pytorchjob("huge").namespace(namespace).workers(5).gpus(8).pool(pool).submit(api_client)
    wait_for_pods(api_client, namespace, "huge", 6)
    r = reconciler(api_client, ManualClock())
    decision = step(r, api_client, pool, 0)
    assert decision.decision is Decision.NOOP
    assert step(r, api_client, pool, 60).decision is Decision.NOOP
    assert pool_nodes(r, api_client, pool) == []
    status = read_pool(api_client, pool)["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["CapacityUnavailable"]["status"] == "True"
    assert "above maxNodes 4" in conditions["CapacityUnavailable"]["message"]
    assert status["jobs"][0]["placement"] == "capacity_unavailable"
    # The real scheduler finds no node for any of its pods; none runs.
    wait_for(lambda: unschedulable(api_client, namespace, "huge"), timeout=60)


def test_a_pod_larger_than_a_node_gets_an_event_on_the_job(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    # The pool's nodes have 8 GPUs.
    pytorchjob("wide").namespace(namespace).workers(1).gpus(16).pool(pool).submit(api_client)
    wait_for_pods(api_client, namespace, "wide", 2)
    r = reconciler(api_client, ManualClock())
    assert step(r, api_client, pool, 0).decision is Decision.NOOP
    assert pool_nodes(r, api_client, pool) == []
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
            "involvedObject.name=wide,involvedObject.kind=PyTorchJob,reason=Unschedulable",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert [e["count"] for e in listed if e["source"].get("component") == COMPONENT] == [2]


def test_nodes_not_gpu_ready_within_provision_timeout_are_replaced(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    from kubernetes import client

    # gpuDelay is 30s: the first nodes can never make it in time
    patch_scaling(kubectl, pool, provisionTimeout="20s")
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


# -- Under Kueue: Kueue decides which jobs run (quota), the pool brings nodes for those ---------


def test_a_job_kueue_suspends_is_no_demand_until_kueue_admits_it(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str, kueue: Kueue
) -> None:
    queue = kueue_queue(api_client, namespace, gpus=0)  # no quota: nothing is admitted
    try:
        job = pytorchjob("queued").namespace(namespace).workers(1).gpus(8).pool(pool)
        job.queue(queue).runs_for("2s").submit(api_client)
        assert job_suspended(api_client, namespace, "queued")  # Kueue's webhook on creation
        r = reconciler(api_client, ManualClock())
        assert step(r, api_client, pool, 0).decision is Decision.NOOP
        assert step(r, api_client, pool, 10).decision is Decision.NOOP
        assert pool_nodes(r, api_client, pool) == []
        assert read_pool(api_client, pool)["status"]["jobs"] == []
        assert job_pods(api_client, namespace, "queued") == []  # suspended: no pod made

        set_kueue_quota(api_client, queue, gpus=16)
        wait_for(lambda: not job_suspended(api_client, namespace, "queued"), timeout=60)
        wait_for_pods(api_client, namespace, "queued", 2)
        admitted = step(r, api_client, pool, 20)
        assert admitted.decision is Decision.SCALE_UP and admitted.add_nodes == 2
        step(r, api_client, pool, 55)  # GPUs appear
        wait_for(lambda: succeeded(api_client, namespace, "queued"), timeout=120)
    finally:
        delete_kueue_queue(api_client, queue)


def test_two_gangs_against_a_quota_for_one_grow_the_pool_for_the_admitted_one_only(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str, kueue: Kueue
) -> None:
    queue = kueue_queue(api_client, namespace, gpus=16)  # one gang of 2 x 8 GPUs
    try:
        for name in ("first", "second"):
            job = pytorchjob(name).namespace(namespace).workers(1).gpus(8).pool(pool)
            job.queue(queue).runs_for("3s").submit(api_client)
            if name == "first":
                wait_for(lambda: not job_suspended(api_client, namespace, "first"), timeout=60)
        assert job_suspended(api_client, namespace, "second")  # the quota is spent
        wait_for_pods(api_client, namespace, "first", 2)
        r = reconciler(api_client, ManualClock())
        grow = step(r, api_client, pool, 0)
        assert grow.decision is Decision.SCALE_UP and grow.add_nodes == 2
        assert [j["job"] for j in read_pool(api_client, pool)["status"]["jobs"]] == [
            f"{namespace}/first"
        ]
        assert step(r, api_client, pool, 10).decision is Decision.NOOP  # never for both
        nodes = pool_nodes(r, api_client, pool)
        assert len(nodes) == 2

        step(r, api_client, pool, 40)  # GPUs appear: the first runs and finishes
        wait_for(lambda: succeeded(api_client, namespace, "first"), timeout=120)
        # Kueue gives its quota to the second, which runs on the same, now idle, nodes.
        wait_for(lambda: not job_suspended(api_client, namespace, "second"), timeout=60)
        wait_for_pods(api_client, namespace, "second", 2)
        assert step(r, api_client, pool, 50).decision is Decision.NOOP
        wait_for(lambda: succeeded(api_client, namespace, "second"), timeout=120)
        placed = {p.spec.node_name for p in job_pods(api_client, namespace, "second")}
        assert placed == set(nodes)
        assert pool_nodes(r, api_client, pool) == nodes
        assert [c for c, _ in scale_ups(kubectl, pool)] == [1]  # the first's scale-up alone
    finally:
        delete_kueue_queue(api_client, queue)


def test_a_gang_waits_for_the_node_a_running_job_declares_it_will_free_before_a_boot(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    # The pool has seen one boot of 120 s (on its clock, set to wall time: the pods' startTime
    # is wall time). The first job declares 60 s of run time on its pod template; the training
    # operator copies the annotation to the pod, so once it runs its node is expected to free
    # sooner than a new node could boot: the second job waits for it, no node is added.
    def submit(name: str) -> None:
        job = pytorchjob(name).namespace(namespace).workers(0).gpus(8).pool(pool)
        manifest = job.runs_for("600s").obj()
        template = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        template["metadata"]["annotations"][EXPECTED_RUNTIME_ANNOTATION] = "60"
        kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
        wait_for_pods(api_client, namespace, name, 1)

    started = time.time() - 120.0
    r = reconciler(api_client, ManualClock(started))
    submit("first")
    assert step(r, api_client, pool, started).add_nodes == 1
    reconcile_at(r, api_client, pool, started + 10.0)  # seen booting
    reconcile_at(r, api_client, pool, started + 120.0)  # its GPUs appear: a 120 s boot seen
    wait_for(lambda: all_running(api_client, namespace, "first", 1), timeout=90)
    (pod,) = job_pods(api_client, namespace, "first")
    assert pod.metadata.annotations[EXPECTED_RUNTIME_ANNOTATION] == "60" and pod.status.start_time

    submit("second")
    plan = step(r, api_client, pool, time.time())
    assert plan.decision is Decision.NOOP and plan.add_nodes == 0
    (second,) = [j for j in read_pool(api_client, pool)["status"]["jobs"] if "second" in j["job"]]
    assert second["placement"] == "waiting"
    assert "expected to end within the observed boot time" in second["reason"]


def test_headroom_nodes_let_a_job_start_without_a_boot_and_are_refilled(
    api_client: Any, kubectl: Kubectl, namespace: str, pool: str
) -> None:
    # headroomNodes 1: with no job at all the pool keeps one whole free node. A job that comes
    # is bound to it by the real scheduler at once (no boot to wait for), and the pool asks for
    # one node to stand in as the next headroom. The empty spare is never scaled down.
    patch_scaling(kubectl, pool, headroomNodes=1)
    r = reconciler(api_client, ManualClock())
    first = step(r, api_client, pool, 0)
    assert first.decision is Decision.SCALE_UP and first.add_nodes == 1
    assert "headroom" in first.reasons[0]
    assert step(r, api_client, pool, 10).decision is Decision.NOOP  # in flight: not asked twice
    reconcile_at(r, api_client, pool, 40)  # past gpuDelay: its GPUs appear
    (spare,) = pool_nodes(r, api_client, pool)

    job = pytorchjob("quick").namespace(namespace).workers(0).gpus(8).pool(pool)
    job.runs_for("600s").submit(api_client)
    wait_for(lambda: all_running(api_client, namespace, "quick", 1), timeout=90)
    assert [p.spec.node_name for p in job_pods(api_client, namespace, "quick")] == [spare]

    refill = step(r, api_client, pool, 50)
    assert refill.decision is Decision.SCALE_UP and refill.add_nodes == 1
    reconcile_at(r, api_client, pool, 90)
    assert len(pool_nodes(r, api_client, pool)) == 2
    # Long past idleAfter (5m) and minNodeAge (1m): the empty node is the headroom and stays.
    assert step(r, api_client, pool, 2_000).decision is Decision.NOOP
    assert len(pool_nodes(r, api_client, pool)) == 2
