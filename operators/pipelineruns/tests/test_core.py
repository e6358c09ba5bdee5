"""Pure decisions of the pipeline-run controller: manifests, backend states, plan and status."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from kubeforge.core.errors import KubeforgeError
from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.pipelineruns.api.models import (
    Backend,
    PipelineRunSpec,
    PipelineRunStatus,
    RunPhase,
)
from kubeforge.operators.pipelineruns.core.backend_state import RunState, job_state, kfp_state
from kubeforge.operators.pipelineruns.core.manifests import (
    build_ir_configmap,
    build_job,
    parameter_args,
    resource_name,
)
from kubeforge.operators.pipelineruns.core.plan import RunStep, next_step
from kubeforge.operators.pipelineruns.core.status import (
    Reason,
    StartedRun,
    backend_unavailable,
    duration,
    expired,
    merged,
    run_mirrored,
    run_not_started,
    run_started,
)
from kubeforge.operators.schema import from_dict, to_dict
from kubeforge.pipelines.ir import check_parameters, load_ir
from kubeforge.testing.builders import (
    finished_run_pod,
    main_pipeline_ir,
    pipelinerun,
    running_run_pod,
    unscheduled_run_pod,
)

RUN = (
    pipelinerun("Digits_1", "team-a")
    .uid("1234abcd-0000")
    .experiment("digits")
    .service_account("trainer")
    .obj()
)
SPEC = from_dict(PipelineRunSpec, RUN["spec"])
NOW = dt.datetime(2026, 1, 1, 1, 0, tzinfo=dt.UTC).timestamp()


def test_ir_of_the_main_pipeline_declares_its_parameters_with_types() -> None:
    ir = load_ir(main_pipeline_ir())
    assert ir.name == "kubeforge-main"
    assert ir.parameters["epochs"].type == "NUMBER_INTEGER"
    assert ir.parameters["epochs"].default == 30  # the IR writes 30.0
    assert not ir.parameters["data_uri"].optional
    assert len(ir.digest) == 64


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"data_uri": "x", "epoch": 3}, "spec.parameters.epoch: pipeline 'kubeforge-main' has no"),
        ({"data_uri": "x", "epochs": "3"}, "spec.parameters.epochs: expects number_integer"),
        ({"data_uri": "x", "epochs": True}, "spec.parameters.epochs: expects number_integer"),
        ({"data_uri": "x", "epochs": 2.5}, "spec.parameters.epochs: expects number_integer"),
        ({"data_uri": 7}, "spec.parameters.data_uri: expects string"),
        ({"epochs": 3}, "spec.parameters: missing required parameter(s) data_uri"),
    ],
    ids=[
        "undeclared",
        "string-for-int",
        "bool-for-int",
        "fraction-for-int",
        "int-for-str",
        "missing",
    ],
)
def test_parameters_are_checked_against_the_pipeline(values: dict[str, Any], message: str) -> None:
    with pytest.raises(KubeforgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_parameters(load_ir(main_pipeline_ir()), values)


def test_parameters_keep_json_types_and_integral_floats_become_ints() -> None:
    values = check_parameters(
        load_ir(main_pipeline_ir()), {"data_uri": "s3://b/d.csv", "epochs": 3.0, "gold_budget": 1}
    )
    assert values == {"data_uri": "s3://b/d.csv", "epochs": 3, "gold_budget": 1}
    assert parameter_args({"b": True, "a": 3, "c": [1, 2]}) == [
        "-p", "a=3", "-p", "b=true", "-p", "c=[1,2]",
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["a: [", "just: yaml", "- 1"], ids=["not-yaml", "no-root", "list"])
def test_text_that_is_not_a_compiled_pipeline_is_refused(text: str) -> None:
    with pytest.raises(KubeforgeError, match="spec.pipeline.ir"):
        load_ir(text, "spec.pipeline.ir")


def test_the_job_runs_the_ir_with_the_values_and_reports_through_its_termination_message() -> None:
    job = build_job(
        RUN, SPEC, {"epochs": 3, "data_uri": "s3://b/d.csv"}, "img:1", "http://mlflow:5000"
    )
    assert job["metadata"]["name"] == "digits-1"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234abcd-0000"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "img:1"
    assert container["command"] + container["args"] == [
        "kubeforge", "run", "/etc/kubeforge/pipeline/pipeline.yaml",
        "-p", "data_uri=s3://b/d.csv", "-p", "epochs=3",
        "--experiment", "digits", "--summary-file", "/dev/termination-log",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert pod["serviceAccountName"] == "trainer"
    assert pod["volumes"][0]["configMap"]["name"] == "digits-1-ir"
    assert job["spec"]["backoffLimit"] == 0
    cm = build_ir_configmap(RUN, "ir: text", "abc")
    assert cm["metadata"]["name"] == "digits-1-ir" and cm["data"] == {"pipeline.yaml": "ir: text"}


def test_names_stay_dns_labels() -> None:
    assert resource_name("x" * 80, "-ir") == "x" * 60 + "-ir"


@pytest.mark.parametrize(
    ("status", "pods", "phase", "mlflow"),
    [
        ({}, [], "Pending", ""),
        ({"active": 1, "startTime": "2026-01-01T00:00:00Z"}, [], "Running", ""),
        (
            {"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]},
            [],
            "Running",
            "",
        ),
        (
            {"failed": 1, "conditions": [{"type": "FailureTarget", "status": "True"}]},
            [],
            "Running",
            "",
        ),
        (
            {
                "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:03:12Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            },
            [finished_run_pod(json.dumps({"mlflow_run_id": "r1"}))],
            "Succeeded",
            "r1",
        ),
        (
            {
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                ]
            },
            [finished_run_pod(json.dumps({"error": "label: too few gold rows"}))],
            "Failed",
            "",
        ),
    ],
    ids=["pending", "running", "success-criteria-met", "failure-target", "succeeded", "failed"],
)
def test_job_status_becomes_the_run_phase(
    status: dict[str, Any], pods: list[dict[str, Any]], phase: str, mlflow: str
) -> None:
    state = job_state({"status": status}, pods)
    assert state.phase == phase
    assert state.mlflow_run_id == mlflow
    if phase == "Failed":
        assert "too few gold rows" in state.message


def test_a_finished_runs_cost_reaches_its_status_typed() -> None:
    summary = {
        "mlflow_run_id": "r1",
        "cost": {"goldRows": 60, "humanLabelledRows": 0, "cpuSeconds": 123.4, "wallSeconds": 41.0},
    }
    complete = {"conditions": [{"type": "Complete", "status": "True"}]}
    state = job_state({"status": complete}, [finished_run_pod(json.dumps(summary))])
    status, _ = run_mirrored(PipelineRunStatus(phase="Running"), state, NOW)
    assert to_dict(status)["cost"] == {
        "goldRows": 60,
        "humanLabelledRows": 0,
        "cpuSeconds": 123.4,
        "wallSeconds": 41.0,
    }
    running = job_state({"status": {"active": 1}}, [running_run_pod()])
    assert run_mirrored(status, running, NOW)[0].cost == status.cost  # kept, not erased


def test_a_job_whose_pod_waits_for_a_node_is_pending_with_the_schedulers_reason() -> None:
    reason = "0/3 nodes are available: 3 Insufficient cpu."
    waiting = job_state({"status": {"active": 1}}, [unscheduled_run_pod(reason)])
    assert waiting.phase == "Pending"
    assert waiting.message == f"waiting for the Job's pod to start: {reason}"
    assert job_state({"status": {"active": 1}}, [running_run_pod()]).phase == "Running"


@pytest.mark.parametrize(
    ("kfp", "phase"),
    [
        ("RUNNING", "Running"),
        ("SUCCEEDED", "Succeeded"),
        ("FAILED", "Failed"),
        ("CANCELED", "Failed"),
        ("CANCELING", "Terminating"),
        ("PENDING", "Pending"),
    ],
)
def test_kfp_states_become_run_phases(kfp: str, phase: str) -> None:
    assert kfp_state(kfp, "", "", "").phase == phase


def test_duration_and_ttl() -> None:
    assert duration("2026-01-01T00:00:00Z", "2026-01-01T00:03:12Z", NOW) == "3m12s"
    assert duration("2026-01-01T00:00:00Z", "", NOW) == "1h0m0s"
    assert duration("", "", NOW) == ""
    assert expired("2026-01-01T00:59:00Z", 60, NOW)
    assert not expired("2026-01-01T00:59:30Z", 60, NOW)
    assert not expired("2026-01-01T00:00:00Z", None, NOW)


def _status(**fields: Any) -> PipelineRunStatus:
    return from_dict(PipelineRunStatus, fields)


@pytest.mark.parametrize(
    ("status", "ttl", "step"),
    [
        ({}, None, RunStep.START),
        ({"phase": "Failed", "message": "not started: x"}, 60, RunStep.START),
        ({"phase": "Pending", "backend": "job"}, None, RunStep.MIRROR),
        ({"phase": "Running", "backend": "kfp"}, 60, RunStep.MIRROR),
        ({"phase": "Succeeded", "backend": "job", "finishedAt": "2026-01-01T00:59:30Z"}, 60,
         RunStep.KEEP),
        ({"phase": "Failed", "backend": "job", "finishedAt": "2026-01-01T00:59:00Z"}, 60,
         RunStep.DELETE),
        ({"phase": "Succeeded", "backend": "job", "finishedAt": "2026-01-01T00:00:00Z"}, None,
         RunStep.KEEP),
    ],
    ids=["new", "failed-to-start", "pending", "running", "finished", "past-ttl", "no-ttl"],
)  # fmt: skip
def test_the_next_step_follows_from_the_status(
    status: dict[str, Any], ttl: int | None, step: RunStep
) -> None:
    spec = from_dict(PipelineRunSpec, {**RUN["spec"], "ttlSecondsAfterFinished": ttl})
    assert next_step(_status(**status), spec, NOW) == step


def test_a_run_that_cannot_start_fails_once_and_keeps_its_condition_times() -> None:
    error = KubeforgeError("spec.parameters.epoch: no such parameter", "spec.parameters.epoch")
    status, event = run_not_started(_status(), 2, error, NOW)
    assert to_dict(status) == {
        "observedGeneration": 2,
        "phase": "Failed",
        "message": f"not started: {error}",
        "conditions": [
            {"type": "Started", "status": "False", "reason": "InvalidSpec",
             "message": str(error), "lastTransitionTime": "2026-01-01T01:00:00Z"},
            {"type": "Failed", "status": "True", "reason": "InvalidSpec",
             "message": str(error), "lastTransitionTime": "2026-01-01T01:00:00Z"},
        ],
    }  # fmt: skip
    assert event is not None and (event.reason, event.warning) == (Reason.INVALID_SPEC, True)
    again, event = run_not_started(merged(_status(), status), 2, error, NOW + 60)
    assert event is None  # the same failure is not posted twice
    assert again.conditions == status.conditions  # times kept while the status holds
    unavailable = KubeforgeError("kfpHost: unreachable", "kfpHost")
    status, event = run_not_started(_status(), 1, unavailable, NOW)
    assert event is not None and event.reason == Reason.KFP_UNAVAILABLE


def test_a_started_run_records_its_backend_and_announces_where_it_runs() -> None:
    ir = load_ir(main_pipeline_ir())
    status, event = run_started(_status(), 1, ir, StartedRun(Backend.JOB, job_name="d-1"), NOW)
    out = to_dict(status)
    assert (out["phase"], out["backend"], out["jobName"]) == ("Pending", "job", "d-1")
    assert "kfpRunId" not in out and "url" not in out
    assert out["message"] == "started on the job backend"
    assert event.message == "pipeline kubeforge-main started: Job d-1"
    kfp = StartedRun(Backend.KFP, kfp_run_id="r", url="http://kfp/#/runs/details/r")
    assert run_started(_status(), 1, ir, kfp, NOW)[1].message.endswith(
        "http://kfp/#/runs/details/r"
    )


def test_mirroring_writes_only_what_the_backend_said_and_announces_the_end() -> None:
    before = _status(phase="Running", backend="job", jobName="d-1", observedGeneration=1,
                     startedAt="2026-01-01T00:00:00Z", mlflowRunId="abc")  # fmt: skip
    running = RunState(RunPhase.RUNNING, "the pipeline is running")
    patch, event = run_mirrored(before, running, NOW)
    out = to_dict(patch)
    assert "observedGeneration" not in out and "finishedAt" not in out and "duration" not in out
    assert (out["startedAt"], out["mlflowRunId"]) == ("2026-01-01T00:00:00Z", "abc")
    assert event is None
    done = RunState(RunPhase.SUCCEEDED, "the pipeline finished", "2026-01-01T00:00:00Z",
                    "2026-01-01T00:03:12Z", "r1")  # fmt: skip
    patch, event = run_mirrored(before, done, NOW)
    after = merged(before, patch)
    assert (after.phase, after.duration, after.mlflowRunId) == ("Succeeded", "3m12s", "r1")
    assert after.observedGeneration == 1 and after.jobName == "d-1"
    assert event is not None and (event.reason, event.warning) == (Reason.SUCCEEDED, False)
    assert run_mirrored(after, done, NOW)[1] is None  # already finished: said once


def test_an_unreachable_backend_keeps_the_phase_and_says_why_once() -> None:
    before = _status(phase="Running", backend="kfp", kfpRunId="r")
    error = KubeforgeError("kfpHost: KFP at http://kfp is unreachable", "kfpHost")
    patch, event = backend_unavailable(before, error)
    assert to_dict(patch) == {"message": str(error)}
    assert event is not None and event.reason == Reason.BACKEND_UNAVAILABLE
    assert backend_unavailable(merged(before, patch), error)[1] is None
    assert parse_rfc3339("2026-01-01T01:00:00Z") == NOW
