"""KfpBackend (kfp.Client underneath) against the KFP v2beta1 contract server."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kfp import KfpBackend, KfpRefused, KfpUnavailable
from kubeforge.pipelines.ir import PipelineIR, load_ir
from kubeforge.testing.kfp_contract import KfpContractServer

GOLDEN = Path(__file__).parents[2] / "pipelines" / "main" / "main.yaml"
PARAMS = {"data_uri": "s3://bucket/digits.csv", "epochs": 3, "quantize_int8": True}

FIRST_SUBMIT = [
    "pipeline_service_list_pipelines",  # is the pipeline there?
    "pipeline_service_create_pipeline",  # no: create it
    "pipeline_service_list_pipeline_versions",  # is this IR's version there?
    "upload_pipeline_version",  # no: upload the IR as-is (multipart)
    "experiment_service_list_experiments",  # is the experiment there?
    "experiment_service_create_experiment",  # no: create it
    "run_service_list_runs",  # is a run of this name there?
    "run_service_create_run",  # no: create it
    "run_service_get_run",
    "run_service_terminate_run",
]


@pytest.fixture(scope="module")
def main_ir() -> PipelineIR:
    return load_ir(GOLDEN.read_text(), str(GOLDEN))


def _start(backend: KfpBackend, ir: PipelineIR, name: str = "run-1") -> tuple[str, str, str]:
    pipeline_id, version_id = backend.ensure_pipeline_version(ir.name, ir.text, ir.digest)
    experiment_id = backend.ensure_experiment("kubeforge")
    run_id = backend.create_run(name, experiment_id, pipeline_id, version_id, PARAMS, "runner")
    return pipeline_id, version_id, run_id


def test_first_submit_follows_the_rest_contract_in_order(
    kfp_server: KfpContractServer, main_ir: PipelineIR
) -> None:
    backend = KfpBackend(kfp_server.host)
    pipeline_id, version_id, run_id = _start(backend, main_ir)
    run = backend.get_run(run_id)
    backend.terminate(run_id)

    assert kfp_server.violations == []
    assert all(r.status == 200 for r in kfp_server.requests), kfp_server.requests
    assert kfp_server.operations() == ["healthz_service_get_healthz", *FIRST_SUBMIT]
    # The IR went up byte for byte, as the version named by its digest.
    assert kfp_server.uploaded(version_id) == GOLDEN.read_bytes()
    upload = next(r for r in kfp_server.requests if r.operation == "upload_pipeline_version")
    assert upload.query["name"] == [main_ir.digest[:12]]
    assert upload.query["pipelineid"] == [pipeline_id]
    # The run KFP holds is the one asked for.
    (held,) = kfp_server.runs()
    assert held.run_id == run_id == run.run_id
    assert held.display_name == "run-1"
    assert held.service_account == "runner"
    assert held.pipeline_version_reference.pipeline_id == pipeline_id
    assert held.pipeline_version_reference.pipeline_version_id == version_id
    assert held.runtime_config.parameters == PARAMS
    assert run.state == "PENDING" and run.created_at and run.finished_at == ""
    assert held.state == "CANCELING"  # terminate asked KFP to stop it


def test_the_same_ir_never_uploads_twice_and_a_repeated_run_is_adopted(
    kfp_server: KfpContractServer, main_ir: PipelineIR
) -> None:
    first = _start(KfpBackend(kfp_server.host), main_ir)
    seen = len(kfp_server.requests)

    again = _start(KfpBackend(kfp_server.host), main_ir)  # e.g. the operator after a restart

    assert again == first
    later = [r.operation for r in kfp_server.requests[seen:]]
    assert "upload_pipeline_version" not in later and "upload_pipeline" not in later
    assert "pipeline_service_create_pipeline" not in later
    assert "experiment_service_create_experiment" not in later
    assert "run_service_create_run" not in later
    assert len(kfp_server.runs()) == 1
    assert kfp_server.violations == []


def test_a_changed_ir_becomes_a_new_version_of_the_same_pipeline(
    kfp_server: KfpContractServer, main_ir: PipelineIR
) -> None:
    backend = KfpBackend(kfp_server.host)
    pipeline_id, version_id = backend.ensure_pipeline_version(
        main_ir.name, main_ir.text, main_ir.digest
    )
    changed = load_ir(main_ir.text.replace("Raw data to a served model", "Changed"), "changed")

    pipeline_again, new_version = backend.ensure_pipeline_version(
        changed.name, changed.text, changed.digest
    )

    assert pipeline_again == pipeline_id and new_version != version_id
    assert kfp_server.uploaded(new_version) == changed.text.encode()
    assert kfp_server.violations == []


@pytest.mark.parametrize(
    ("state", "error"),
    [
        pytest.param("RUNNING", "", id="running"),
        pytest.param("SUCCEEDED", "", id="succeeded"),
        pytest.param("FAILED", "train: loss is NaN", id="failed"),
        pytest.param("CANCELED", "", id="canceled"),
    ],
)
def test_get_run_mirrors_the_state_kfp_reports(
    kfp_server: KfpContractServer, main_ir: PipelineIR, state: str, error: str
) -> None:
    backend = KfpBackend(kfp_server.host)
    _, _, run_id = _start(backend, main_ir)
    kfp_server.set_run_state(run_id, "RUNNING")
    running = backend.get_run(run_id)
    kfp_server.set_run_state(run_id, state, error)

    run = backend.get_run(run_id)

    assert (running.state, running.finished_at) == ("RUNNING", "")
    assert run.state == state
    assert run.error == error
    assert run.created_at == running.created_at != ""
    finished = state in ("SUCCEEDED", "FAILED", "CANCELED")
    assert bool(run.finished_at) == finished
    if finished:
        assert run.finished_at >= run.created_at
    assert kfp_server.violations == []


def test_a_profile_namespace_reaches_kfp_for_multi_user_kubeflow(
    kfp_server: KfpContractServer, main_ir: PipelineIR
) -> None:
    backend = KfpBackend(kfp_server.host, namespace="team-a")
    _start(backend, main_ir)
    other = KfpBackend(kfp_server.host, namespace="team-b").ensure_experiment("kubeforge")

    experiments = [r for r in kfp_server.requests if (r.operation or "").startswith("experiment_")]
    assert experiments[0].query["namespace"] == ["team-a"]
    create = next(r for r in experiments if r.operation == "experiment_service_create_experiment")
    assert create.body["namespace"] == "team-a"
    assert other != backend.ensure_experiment("kubeforge")  # one experiment per profile
    assert kfp_server.violations == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_endpoint_is_kfp_unavailable_naming_the_host(main_ir: PipelineIR) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(KfpUnavailable) as caught:
        KfpBackend(host).ensure_pipeline_version(main_ir.name, main_ir.text, main_ir.digest)
    assert host in str(caught.value)
    assert caught.value.parameter == "kfpHost"
    assert time.monotonic() - started < 10  # one try, not kfp.Client's 25 s of retries


def test_an_endpoint_that_never_answers_times_out_as_kfp_unavailable(main_ir: PipelineIR) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(KfpUnavailable, match="timed out") as caught:
            KfpBackend(host, timeout=(0.5, 0.5)).ensure_experiment("kubeforge")
    assert host in str(caught.value)
    assert time.monotonic() - started < 10


def test_a_kfp_server_error_is_kfp_unavailable(
    kfp_server: KfpContractServer, main_ir: PipelineIR
) -> None:
    backend = KfpBackend(kfp_server.host)
    _, _, run_id = _start(backend, main_ir)
    kfp_server.outage = True
    with pytest.raises(KfpUnavailable, match="HTTP 503"):
        backend.get_run(run_id)


def test_a_refusal_carries_kfps_message(kfp_server: KfpContractServer) -> None:
    backend = KfpBackend(kfp_server.host)
    with pytest.raises(KfpRefused) as caught:
        backend.get_run("no-such-run")
    assert caught.value.status == 404
    assert "run no-such-run not found" in str(caught.value)
    assert isinstance(caught.value, KubeforgeError) and not isinstance(caught.value, KfpUnavailable)
    backend.terminate("no-such-run")  # already gone counts as terminated
    assert kfp_server.violations == []


def test_run_url_is_the_kubeflow_ui_page() -> None:
    backend = KfpBackend("http://kubeflow.example:8080/")
    assert backend.run_url("abc") == "http://kubeflow.example:8080/#/runs/details/abc"
