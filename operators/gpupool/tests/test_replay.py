"""Job histories for `kubeforge pool simulate`: CSV rows and finished cluster jobs to a trace."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge.operators.gpupool.sim.replay import ReplayError, jobs_from_objects, read_jobs_csv


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
