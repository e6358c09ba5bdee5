from __future__ import annotations

from typing import Any

from kubeforge.components.train.pytorchjob import build_pytorchjob
from kubeforge.operators.gpupool.core.demand import job_demand, node_state


def pytorchjob(workers: int, gpus: int, **status: Any) -> dict[str, Any]:
    job = build_pytorchjob("llm", "ml", "img", ["train"], workers=workers, gpus_per_replica=gpus)
    job["metadata"]["creationTimestamp"] = "2026-11-23T10:00:00Z"
    if status:
        job["status"] = status
    return job


def pod(
    kind: str, node: str = "", phase: str = "Running", gpus: int = 8, scheduled: str = ""
) -> dict[str, Any]:
    """A training pod of job ``llm``; ``scheduled`` is when its PodScheduled became True."""
    status: dict[str, Any] = {"phase": phase}
    if scheduled:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled}
        ]
    return {
        "metadata": {
            "labels": {
                "training.kubeflow.org/job-name": "llm",
                "training.kubeflow.org/replica-type": kind,
            }
        },
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": status,
    }


def test_demand_comes_from_the_spec_before_any_pod_exists() -> None:
    demand = job_demand(pytorchjob(workers=3, gpus=8), [])
    assert demand.unbound_pod_gpus == (8, 8, 8, 8)
    assert demand.gpus == 32 and demand.key == "ml/llm"


def test_bound_pods_are_subtracted_per_replica_type() -> None:
    pods = [pod("master", node="n1"), pod("worker", node="n2"), pod("worker")]
    assert job_demand(pytorchjob(workers=3, gpus=8), pods).unbound_pod_gpus == (8, 8)


def test_finished_jobs_demand_nothing() -> None:
    done = pytorchjob(workers=1, gpus=8, conditions=[{"type": "Succeeded", "status": "True"}])
    assert job_demand(done, []).unbound_pod_gpus == ()


def test_node_is_gpu_ready_only_when_gpus_are_advertised() -> None:
    node: dict[str, Any] = {
        "metadata": {"name": "n1", "creationTimestamp": "2026-11-23T10:00:00Z"},
        "status": {"allocatable": {"cpu": "16"}},
    }
    assert not node_state(node, [], idle_since=None).gpu_ready
    node["status"]["allocatable"]["nvidia.com/gpu"] = "8"
    state = node_state(node, [pod("worker", node="n1", gpus=4)], idle_since=5.0)
    assert state.gpu_ready and state.allocated_gpus == 4 and state.busy
    assert state.idle_since is None
    idle = node_state(node, [pod("worker", node="n1", phase="Succeeded")], idle_since=5.0)
    assert not idle.busy and idle.allocated_gpus == 0 and idle.idle_since == 5.0
