"""Job histories for `kubeforge pool simulate`: CSV rows and finished cluster jobs to a trace."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge.operators.gpupool.sim.engine import (
    Autoscaler,
    Binding,
    ClusterSettings,
    PolicySpec,
    simulate,
)
from kubeforge.operators.gpupool.sim.replay import ReplayError, jobs_from_objects, read_jobs_csv
from kubeforge.operators.gpupool.sim.trace import TraceJob

KUBEFORGE = PolicySpec("kubeforge", Autoscaler.KUBEFORGE, Binding.GANG_RESERVE)
# What `kubeforge pool simulate` replays with by default: IdleAfter 10 min, boot times learnt
# (the operator always learns them); here every boot takes 240 s.
POOL = ClusterSettings(
    max_nodes=4, max_in_flight=4, provision_delay_s=(240.0, 240.0), learn_boot_time=True
)


def test_csv_times_and_durations_read_as_seconds_relative_to_the_first_job() -> None:
    trace = read_jobs_csv(
        "submit_time,replicas,gpus_per_replica,duration\n"
        "2026-01-05T10:05:00Z,2,8,1h30m\n"
        "2026-01-05T10:00:00Z,1,4,600\n"
    )
    assert [(j.created_at, j.pods, j.duration_s) for j in trace] == [
        (0.0, (4,), 600.0),
        (300.0, (8, 8), 5400.0),
    ]


def test_finished_pytorchjobs_and_trainjobs_become_a_trace() -> None:
    pytorchjob: dict[str, Any] = {
        "kind": "PyTorchJob",
        "metadata": {"namespace": "ml", "name": "a", "creationTimestamp": "2026-01-05T10:00:00Z"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": [gpu(8)]}}},
                "Worker": {"replicas": 3, "template": {"spec": {"containers": [gpu(8)]}}},
            }
        },
        "status": {
            "startTime": "2026-01-05T10:04:00Z",
            "completionTime": "2026-01-05T11:04:00Z",
        },
    }
    trainjob = {
        "kind": "TrainJob",
        "metadata": {"namespace": "ml", "name": "b", "creationTimestamp": "2026-01-05T10:10:00Z"},
        "spec": {"trainer": {"numNodes": 2, "resourcesPerNode": {"limits": {"nvidia.com/gpu": 4}}}},
        "status": {
            "conditions": [
                {"type": "Created", "status": "True", "lastTransitionTime": "2026-01-05T10:10:00Z"},
                {
                    "type": "Complete",
                    "status": "True",
                    "lastTransitionTime": "2026-01-05T10:40:00Z",
                },
            ]
        },
    }
    running = {**pytorchjob, "metadata": {**pytorchjob["metadata"], "name": "c"}, "status": {}}
    trace, skipped = jobs_from_objects([pytorchjob, trainjob, running])
    assert [(j.created_at, j.pods, j.duration_s) for j in trace] == [
        (0.0, (8, 8, 8, 8), 3600.0),
        (600.0, (4, 4), 1800.0),
    ]
    assert skipped == ["PyTorchJob ml/c: not finished"]
    with pytest.raises(ReplayError, match="no finished PyTorchJob or TrainJob"):
        jobs_from_objects([running])


def gpu(n: int) -> dict[str, object]:
    return {"name": "c", "resources": {"limits": {"nvidia.com/gpu": n}}}


@pytest.mark.parametrize(
    ("declared", "nodes_added"),
    [((1000.0, None), 1), ((None, None), 2), ((1000.0, 500.0), 1)],
    ids=["a-declares", "none-declares", "b-declares-too"],
)
def test_a_gang_waits_for_a_node_freeing_within_a_boot_only_if_its_job_declared_its_run_time(
    declared: tuple[float | None, float | None], nodes_added: int
) -> None:
    # A runs 240..1240 on the only node (booted in 240 s); B (one node) comes at 1100. When A
    # declared 1000 s the planner sees its node free at 1240, before a node asked for now
    # (ready at 1350), and adds none; without, it boots one that B never uses.
    trace = (
        TraceJob(0, 0.0, (8,), 1000.0, declared[0]),
        TraceJob(1, 1100.0, (8,), 600.0, declared[1]),
    )
    result = simulate(trace, KUBEFORGE, POOL)
    assert result.jobs_finished == 2 and result.waits_s == (240.0, 140.0)
    assert result.nodes_added == nodes_added
    assert (result.empty_breakdown_gpu_hours["fresh_then_removed"] > 0) is (nodes_added == 2)


def test_a_node_shared_with_a_job_that_declares_nothing_is_not_expected_to_free() -> None:
    # A (declared) and C (not) share the node as the operator's pods would: it cannot tell
    # when the node frees, so B gets a new node although A and C both end before it boots.
    trace = (
        TraceJob(0, 0.0, (4,), 1000.0, 1000.0),
        TraceJob(1, 0.0, (4,), 1000.0, None),
        TraceJob(2, 1100.0, (8,), 600.0, 600.0),
    )
    assert simulate(trace, KUBEFORGE, POOL).nodes_added == 2
    declared_too = (*trace[:1], TraceJob(1, 0.0, (4,), 1000.0, 1000.0), trace[2])
    assert simulate(declared_too, KUBEFORGE, POOL).nodes_added == 1
