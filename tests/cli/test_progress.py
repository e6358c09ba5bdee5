"""One line per stage from kfp.local's output; every line kept in the run's log folder."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from kubeforge.cli.progress import RunConsole

# What kfp.local 2.16 prints around a task (its colours included), and a task's own output.
KFP_OUTPUT = [
    "\x1b[92m12:00:00.001 - INFO - Executing task \x1b[96m'ingest'\x1b[0m\x1b[0m",
    "    executor JSON and the stage's own prints",
    "12:00:01.500 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status "
    "\x1b[92mSUCCESS\x1b[0m",
    "12:00:01.600 - INFO - Executing task 'label'",
    "    Traceback (most recent call last):",
    "    ValueError: boom",
    "12:00:02.000 - ERROR - Task 'label' finished with status FAILURE",
]


def test_each_stage_gets_one_line_and_its_own_log(tmp_path: Path) -> None:
    out = io.StringIO()
    console = RunConsole(
        tmp_path / "run",
        ["ingest", "label", "train"],
        lambda stage: f"{stage} figure",
        out=out,
        live=False,
    )
    with console.capture():
        for line in KFP_OUTPUT:
            print(line)
        print("a warning on stderr", file=sys.stderr)
    shown = out.getvalue().splitlines()
    assert len(shown) == 2
    assert shown[0].startswith("✓ ingest") and shown[0].endswith("ingest figure")
    assert shown[1].startswith("✗ label") and str(tmp_path / "run" / "label.log") in shown[1]
    assert console.failed_stage() == "label"
    assert console.lines["train"].state == "waiting"
    label_log = (tmp_path / "run" / "label.log").read_text()
    assert "ValueError: boom" in label_log and "executor JSON" not in label_log
    everything = (tmp_path / "run" / "pipeline.log").read_text()
    assert "executor JSON" in everything and "a warning on stderr" in everything
    assert "\x1b[" not in everything


def test_verbose_streams_the_logs_as_well(tmp_path: Path) -> None:
    out = io.StringIO()
    console = RunConsole(tmp_path, ["ingest"], lambda _: "", verbose=True, out=out, live=False)
    with console.capture():
        for line in KFP_OUTPUT[:3]:
            print(line)
    assert "executor JSON" in out.getvalue()
