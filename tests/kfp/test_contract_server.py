"""The KFP contract server itself: its contract comes from kfp-server-api, and it can refuse."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from kubeforge.testing.kfp_contract import KfpContractServer, load_contract

IR = b"pipelineInfo:\n  name: tiny\nroot:\n  dag:\n    tasks: {}\nschemaVersion: 2.1.0\n"


def _send(
    server: KfpContractServer,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.host + path, data=body, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "kubeforge-test-boundary"
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _operation(name: str) -> Any:
    return next(op for op in load_contract() if op.name == name)


def test_the_contract_is_the_published_kfp_server_api() -> None:
    import kfp_server_api

    published = {
        name
        for api in dir(kfp_server_api.api)
        if api.endswith("ServiceApi")
        for name in dir(getattr(kfp_server_api.api, api))
        if not name.startswith("_") and not name.endswith("_with_http_info")
    }
    assert {op.name for op in load_contract()} == published

    create_run = _operation("run_service_create_run")
    assert (create_run.method, create_run.path) == ("POST", "/apis/v2beta1/runs")
    assert create_run.body_type == "V2beta1Run"
    assert "body" in create_run.required

    terminate = _operation("run_service_terminate_run")
    assert (terminate.method, terminate.path) == ("POST", "/apis/v2beta1/runs/{run_id}:terminate")

    upload = _operation("upload_pipeline_version")
    assert (upload.method, upload.path) == ("POST", "/apis/v2beta1/pipelines/upload_version")
    assert upload.content_type == "multipart/form-data"
    assert upload.files == ("uploadfile",)
    assert "uploadfile" in upload.required
    assert set(upload.query) == {"name", "display_name", "pipelineid", "description", "tags"}


def test_a_valid_request_is_accepted_and_recorded(kfp_server: KfpContractServer) -> None:
    status, answer = _send(
        kfp_server, "POST", "/apis/v2beta1/experiments", json.dumps({"display_name": "e"}).encode()
    )
    assert status == 200, answer
    assert answer["display_name"] == "e" and answer["experiment_id"]
    assert kfp_server.operations() == ["experiment_service_create_experiment"]
    assert kfp_server.violations == []


RUN = {"display_name": "r", "pipeline_spec": {"pipelineInfo": {"name": "x"}}}

REFUSED = [
    pytest.param("GET", "/apis/v2beta1/nothing-here", None, "not an operation", id="unknown-path"),
    pytest.param("DELETE", "/apis/v2beta1/healthz", None, "is not an operation", id="wrong-method"),
    pytest.param("GET", "/apis/v1beta1/runs", None, "not an operation", id="v1-path"),
    pytest.param("GET", "/apis/v2beta1/runs?bogus=1", None, "'bogus'", id="unknown-query"),
    pytest.param(
        "GET", "/apis/v2beta1/runs?page_size=ten", None, "expects an integer", id="query-type"
    ),
    pytest.param(
        "POST", "/apis/v2beta1/runs", {**RUN, "bogus_field": 1}, "'bogus_field'", id="body-field"
    ),
    pytest.param(
        "POST", "/apis/v2beta1/runs", {**RUN, "display_name": 5}, "expected a string", id="type"
    ),
    pytest.param(
        "POST",
        "/apis/v2beta1/runs",
        {**RUN, "runtime_config": {"parameters": {}, "pipelineRoot": "/x"}},
        "'pipelineRoot'",
        id="nested-field",
    ),
    pytest.param(
        "POST", "/apis/v2beta1/runs", {**RUN, "state": "DONE"}, "not one of", id="enum-value"
    ),
    pytest.param("POST", "/apis/v2beta1/runs", None, "body is missing", id="no-body"),
    pytest.param(
        "POST", "/apis/v2beta1/runs", {"pipeline_spec": {}}, "display_name", id="run-without-name"
    ),
    pytest.param(
        "POST",
        "/apis/v2beta1/runs",
        {"display_name": "r"},
        "exactly one",
        id="run-without-pipeline",
    ),
    pytest.param(
        "POST", "/apis/v2beta1/experiments", {"description": "d"}, "display_name", id="nameless-exp"
    ),
    pytest.param(
        "POST", "/apis/v2beta1/runs/abc:terminate", {"why": "x"}, "takes no body", id="stray-body"
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), REFUSED)
def test_off_contract_requests_are_refused(
    kfp_server: KfpContractServer, method: str, path: str, body: Any, message: str
) -> None:
    data = json.dumps(body).encode() if body is not None else None
    status, answer = _send(kfp_server, method, path, data)
    assert status == 400, answer
    assert message in answer["message"]
    assert len(kfp_server.violations) == 1 and message in kfp_server.violations[0]
    assert kfp_server.runs() == []


def _pipeline(server: KfpContractServer) -> str:
    status, answer = _send(
        server, "POST", "/apis/v2beta1/pipelines", json.dumps({"display_name": "tiny"}).encode()
    )
    assert status == 200, answer
    return str(answer["pipeline_id"])


def test_a_multipart_version_upload_on_contract_is_stored_byte_for_byte(
    kfp_server: KfpContractServer,
) -> None:
    pipeline_id = _pipeline(kfp_server)
    body, content_type = _multipart([("uploadfile", "tiny.yaml", IR)])
    path = f"/apis/v2beta1/pipelines/upload_version?name=v1&pipelineid={pipeline_id}"
    status, answer = _send(kfp_server, "POST", path, body, content_type)
    assert status == 200, answer
    assert answer["pipeline_id"] == pipeline_id and answer["name"] == "v1"
    assert kfp_server.uploaded(answer["pipeline_version_id"]) == IR
    assert kfp_server.violations == []


UPLOADS = [
    pytest.param([("file", "tiny.yaml", IR)], "multipart/form-data", "'file'", id="wrong-part"),
    pytest.param([], "multipart/form-data", "'uploadfile' is missing", id="no-file"),
    pytest.param([("uploadfile", "", IR)], "multipart/form-data", "no filename", id="no-filename"),
    pytest.param([("uploadfile", "t.yaml", IR)], "application/json", "multipart", id="as-json"),
    pytest.param(
        [("uploadfile", "t.yaml", b"just: yaml\n")],
        "multipart/form-data",
        "not a compiled",
        id="ir",
    ),
]


@pytest.mark.parametrize(("parts", "content_type", "message"), UPLOADS)
def test_off_contract_uploads_are_refused(
    kfp_server: KfpContractServer,
    parts: list[tuple[str, str, bytes]],
    content_type: str,
    message: str,
) -> None:
    pipeline_id = _pipeline(kfp_server)
    body, multipart_type = _multipart(parts)
    if content_type == "multipart/form-data":
        content_type = multipart_type
    path = f"/apis/v2beta1/pipelines/upload_version?name=v1&pipelineid={pipeline_id}"
    status, answer = _send(kfp_server, "POST", path, body, content_type)
    assert status == 400, answer
    assert message in answer["message"]
    assert kfp_server.violations and message in kfp_server.violations[-1]


def test_an_upload_version_without_its_pipeline_id_is_refused(
    kfp_server: KfpContractServer,
) -> None:
    body, content_type = _multipart([("uploadfile", "tiny.yaml", IR)])
    status, answer = _send(
        kfp_server, "POST", "/apis/v2beta1/pipelines/upload_version?name=v1", body, content_type
    )
    assert status == 400 and "pipelineid" in answer["message"]
