"""A job's pending GPU demand and a node's state, from their objects."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.demand import job_demand, node_state
from kubeforge.testing.builders import GPU, PyTorchJobBuilder, node, pytorchjob, training_pod


def llm() -> PyTorchJobBuilder:
    return pytorchjob("llm").namespace("ml").created()


def test_demand_comes_from_the_spec_before_any_pod_exists() -> None:
    demand = job_demand(llm().workers(3).gpus(8).obj(), [], GPU)
    assert demand.unbound_pod_gpus == (8, 8, 8, 8)
    assert demand.gpus == 32 and demand.key == "ml/llm"


def test_bound_pods_are_subtracted_per_replica_type() -> None:
    pods = [
        training_pod("llm", "master").on("n1").obj(),
        training_pod("llm", "worker").on("n2").obj(),
        training_pod("llm", "worker").obj(),
    ]
    assert job_demand(llm().workers(3).gpus(8).obj(), pods, GPU).unbound_pod_gpus == (8, 8)


def test_ranks_that_succeeded_need_no_node_again_failed_ones_do() -> None:
    # kwok (like real ranks) may finish a Worker before the Master: the job runs on.
    pods = [
        training_pod("llm", "master").on("n1").obj(),
        training_pod("llm", "worker").on("n2").phase("Succeeded").obj(),
        training_pod("llm", "worker").on("n3").phase("Failed").obj(),
    ]
    assert job_demand(llm().workers(2).gpus(8).obj(), pods, GPU).unbound_pod_gpus == (8,)


def test_a_suspended_job_demands_nothing() -> None:
    # What Kueue's webhook makes of a queued job until Kueue admits it.
    job = llm().workers(1).gpus(8).obj()
    job["spec"]["runPolicy"]["suspend"] = True
    assert job_demand(job, [], GPU).unbound_pod_gpus == ()
    job["spec"]["runPolicy"]["suspend"] = False
    assert job_demand(job, [], GPU).unbound_pod_gpus == (8, 8)


def test_finished_jobs_demand_nothing() -> None:
    done = llm().workers(1).gpus(8).succeeded().obj()
    assert job_demand(done, [], GPU).unbound_pod_gpus == ()


def test_node_is_gpu_ready_only_when_gpus_are_advertised() -> None:
    registering = node("n1").created().allocatable(cpu="16").obj()
    assert not node_state(registering, [], None, GPU).gpu_ready
    ready = node("n1").created().allocatable(cpu="16").gpus(8).obj()
    state = node_state(ready, [training_pod("llm").on("n1").gpus(4).obj()], 5.0, GPU)
    assert state.gpu_ready and state.allocated_gpus == 4 and state.busy
    assert state.idle_since is None
    done = training_pod("llm").on("n1").phase("Succeeded").obj()
    idle = node_state(ready, [done], 5.0, GPU)
    assert not idle.busy and idle.allocated_gpus == 0 and idle.idle_since == 5.0


STARTED = "2026-12-02T10:00:00Z"


def declaring(
    pod: dict[str, Any], seconds: str | None, started: str | None = STARTED
) -> dict[str, Any]:
    """``pod`` as started at ``started`` with the declared run time its template gave it."""
    if seconds is not None:
        pod["metadata"].setdefault("annotations", {})[EXPECTED_RUNTIME_ANNOTATION] = seconds
    if started is not None:
        pod["status"]["startTime"] = started
    return pod


@pytest.mark.parametrize(
    ("runtimes", "free_in"),
    [
        (("3600", "5400"), 5400.0),  # the last pod to end frees the node
        (("3600", None), None),  # one pod declares nothing: the planner cannot tell
        (("3600", "soon"), None),  # not a number of seconds
        (("3600", "-5"), None),
    ],
    ids=["both-declared", "one-undeclared", "not-a-number", "negative"],
)
def test_a_node_frees_when_its_training_pods_are_expected_to_end(
    runtimes: tuple[str | None, str | None], free_in: float | None
) -> None:
    ready = node("n1").created().allocatable(cpu="16").gpus(8).obj()
    pods = [declaring(training_pod("llm").on("n1").gpus(4).obj(), r) for r in runtimes]
    state = node_state(ready, pods, None, GPU)
    start = parse_rfc3339(STARTED)
    assert state.expected_free_at == (None if free_in is None else start + free_in)


def test_a_pod_not_started_yet_has_no_expected_end() -> None:
    ready = node("n1").created().allocatable(cpu="16").gpus(8).obj()
    pod = declaring(training_pod("llm").on("n1").obj(), "3600", started=None)
    assert node_state(ready, [pod], None, GPU).expected_free_at is None
