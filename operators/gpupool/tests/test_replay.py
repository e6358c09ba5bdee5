"""Job histories for `kubeforge pool simulate`: CSV rows and finished cluster jobs to a trace."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.operators.gpupool.sim.engine import (
    Autoscaler,
    Binding,
    ClusterSettings,
    PolicySpec,
    simulate,
)
from kubeforge.operators.gpupool.sim.replay import ReplayError, jobs_from_objects, read_jobs_csv
from kubeforge.operators.gpupool.sim.trace import TraceJob
from kubeforge.operators.gpupool.sim.whatif import UNDECLARED, render, what_if

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
    trace, skipped, notes = jobs_from_objects([pytorchjob, trainjob, running])
    assert [(j.created_at, j.pods, j.duration_s, j.declared_s) for j in trace] == [
        (0.0, (8, 8, 8, 8), 3600.0, None),
        (600.0, (4, 4), 1800.0, None),
    ]
    assert skipped == ["PyTorchJob ml/c: not finished"] and notes == []
    with pytest.raises(ReplayError, match="no finished PyTorchJob or TrainJob"):
        jobs_from_objects([running])


def gpu(n: int) -> dict[str, object]:
    return {"name": "c", "resources": {"limits": {"nvidia.com/gpu": n}}}


def test_the_expected_runtime_column_declares_a_run_time_and_an_empty_cell_none() -> None:
    trace = read_jobs_csv(
        "submit_time,replicas,gpus_per_replica,duration,expected_runtime\n"
        "0,1,8,1h,50m\n"
        "60,2,8,2h,\n"
        "120,1,4,30m,1800\n"
    )
    assert [(j.duration_s, j.declared_s) for j in trace] == [
        (3600.0, 3000.0),
        (7200.0, None),
        (1800.0, 1800.0),
    ]
    without = read_jobs_csv("submit_time,replicas,gpus_per_replica,duration\n0,1,8,1h\n")
    assert without[0].declared_s is None


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("0", "jobs.csv line 3: column 'expected_runtime' must be positive, not 0"),
        ("-10m", "jobs.csv line 3: column 'expected_runtime' is '-10m'"),
        ("-600", "jobs.csv line 3: column 'expected_runtime' must be positive, not -600"),
        ("soon", "jobs.csv line 3: column 'expected_runtime' is 'soon'"),
        ("inf", "jobs.csv line 3: column 'expected_runtime' must be positive, not inf"),
    ],
    ids=["zero", "negative-duration", "negative", "not-a-number", "infinite"],
)
def test_a_bad_expected_runtime_is_refused_naming_the_line_and_column(
    cell: str, message: str
) -> None:
    text = (
        "submit_time,replicas,gpus_per_replica,duration,expected_runtime\n"
        f"0,1,8,1h,1h\n60,1,8,1h,{cell}\n"
    )
    with pytest.raises(ReplayError) as refused:
        read_jobs_csv(text, "jobs.csv")
    assert str(refused.value).startswith(message)


def finished(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """``obj`` named ``name``, created 10:00, started 10:01 and completed 11:01."""
    return {
        **obj,
        "metadata": {"namespace": "ml", "name": name, "creationTimestamp": "2026-01-05T10:00:00Z"},
        "status": {
            "startTime": "2026-01-05T10:01:00Z",
            "completionTime": "2026-01-05T11:01:00Z",
        },
    }


def pytorchjob(**declared: str | None) -> dict[str, Any]:
    """A PyTorchJob with a GPU replica per keyword, annotated with its value (None: not)."""
    replicas = {}
    for kind, value in declared.items():
        meta = {"annotations": {EXPECTED_RUNTIME_ANNOTATION: value}} if value is not None else {}
        replicas[kind] = {
            "replicas": 1,
            "template": {"metadata": meta, "spec": {"containers": [gpu(8)]}},
        }
    return {"kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": replicas}}


def trainjob(*patched: tuple[str, str]) -> dict[str, Any]:
    """A 2 x 4-GPU TrainJob whose runtimePatches annotate replicated jobs' pod templates."""
    patches = [
        {
            "manager": "user",
            "trainingRuntimeSpec": {
                "template": {
                    "spec": {
                        "replicatedJobs": [
                            {
                                "name": job,
                                "template": {
                                    "spec": {
                                        "template": {
                                            "metadata": {
                                                "annotations": {EXPECTED_RUNTIME_ANNOTATION: value}
                                            }
                                        }
                                    }
                                },
                            }
                        ]
                    }
                }
            },
        }
        for job, value in patched
    ]
    spec = {"trainer": {"numNodes": 2, "resourcesPerNode": {"limits": {"nvidia.com/gpu": 4}}}}
    return {"kind": "TrainJob", "spec": {**spec, "runtimePatches": patches}}


@pytest.mark.parametrize(
    ("job", "declared_s", "note"),
    [
        (pytorchjob(Master="3000", Worker="3300"), 3300.0, None),
        (pytorchjob(Master="3000"), 3000.0, None),
        (pytorchjob(Master="3000", Worker=None), None, "Worker declare(s) no"),
        (pytorchjob(Master="an hour"), None, "is Master 'an hour', not seconds >= 0: ignored"),
        (pytorchjob(Master="-60", Worker="60"), None, "is Master '-60', not seconds >= 0"),
        (pytorchjob(Master=None), None, None),
        (trainjob(("node", "5400")), 5400.0, None),
        (trainjob(("node", "5400"), ("node", "4000")), 4000.0, None),
        (trainjob(("dataset-initializer", "5400")), None, None),
        (trainjob(("node", "1h30m")), None, "is node '1h30m', not seconds >= 0: ignored"),
    ],
    ids=[
        "pytorchjob-every-replica",
        "pytorchjob-one-replica-type",
        "pytorchjob-worker-silent",
        "pytorchjob-not-a-number",
        "pytorchjob-negative",
        "pytorchjob-none",
        "trainjob-node-patch",
        "trainjob-later-patch-wins",
        "trainjob-not-the-trainer-pods",
        "trainjob-duration-is-not-seconds",
    ],
)
def test_the_run_time_annotation_is_read_from_the_gpu_pod_templates_as_the_operator_reads_it(
    job: dict[str, Any], declared_s: float | None, note: str | None
) -> None:
    (replayed,), skipped, notes = jobs_from_objects([finished(job, "j")])
    assert replayed.declared_s == declared_s and skipped == []
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(f"{job['kind']} ml/j: ")
        assert note in notes[0]


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


def test_the_what_if_report_shows_declared_run_times_beside_the_same_spec_without_them() -> None:
    trace = (
        TraceJob(0, 0.0, (8,), 1000.0, 1000.0),
        TraceJob(1, 1100.0, (8,), 600.0),
    )
    report = what_if(trace, POOL, [600.0], [4])
    rows = {r.label: r for r in report.rows}
    declared, undeclared = rows["Kubeforge (this pool spec)"], rows[UNDECLARED]
    assert report.declared_jobs == 1
    assert declared.node_hours < undeclared.node_hours
    assert declared.idle_gpu_hours < undeclared.idle_gpu_hours
    assert "run times declared by 1 of 2 jobs" in render(report)
    silent = what_if(
        [TraceJob(j.index, j.created_at, j.pods, j.duration_s) for j in trace], POOL, [600.0], [4]
    )
    assert silent.declared_jobs == 0 and UNDECLARED not in {r.label for r in silent.rows}
    assert "declared" not in render(silent)
    assert dataclasses.replace(silent.rows[0], label=UNDECLARED) == undeclared
