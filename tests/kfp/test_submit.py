"""`kubeforge submit` end to end against the KFP v2beta1 contract server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeforge.cli.app import app
from kubeforge.pipelines.ir import load_ir
from kubeforge.testing.kfp_contract import KfpContractServer

GOLDEN = Path(__file__).parents[2] / "pipelines" / "main" / "main.yaml"


def _submit(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["submit", *args])
    return result.exit_code, result.stdout, result.stderr


def test_submit_main_uploads_the_compiled_pipeline_and_starts_a_run(
    kfp_server: KfpContractServer,
) -> None:
    code, out, err = _submit(
        "main", "--host", kfp_server.host, "-p", "data_uri=s3://bucket/digits.csv", "-p", "epochs=3"
    )

    assert code == 0, err
    (run,) = kfp_server.runs()
    assert f"(id {run.run_id})" in out
    assert f"Kubeflow UI: {kfp_server.host}/#/runs/details/{run.run_id}" in out
    # The upload is the golden compile of `main`, byte for byte: what `kubeforge compile` writes.
    version_id = run.pipeline_version_reference.pipeline_version_id
    assert kfp_server.uploaded(version_id) == GOLDEN.read_bytes()
    assert run.runtime_config.parameters == {"data_uri": "s3://bucket/digits.csv", "epochs": 3}
    assert run.display_name.startswith("kubeforge-main-")
    assert kfp_server.violations == []
    assert all(r.status == 200 for r in kfp_server.requests)


def test_submit_of_an_ir_file_with_a_run_name_is_idempotent(
    kfp_server: KfpContractServer, tmp_path: Path
) -> None:
    ir_file = tmp_path / "pipeline.yaml"
    ir_file.write_bytes(GOLDEN.read_bytes())
    args = [str(ir_file), "--host", kfp_server.host, "-p", "data_uri=/data/digits.csv"]
    args += ["--run-name", "nightly-1", "--experiment", "nightly"]

    first = _submit(*args)
    second = _submit(*args)

    assert first[0] == 0 and second[0] == 0, (first, second)
    (run,) = kfp_server.runs()  # the second submit adopted the first run
    assert f"run nightly-1 (id {run.run_id}) in experiment nightly" in first[1]
    assert f"run nightly-1 (id {run.run_id}) in experiment nightly" in second[1]
    uploads = [r for r in kfp_server.requests if r.operation == "upload_pipeline_version"]
    assert len(uploads) == 1
    digest = load_ir(GOLDEN.read_text()).digest
    assert f"version {digest[:12]}" in first[1]
    assert kfp_server.violations == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["main"], "missing required parameter(s) ['data_uri']", id="missing-param"),
        pytest.param(
            ["main", "-p", "data_uri=x", "-p", "epochz=3"], "no parameter 'epochz'", id="unknown"
        ),
        pytest.param(
            ["main", "-p", "data_uri=x", "-p", "epochs=many"], "expects number_integer", id="type"
        ),
        pytest.param(["nosuch"], "unknown pipeline 'nosuch'", id="unknown-pipeline"),
        pytest.param(["missing.yaml"], "missing.yaml does not exist", id="missing-file"),
    ],
)
def test_bad_input_fails_with_one_error_line_before_any_kfp_request(
    kfp_server: KfpContractServer, args: list[str], message: str
) -> None:
    code, out, err = _submit(*args, "--host", kfp_server.host)

    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert kfp_server.requests == []  # nothing uploaded, no run started


def test_an_unreachable_host_fails_with_one_error_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed once the block ends
    proc = subprocess.run(
        [sys.executable, "-m", "kubeforge.cli.app", "submit", str(GOLDEN), "--host", host]
        + ["-p", "data_uri=/data/digits.csv"],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: Kubeflow Pipelines at " + host + " is unavailable")
    assert "kfpHost" in lines[0]
    assert "Kubeflow UI" not in proc.stdout
