"""Pure decisions of the pipeline-run controller."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from kubeforge.core.errors import KubeforgeError
from kubeforge.operators.pipelineruns.core.manifests import (
    build_ir_configmap,
    build_job,
    duration,
    expired,
    job_state,
    kfp_state,
    parameter_args,
    resource_name,
)
from kubeforge.pipelines.ir import check_parameters, load_ir
from kubeforge.pipelines.main.tests.test_compile import GOLDEN

RUN = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "PipelineRun",
    "metadata": {"name": "Digits_1", "namespace": "team-a", "uid": "1234abcd-0000"},
    "spec": {"experiment": "digits", "serviceAccountName": "trainer"},
}


def test_ir_of_the_main_pipeline_declares_its_parameters_with_types() -> None:
    ir = load_ir(GOLDEN.read_text())
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
        check_parameters(load_ir(GOLDEN.read_text()), values)


def test_parameters_keep_json_types_and_integral_floats_become_ints() -> None:
    values = check_parameters(
        load_ir(GOLDEN.read_text()), {"data_uri": "s3://b/d.csv", "epochs": 3.0, "gold_budget": 1}
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
    job = build_job(RUN, {"epochs": 3, "data_uri": "s3://b/d.csv"}, "img:1", "http://mlflow:5000")
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


def _pod(message: str) -> dict[str, Any]:
    terminated = {"state": {"terminated": {"exitCode": 0, "message": message}}}
    return {"status": {"containerStatuses": [terminated]}}


@pytest.mark.parametrize(
    ("status", "pods", "phase", "mlflow"),
    [
        ({}, [], "Pending", ""),
        ({"active": 1, "startTime": "2026-01-01T00:00:00Z"}, [], "Running", ""),
        (
            {
                "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:03:12Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            },
            [_pod(json.dumps({"mlflow_run_id": "r1"}))],
            "Succeeded",
            "r1",
        ),
        (
            {
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                ]
            },
            [_pod(json.dumps({"error": "label: too few gold rows"}))],
            "Failed",
            "",
        ),
    ],
    ids=["pending", "running", "succeeded", "failed"],
)
def test_job_status_becomes_the_run_phase(
    status: dict[str, Any], pods: list[dict[str, Any]], phase: str, mlflow: str
) -> None:
    state = job_state({"status": status}, pods)
    assert state.phase == phase
    assert state.mlflow_run_id == mlflow
    if phase == "Failed":
        assert "too few gold rows" in state.message


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
    now = dt.datetime(2026, 1, 1, 1, 0, tzinfo=dt.UTC)
    assert duration("2026-01-01T00:00:00Z", "2026-01-01T00:03:12Z", now) == "3m12s"
    assert duration("2026-01-01T00:00:00Z", "", now) == "1h0m0s"
    assert duration("", "", now) == ""
    assert expired("2026-01-01T00:59:00Z", 60, now)
    assert not expired("2026-01-01T00:59:30Z", 60, now)
    assert not expired("2026-01-01T00:00:00Z", None, now)
