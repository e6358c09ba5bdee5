"""The pure parts of a reconcile beside the planner: provisioning, the status, job waits."""

from __future__ import annotations

from kubeforge.operators.gpupool.api.models import Placement
from kubeforge.operators.gpupool.core.members import PoolMember
from kubeforge.operators.gpupool.core.planner import Decision, JobVerdict, NodeState, PoolPlan
from kubeforge.operators.gpupool.core.provisioning import check_provisioning
from kubeforge.operators.gpupool.core.status import Observation, build_status
from kubeforge.operators.gpupool.core.waits import job_wait_seconds
from kubeforge.operators.schema import to_dict
from kubeforge.testing.builders import node, pytorchjob, training_pod

T0 = "2026-11-23T10:00:00Z"
T0_S = 1795428000.0  # T0 in seconds since the epoch


def state(name: str, created: float, ready: bool) -> NodeState:
    return NodeState(name, created, ready, 8 if ready else 0)


def test_only_nodes_not_ready_past_the_timeout_fail() -> None:
    nodes = [state("ok", 0, True), state("young", 950, False), state("late", 0, False)]
    check = check_provisioning(nodes, timeout_s=900, now=1000)
    assert [n.name for n in check.healthy] == ["ok", "young"]
    assert [n.name for n in check.failed] == ["late"]
    assert check.reason(900, 1000) == (
        "late requested 1000s ago, GPUs not ready within provisionTimeout 900s"
    )


def _plan(decision: Decision, *verdicts: JobVerdict) -> PoolPlan:
    return PoolPlan(decision, 2, ("scale up by 2: ml/llm (16 GPUs)",), verdicts)


def test_status_counts_nodes_by_state_and_keeps_transition_times() -> None:
    members = [
        PoolMember("r", 0, node("r").gpus(8).obj()),
        PoolMember("reg", 0, node("reg").obj()),
        PoolMember("md/requested-0", 0),
        PoolMember("c", 0, node("c").obj()),
        PoolMember("gone", 0, node("gone").obj(), leaving=True),
    ]
    nodes = [
        NodeState("r", 0, True, 8, 4, busy=True),
        NodeState("reg", 0, False),
        NodeState("md/requested-0", 0, False),
        NodeState("c", 0, True, 8, 0, cordoned=True),
    ]
    verdict = JobVerdict("ml/llm", 16, Placement.NEEDS_NODES, "whole job needs 2 new node(s)")
    obs = Observation(3, members, nodes, plan=_plan(Decision.SCALE_UP, verdict), scaled_up=True)
    previous = {
        "lastScaleDownTime": "2026-11-23T09:00:00Z",
        "conditions": [
            {"type": "ScalingUp", "status": "True", "lastTransitionTime": "2026-11-23T09:30:00Z"}
        ],
    }
    status = to_dict(build_status(obs, previous, "nvidia.com/gpu", T0_S))
    assert status["nodes"] == {
        "requested": 1,
        "registering": 1,
        "gpuReady": 1,
        "cordoned": 1,
        "draining": 1,
        "failed": 0,
    }
    assert status["gpus"] == {"capacity": 8, "allocatable": 16, "allocated": 4, "idle": 12}
    assert status["jobs"] == [
        {
            "job": "ml/llm",
            "gpus": 16,
            "placement": "needs_nodes",
            "reason": "whole job needs 2 new node(s)",
        }
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["ScalingUp"]["lastTransitionTime"] == "2026-11-23T09:30:00Z"  # unchanged
    assert conditions["Ready"]["status"] == "True"
    assert status["lastScaleUpTime"] == "2026-11-23T10:00:00Z"
    assert status["lastScaleDownTime"] == "2026-11-23T09:00:00Z"
    assert status["observedGeneration"] == 3


def test_status_says_the_provider_is_unavailable() -> None:
    obs = Observation(1, (), (), provider_error="MachineDeployment gpus/md not found")
    status = to_dict(build_status(obs, {}, "nvidia.com/gpu", T0_S))
    assert "lastScaleUpTime" not in status and "lastScaleDownTime" not in status
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ProviderUnavailable")
    assert ready["message"] == "MachineDeployment gpus/md not found"


def test_a_job_waits_until_its_last_gpu_pod_is_bound() -> None:
    job = pytorchjob("llm").namespace("ml").workers(1).gpus(8).created(T0).obj()
    master = training_pod("llm", "master").on("n1").scheduled("2026-11-23T10:01:00Z").obj()
    assert job_wait_seconds(job, [master], "nvidia.com/gpu", now=T0_S + 999) is None
    worker = training_pod("llm", "worker").on("n2").scheduled("2026-11-23T10:05:00Z").obj()
    assert job_wait_seconds(job, [master, worker], "nvidia.com/gpu", now=T0_S + 999) == 300.0
    # Bound by nodeName (no scheduler): counts as bound now.
    unscheduled = training_pod("llm", "worker").on("n2").obj()
    assert job_wait_seconds(job, [master, unscheduled], "nvidia.com/gpu", T0_S + 400) == 400.0
