"""The CLI end to end: the demo, and bad input that must fail clearly without moving an alias."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _kubeforge(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEFORGE_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "kubeforge.cli.app", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _champion(tmp_path: Path) -> str | None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    try:
        return str(client.get_model_version_by_alias("kubeforge-digits", "champion").version)
    except MlflowException:
        return None


def test_demo_ends_with_a_summary_and_a_served_prediction(tmp_path: Path) -> None:
    proc = _kubeforge(tmp_path, "demo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "label accuracy (hidden)" in out
    assert "served prediction" in out
    assert "endpoint                  http://127.0.0.1:" in out
    assert _champion(tmp_path) == "1"
    lines = out.splitlines()
    assert len(lines) <= 40, out  # one line per stage and the summary, no kfp task logs
    assert "Executing task" not in out and "executor" not in out
    stage_lines = [line for line in lines if line.startswith("✓ ")]
    assert [line.split()[1] for line in stage_lines] == [
        "ingest", "label", "train", "distill", "deploy",
    ]  # fmt: skip
    assert "labels spent              60 gold rows" in out
    assert "CPU seconds" in out and "retention gate" in out
    assert lines[-1].startswith("serve it again with")  # the summary ends the output
    logs = list((tmp_path / "home" / "runs").glob("*/distill.log"))
    assert len(logs) == 1 and "Executing task 'distill'" in logs[0].read_text()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        (["mlflow_tracking_uri=http://127.0.0.1:9"], "parameter 'mlflow_tracking_uri'"),
        (["no_such=1"], "has no parameter 'no_such'"),
        (["epochs=many"], "parameter 'epochs' expects number_integer"),
        (["label_column=digit"], "label column 'digit' is not in the data"),
        (["gold_budget=0.001"], "stage 'ingest' failed: gold_budget 0.001 of"),
        (["gold_budget=2"], "parameter 'gold_budget' must be in (0, 1], got 2.0"),
        (["data_format=xml"], "parameter 'data_format' must be one of auto, csv"),
        (["min_accuracy=1", "gate_confidence=0.5"], "parameter 'min_accuracy'"),
    ],
    ids=[
        "unreachable-mlflow", "unknown-param", "wrong-type", "missing-label", "too-few-gold",
        "gold-budget-range", "data-format-enum", "deploy-gate",
    ],
)  # fmt: skip
def test_bad_input_fails_with_one_clear_message(
    tmp_path: Path, digits_csv: Path, params: list[str], words: str
) -> None:
    args = ["run", "main", "--local", "--param", f"data_uri={digits_csv}"]
    for p in params:
        args += ["--param", p]
    proc = _kubeforge(tmp_path, *args)
    assert proc.returncode == 1
    assert words in proc.stderr
    assert proc.stderr.count("error:") == 1
    if (tmp_path / "home" / "mlflow.db").exists():
        assert _champion(tmp_path) is None


def test_a_compiled_ir_file_runs_as_a_pipeline_runs_job_does(
    tmp_path: Path, digits_csv: Path
) -> None:
    """Exactly the command a PipelineRun's Job runs: IR file, typed -p values, experiment."""
    import json

    from mlflow.tracking import MlflowClient

    ir = tmp_path / "pipeline.yaml"
    assert _kubeforge(tmp_path, "compile", "main", "-o", str(ir)).returncode == 0
    summary = tmp_path / "summary.json"
    proc = _kubeforge(
        tmp_path, "run", str(ir), "-p", f"data_uri={digits_csv}", "-p", "epochs=3",
        "--experiment", "team-a", "--summary-file", str(summary),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads(summary.read_text())
    assert len(summary.read_bytes()) < 4096  # fits a pod's termination message
    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    parent = client.get_run(written["mlflow_run_id"])
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == "team-a"
    stages = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.data.tags["kubeforge.stage"] for r in stages) == [
        "deploy", "distill", "ingest", "label", "train",
    ]  # fmt: skip

    bad = _kubeforge(tmp_path, "run", str(ir), "-p", "epochs=3", "--summary-file", str(summary))
    assert bad.returncode == 1 and "missing required parameter(s) ['data_uri']" in bad.stderr
    assert "data_uri" in json.loads(summary.read_text())["error"]


def test_an_exception_in_the_users_labelling_functions_names_their_file_and_line(
    tmp_path: Path, digits_csv: Path
) -> None:
    (tmp_path / "my_lfs.py").write_text(
        "def labeling_functions(*args, **kwargs):\n"
        "    raise ValueError('my labelling functions are broken')\n"
    )
    proc = _kubeforge(
        tmp_path, "run", "main", "-p", f"data_uri={digits_csv}",
        "-p", "labeling_functions=my_lfs:labeling_functions",
    )  # fmt: skip
    assert proc.returncode == 1
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, proc.stderr
    assert "stage 'label' failed: ValueError: my labelling functions are broken" in error[0]
    assert "my_lfs.py:2)" in error[0]  # the user's file and line
    log = Path(error[0].rsplit("log: ", 1)[1])
    assert log.name == "label.log" and "Traceback" in log.read_text()
    assert "Traceback" not in proc.stdout + proc.stderr  # tracebacks stay in the log
    assert proc.stdout.splitlines()[0].startswith("✓ ingest")
