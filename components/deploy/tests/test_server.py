"""The model server as a client meets it: a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kubeforge.components.common.model import Classifier, ModelSpec, predict, save
from kubeforge.components.deploy.server import ModelServer, ServingSettings

N = 64
CLASSES = tuple(str(i) for i in range(10))
LIMIT = 64 * 1024
GOOD_ROW = [float(i % 17) for i in range(N)]
# What an answer must never show: Python's or numpy's own words.
LEAKS = ("Traceback", "numpy", "Error:", "Exception", "tensor(", 'File "')


def _model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    spec = ModelSpec(N, (16,), CLASSES, tuple(f"pixel_{i}" for i in range(N)))
    return Classifier(spec, np.full(N, 5.0), np.full(N, 4.0)).eval()


@dataclass
class Served:
    """A ``kubeforge serve`` process and where it answers."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def counts(self) -> dict[str, float]:
        status, text = self.request("GET", "/metrics")
        assert status == 200
        found = re.findall(
            r'^kubeforge_serving_requests_total\{code="(\d+)",model="digits"\} (\S+)$',
            text.decode(),
            re.M,
        )
        return {code: float(value) for code, value in found}

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]


def _serve(tmp: Path, model_uri: str, *extra: str, env: dict[str, str] | None = None) -> Served:
    log = tmp / "serve.log"
    out = tmp / "serve.out"
    cmd = [sys.executable, "-m", "kubeforge.cli.app", "serve", model_uri, "--port", "0"]
    cmd += ["--name", "digits", *extra]
    with out.open("wb") as stdout, log.open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
    deadline = time.monotonic() + 300  # imports torch and MLflow: slow on a busy machine
    while not (match := re.search(r"http://([\d.]+):(\d+)/", out.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"kubeforge serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return Served(proc, match.group(1), int(match.group(2)), log)


def _wait_ready(served: Served) -> None:
    deadline = time.monotonic() + 300  # imports torch and MLflow: slow on a busy machine
    while served.request("GET", "/v2/health/ready")[0] != 200:
        assert served.proc.poll() is None, served.log.read_text()
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.05)


def _stop(served: Served) -> None:
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
        try:
            served.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            served.proc.kill()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("served-model") / "model.pt"
    save(_model(), path)
    return path


@pytest.fixture(scope="module")
def served(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    server = _serve(tmp, str(model_file), "--max-body-bytes", str(LIMIT), "--read-timeout", "1")
    _wait_ready(server)
    yield server
    _stop(server)


def _v1(rows: Any) -> bytes:
    return json.dumps({"instances": rows}).encode()


def _v2(data: Any, shape: list[int], **extra: Any) -> bytes:
    tensor = {"name": "features", "shape": shape, "datatype": "FP32", "data": data, **extra}
    return json.dumps({"inputs": [tensor]}).encode()


def _raw_row(token: str) -> bytes:
    row = ", ".join([token] + ["0.0"] * (N - 1))
    return f'{{"instances": [[{row}]]}}'.encode()


def _raw_v2_row(token: str) -> bytes:
    row = ", ".join([token] + ["0.0"] * (N - 1))
    tensor = f'{{"name": "f", "datatype": "FP32", "shape": [1, {N}], "data": [[{row}]]}}'
    return f'{{"inputs": [{tensor}]}}'.encode()


PREDICT = "/v1/models/digits:predict"
INFER = "/v2/models/digits/infer"

BAD_REQUESTS = [
    pytest.param("POST", PREDICT, _raw_row("NaN"), 400, "instances[0][0]", id="nan"),
    pytest.param("POST", PREDICT, _raw_row("Infinity"), 400, "instances[0][0]", id="infinity"),
    pytest.param("POST", PREDICT, _raw_row("-Infinity"), 400, "finite number", id="-infinity"),
    pytest.param("POST", PREDICT, _raw_row("null"), 400, "not null", id="null"),
    pytest.param("POST", PREDICT, _raw_row("1e400"), 400, "instances[0][0]", id="1e400"),
    pytest.param("POST", PREDICT, _raw_row("1e300"), 400, "float32 range", id="beyond-float32"),
    pytest.param("POST", PREDICT, _raw_row('"7"'), 400, "the string '7'", id="string"),
    pytest.param("POST", PREDICT, _raw_row("true"), 400, "not true", id="boolean"),
    pytest.param("POST", PREDICT, _v1([[1.0, 2.0]]), 400, "has 2 numbers", id="feature-count"),
    pytest.param("POST", PREDICT, _v1([GOOD_ROW, [1.0]]), 400, "instances[1] has 1", id="ragged"),
    pytest.param("POST", PREDICT, _v1([]), 400, "instances is empty", id="empty-instances"),
    pytest.param("POST", PREDICT, _v1(GOOD_ROW), 400, "instances[0]", id="flat-instances"),
    pytest.param("POST", PREDICT, _v1("rows"), 400, "instances", id="instances-string"),
    pytest.param("POST", PREDICT, b"[[1, 2]]", 400, "JSON object, not an array", id="list-body"),
    pytest.param("POST", PREDICT, b'{"rows": []}', 400, "instances is missing", id="no-instances"),
    pytest.param("POST", PREDICT, b'{"instances": [[1,', 400, "not valid JSON", id="non-json"),
    pytest.param("POST", PREDICT, b"", 400, "not valid JSON", id="empty-body"),
    pytest.param("POST", PREDICT, _v1([GOOD_ROW] * 400), 413, "over the limit", id="too-big"),
    pytest.param("GET", PREDICT, None, 405, "use POST", id="get-on-predict"),
    pytest.param("PUT", INFER, None, 405, "use POST", id="put-on-infer"),
    pytest.param("POST", "/v1/models/other:predict", _v1([GOOD_ROW]), 404, "'other'", id="model"),
    pytest.param("POST", "/v2/models/other/infer", _v2(GOOD_ROW, [1, N]), 404, "'other'", id="v2m"),
    pytest.param("GET", "/v1/nothing", None, 404, "no route /v1/nothing", id="no-route"),
    pytest.param("POST", INFER, _v2(GOOD_ROW, [1, 8]), 400, "takes [N, 64]", id="v2-shape"),
    pytest.param("POST", INFER, _v2(GOOD_ROW, [2, N]), 400, "needs 128", id="v2-count"),
    pytest.param("POST", INFER, _raw_v2_row("NaN"), 400, "inputs[0].data[0][0]", id="v2-nan"),
    pytest.param(
        "POST", INFER, _v2([GOOD_ROW, GOOD_ROW[:3]], [2, N]), 400, "data[1] has 3", id="v2-ragged"
    ),
    pytest.param("POST", INFER, b'{"inputs": []}', 400, "holds 0 tensors", id="v2-no-inputs"),
    pytest.param(
        "POST",
        INFER,
        _v2(GOOD_ROW, [1, N]).replace(b"FP32", b"BYTES"),
        400,
        "datatype",
        id="v2-bytes",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "code", "message"), BAD_REQUESTS)
def test_bad_requests_get_their_code_and_one_json_line(
    served: Served, method: str, path: str, body: bytes | None, code: int, message: str
) -> None:
    before = served.counts()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    status, answer = served.request(method, path, body, headers)
    assert status == code, answer
    assert b"\n" not in answer
    error = json.loads(answer)
    assert list(error) == ["error"] and message in error["error"], error
    assert not any(leak in error["error"] for leak in LEAKS), error
    after = served.counts()
    assert after.get(str(code), 0) - before.get(str(code), 0) == 1
    # The server is still up and still right.
    assert served.request("POST", PREDICT, _v1([GOOD_ROW]))[0] == 200


def _raw(served: Served, head: bytes, body: bytes = b"") -> tuple[socket.socket, bytes]:
    """Send ``head`` + ``body`` on a raw connection; return it and the whole answer."""
    sock = socket.create_connection((served.host, served.port), timeout=30)
    sock.sendall(head + body)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return sock, answer


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\n" not in body
    return int(head.split()[1]), json.loads(body)["error"]


def test_a_lying_content_length_times_out_with_408(served: Served) -> None:
    before = served.counts()
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n".encode()
    sock, answer = _raw(served, head, _v1([GOOD_ROW])[:100])  # 100 of the 500 bytes promised
    sock.close()
    code, error = _status_and_error(answer)
    assert code == 408 and "did not arrive" in error and "100 of 500 bytes" in error
    assert served.counts().get("408", 0) - before.get("408", 0) == 1


def test_a_chunked_body_over_the_limit_is_refused_while_reading(served: Served) -> None:
    before = served.counts()
    sock = socket.create_connection((served.host, served.port), timeout=30)
    sock.sendall(
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"x" * 16384
    sent = 0
    with pytest.raises(OSError):  # the server answers and closes long before 64 MiB
        for _ in range(4096):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    answer = sock.recv(65536)
    sock.close()
    assert sent < 64 * 1024 * 1024
    if answer:  # the reset may have eaten the answer; the counter below still tells
        code, error = _status_and_error(answer)
        assert code == 413 and "over the limit" in error
    assert served.counts().get("413", 0) - before.get("413", 0) == 1


def test_memory_stays_bounded_under_oversized_bodies(served: Served) -> None:
    before = served.rss_bytes()
    big = b"[" + b"1.0," * (256 * 1024)  # 1 MiB of a body that claims 50 MB
    for _ in range(20):
        head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n".encode()
        sock = socket.create_connection((served.host, served.port), timeout=30)
        with contextlib.suppress(OSError):  # refused and closed before all of it went out
            sock.sendall(head + big)
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    for _ in range(20):
        assert served.request("POST", PREDICT, _v1([GOOD_ROW] * 32))[0] == 200
    # 20 MiB were offered; the process grew by far less than one offered body.
    assert served.rss_bytes() - before < 16 * 1024 * 1024


def test_v1_and_v2_answer_what_the_model_predicts(served: Served, model_file: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(32, N)).astype(np.float32)
    expected = [CLASSES[i] for i in predict(_model(), x).argmax(axis=1)]
    status, body = served.request("POST", PREDICT, _v1(x.tolist()))
    assert status == 200
    v1 = json.loads(body)
    assert v1["predictions"] == expected
    assert all(0 < p <= 1 for p in v1["probabilities"])
    v2_body = json.loads(_v2(x.ravel().tolist(), [32, N]))
    status, body = served.request("POST", INFER, json.dumps({**v2_body, "id": "r-1"}).encode())
    assert status == 200
    v2 = json.loads(body)
    assert v2["model_name"] == "digits" and v2["id"] == "r-1"
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["predictions"]["data"] == expected and outputs["predictions"]["shape"] == [32]
    assert outputs["probabilities"]["data"] == v1["probabilities"]
    # Nested rows are the same tensor; asking for one output returns that one.
    tensor = {"name": "f", "shape": [32, N], "datatype": "FP32", "data": x.tolist()}
    nested = {"inputs": [tensor], "outputs": [{"name": "predictions"}]}
    status, body = served.request("POST", INFER, json.dumps(nested).encode())
    assert status == 200
    only = json.loads(body)["outputs"]
    assert [o["name"] for o in only] == ["predictions"] and only[0]["data"] == expected


def test_open_inference_protocol_health_and_metadata(served: Served) -> None:
    assert served.request("GET", "/v2/health/live") == (200, b'{"live":true}')
    assert served.request("GET", "/v2/health/ready") == (200, b'{"ready":true}')
    status, body = served.request("GET", "/v2/models/digits/ready")
    assert status == 200 and json.loads(body)["ready"] is True
    status, body = served.request("GET", "/v2/models/digits")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "digits"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, N]}]
    assert [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities"]
    assert served.request("GET", "/v2/models/other/ready")[0] == 404
    status, body = served.request("GET", "/v1/models/digits")
    assert status == 200 and json.loads(body) == {"name": "digits", "ready": True}


def test_metrics_count_every_request_by_code_and_rows_in_flight(served: Served) -> None:
    before = served.counts()
    sent = {"200": 3, "400": 2, "404": 1, "405": 1}
    for _ in range(sent["200"]):
        assert served.request("POST", PREDICT, _v1([GOOD_ROW, GOOD_ROW]))[0] == 200
    for _ in range(sent["400"]):
        assert served.request("POST", PREDICT, _v1([[1.0]]))[0] == 400
    assert served.request("GET", "/nowhere")[0] == 404
    assert served.request("GET", PREDICT)[0] == 405
    # Probes and scrapes are answered but not counted.
    served.request("GET", "/v2/health/ready")
    served.request("GET", "/healthz")
    after = served.counts()
    assert {code: after.get(code, 0) - before.get(code, 0) for code in after} == {
        **{code: 0.0 for code in after},
        **{code: float(n) for code, n in sent.items()},
    }
    _, text = served.request("GET", "/metrics")
    assert 'kubeforge_serving_requests_in_flight{model="digits"} 0.0' in text.decode()
    assert re.search(r'kubeforge_serving_predictions_total\{model="digits"\} \d+', text.decode())


def test_readiness_is_false_until_a_model_is_loaded() -> None:
    server = ModelServer(None, None, "digits").start()
    try:
        host, port = server.socket.getsockname()[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)

        def get(method: str, path: str, body: bytes | None = None) -> int:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            resp.read()
            return resp.status

        assert get("GET", "/v2/health/live") == 200
        assert get("GET", "/v2/health/ready") == 503
        assert get("GET", "/v2/models/digits/ready") == 503
        assert get("POST", PREDICT, _v1([GOOD_ROW])) == 503
        server.set_model(_model(), None, "7")
        assert get("GET", "/v2/health/ready") == 200
        assert get("POST", PREDICT, _v1([GOOD_ROW])) == 200
        conn.close()
    finally:
        server.stop()


def test_a_failing_model_answers_500_without_its_python_message() -> None:
    broken = _model()
    broken.spec = ModelSpec(8, (16,), CLASSES, tuple("abcdefgh"))  # its layers still take 64
    server = ModelServer(broken, None, "digits").start()
    try:
        host, port = server.socket.getsockname()[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("POST", PREDICT, body=_v1([[1.0] * 8]))
        resp = conn.getresponse()
        status, error = resp.status, json.loads(resp.read())["error"]
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
    finally:
        server.stop()
    assert status == 500 and "'digits' failed" in error
    assert not any(leak in error for leak in (*LEAKS, "size", "shape", "RuntimeError"))
    assert 'kubeforge_serving_requests_total{code="500",model="digits"} 1.0' in metrics


def test_sigterm_turns_readiness_false_first_and_lets_requests_in_flight_finish(
    model_file: Path, tmp_path: Path
) -> None:
    served = _serve(tmp_path, str(model_file), "--shutdown-delay", "120", "--read-timeout", "60")
    try:
        _wait_ready(served)
        body = _v1([GOOD_ROW])
        in_flight = socket.create_connection((served.host, served.port), timeout=60)
        head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        in_flight.sendall(head.encode() + body[:10])
        served.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while served.request("GET", "/v2/health/ready")[0] != 503:
            assert time.monotonic() < deadline, "readiness stayed true after SIGTERM"
            time.sleep(0.05)
        # Draining: alive, not ready, and still answering (endpoints may still send traffic).
        assert served.request("GET", "/v2/health/live")[0] == 200
        assert served.request("POST", PREDICT, body)[0] == 200
        # A second SIGTERM ends the delay: the listener closes, the request in flight finishes.
        served.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((served.host, served.port), timeout=5).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "still accepting connections"
            time.sleep(0.05)
        in_flight.sendall(body[10:])
        answer = b""
        while chunk := in_flight.recv(65536):
            answer += chunk
        in_flight.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["predictions"]
        assert served.proc.wait(timeout=60) == 0
    finally:
        _stop(served)
    log = served.log.read_text()
    assert "SIGTERM: readiness false" in log and "SIGTERM again" in log


def test_serve_resolves_the_alias_once_and_logs_it(tmp_path: Path, mlflow_home: str) -> None:
    import mlflow
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_home)
    for seed in (0, 1):
        with mlflow.start_run():
            mlflow.pytorch.log_model(
                _model(seed), name="model", serialization_format="pickle", pip_requirements=[]
            )
            run = mlflow.active_run()
            assert run is not None
            version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "digits")
    client.set_registered_model_alias("digits", "champion", "2")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_home}
    served = _serve(tmp_path, "models:/digits@champion", env=env)
    try:
        _wait_ready(served)
        client.set_registered_model_alias("digits", "champion", "1")  # a running server keeps 2
        status, body = served.request("GET", "/v2/models/digits")
        assert status == 200 and json.loads(body)["versions"] == ["2"]
        status, body = served.request("POST", INFER, _v2(GOOD_ROW, [1, N]))
        assert json.loads(body)["model_version"] == "2"
    finally:
        _stop(served)
    assert str(version.version) == "2"
    assert "resolved models:/digits@champion to version 2" in served.log.read_text()


def test_a_missing_alias_is_named_with_the_option_that_fixes_it(mlflow_home: str) -> None:
    from kubeforge.components.deploy.loading import resolve_model_uri
    from kubeforge.core.errors import KubeforgeError

    with pytest.raises(KubeforgeError) as excinfo:
        resolve_model_uri("models:/nothing@champion")
    assert excinfo.value.parameter == "model_uri"
    assert "'nothing' has no alias 'champion'" in str(excinfo.value)
    assert resolve_model_uri("models:/digits/3").version == "3"


def test_settings_refuse_nonsense_naming_the_option() -> None:
    from kubeforge.core.errors import KubeforgeError

    with pytest.raises(KubeforgeError) as excinfo:
        ServingSettings(max_body_bytes=0)
    assert excinfo.value.parameter == "max_body_bytes"
    with pytest.raises(KubeforgeError) as excinfo:
        ServingSettings(read_timeout_s=0)
    assert excinfo.value.parameter == "read_timeout"
