"""`kubeforge pool simulate`: a job history in, the what-if table out, one error line if bad."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeforge.cli.app import app

EXAMPLE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpupool" / "example-jobs.csv"
EXAMPLE_POOL = EXAMPLE.with_name("example-pool.yaml")


def simulate(tmp_path: Path, csv_text: str, *args: str) -> tuple[int, str, str]:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(csv_text)
    result = CliRunner().invoke(app, ["pool", "simulate", "--jobs", str(jobs), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("csv_text", "args", "message"),
    [
        (
            "submit,replicas,gpus_per_replica\n0,1,8\n",
            (),
            "missing column(s) submit_time, duration",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration\n0,-2,8,1h\n",
            (),
            "line 2: column 'replicas' is -2; it must be at least 1",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration\n0,1,8,-5\n",
            (),
            "line 2: column 'duration' must be positive",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration\n0,1,8,1h\n60,5,8,1h\n",
            ("--max-nodes", "4"),
            "job 2 (submitted at 60s) needs 5 nodes of 8 GPUs, more than maxNodes 4",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration\n0,1,16,1h\n",
            (),
            "asks 16 GPUs per replica; the pool's nodes have 8 (--gpus-per-node)",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration,expected_runtime\n0,1,8,1h,\n"
            "60,1,8,1h,0\n",
            (),
            "line 3: column 'expected_runtime' must be positive, not 0",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration,expected_runtime\n0,1,8,1h,soon\n",
            (),
            "line 2: column 'expected_runtime' is 'soon'",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration\n0,1,8,1h\n",
            ("--max-nodes", "4", "--sweep-headroom-nodes", "0,5"),
            "headroomNodes 5 is above maxNodes 4",
        ),
        (
            "submit_time,replicas,gpus_per_replica,duration\n0,1,8,1h\n",
            ("--headroom-nodes", "-1"),
            "--headroom-nodes -1: it must be at least 0",
        ),
    ],
    ids=[
        "missing-columns",
        "negative-replicas",
        "negative-duration",
        "above-max-nodes",
        "pod",
        "zero-expected-runtime",
        "expected-runtime-not-a-time",
        "headroom-above-max-nodes",
        "negative-headroom",
    ],
)
def test_bad_input_gets_one_error_line_naming_the_problem(
    tmp_path: Path, csv_text: str, args: tuple[str, ...], message: str
) -> None:
    code, out, err = simulate(tmp_path, csv_text, *args)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_the_example_history_replays_through_the_pool_spec_with_table_and_frontier() -> None:
    result = CliRunner().invoke(
        app,
        [
            "pool",
            "simulate",
            "--jobs",
            str(EXAMPLE),
            "--pool",
            str(EXAMPLE_POOL),
            "--sweep-idle-after",
            "0,10m",
            "--sweep-max-nodes",
            "6,8",
        ],
    )
    assert result.exit_code == 0, result.stderr
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")
        for line in result.stdout.splitlines()
        if line.startswith("| ")
    }
    kubeforge, per_pod = (
        rows["Kubeforge (this pool spec)"],
        rows["per-pod autoscaler, same idleAfter, default scheduler"],
    )
    assert kubeforge[1] == per_pod[1] == "15 / 15"  # every job of the example ran
    assert "run times declared by 10 of 15 jobs" in result.stdout
    assert rows["Kubeforge, run times not declared"][1] == "15 / 15"
    assert kubeforge[2] == "0" and int(per_pod[2]) > 0  # partially placed jobs
    assert float(kubeforge[5]) < float(per_pod[5])  # idle GPU-hours
    frontier = [line for line in result.stdout.splitlines() if line.startswith(("| 0 |", "| 10 |"))]
    assert len(frontier) == 4  # idleAfter 0 and 10m, maxNodes 6 and 8


def table(stdout: str) -> dict[str, list[str]]:
    """The policy table's rows by label, cells stripped."""
    return {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| policy")
    }


def test_declared_run_times_spare_a_node_and_the_report_shows_the_pool_without_them(
    tmp_path: Path,
) -> None:
    # A runs 4m..20m40s on the only node (every boot takes 4 min); B comes at 18m20s, when A's
    # declared end is 2m20s away: planned with it, B waits for A's node; without, a node boots.
    options = ("--boot-time", "4m", "--max-nodes", "4", "--sweep-idle-after", "10m")
    head = "submit_time,replicas,gpus_per_replica,duration"
    code, out, err = simulate(
        tmp_path, f"{head},expected_runtime\n0,1,8,1000,1000\n1100,1,8,600,\n", *options
    )
    assert code == 0, err
    rows = table(out)
    declared, undeclared = (
        rows["Kubeforge (this pool spec)"],
        rows["Kubeforge, run times not declared"],
    )
    assert "run times declared by 1 of 2 jobs" in out
    assert declared[0] == undeclared[0] == "2 / 2" and declared[3] == undeclared[3]  # p95 wait
    assert float(declared[5]) < float(undeclared[5])  # node-hours
    code, silent, err = simulate(tmp_path, f"{head}\n0,1,8,1000\n1100,1,8,600\n", *options)
    assert code == 0, err
    assert "declared" not in silent and "Kubeforge, run times not declared" not in table(silent)
    assert table(silent)["Kubeforge (this pool spec)"] == undeclared


def test_headroom_nodes_start_jobs_without_a_boot_and_the_frontier_sweeps_them(
    tmp_path: Path,
) -> None:
    # Three 1-node jobs 30 min apart, each running 10 min, every boot 4 min. Without headroom
    # each waits a boot. With one spare node the first still waits (the spare is asked for
    # when the replay starts, with the first job), the next two start at once.
    head = "submit_time,replicas,gpus_per_replica,duration"
    csv_text = f"{head}\n0,1,8,10m\n30m,1,8,10m\n60m,1,8,10m\n"
    options = ("--boot-time", "4m", "--max-nodes", "4", "--scale-down-policy", "QueueAware")
    code, out, err = simulate(tmp_path, csv_text, *options)
    assert code == 0, err
    without = table(out)["Kubeforge (this pool spec)"]
    code, out, err = simulate(tmp_path, csv_text, *options, "--headroom-nodes", "1")
    assert code == 0, err
    rows = table(out)
    spare = rows["Kubeforge (this pool spec)"]
    assert float(without[2]) == 4.0 and float(spare[2]) == 0.0  # p50 wait (min)
    assert float(spare[4]) > float(without[4])  # the spare node's idle GPU-hours: the price
    # The per-pod baseline keeps as many spare nodes (placeholder pods): the same p50.
    per_pod = rows["per-pod autoscaler, same idleAfter and spare nodes, default scheduler"]
    assert float(per_pod[2]) == 0.0
    code, out, err = simulate(tmp_path, csv_text, *options, "--sweep-headroom-nodes", "0,1,2")
    assert code == 0, err
    swept = [
        cells[2]
        for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines())
        if len(cells) == 7 and cells[0] == "10"
    ]
    assert swept == ["0", "1", "2"]  # the frontier has a row per headroomNodes
