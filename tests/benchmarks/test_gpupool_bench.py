"""`python -m benchmarks.gpupool` (make bench-gpupool) on a tiny trace: it runs, prints, writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_both_scenarios_with_the_headroom_frontier(tmp_path: Path) -> None:
    out = tmp_path / "gpupool.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpupool", "--jobs", "60", "--nodes", "40"]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Exit 1 means a target missed on this tiny trace, which is allowed; anything else is not.
    assert done.returncode in (0, 1), done.stderr
    result = json.loads(out.read_text())
    for name in ("ample", "scarce"):
        scenario = result["scenarios"][name]
        frontiers = scenario["frontiers"]
        # 40 nodes: headroom 8, 16, 24, 32, 48, 64 per 1,000 nodes round to 1, 2, 3 nodes.
        for key in ("kubeforge", "per_pod", "per_pod_most_allocated"):
            assert {k for k in frontiers if k.startswith(f"{key}_headroom_")} == {
                f"{key}_headroom_{h}" for h in (1, 2, 3)
            }
        assert all(p["headroom_nodes"] == 2 for p in frontiers["per_pod_headroom_2"])
        row = scenario["policies"]["kubeforge_headroom"]
        assert row["headroom_nodes"] == 1 and row["jobs_finished"] == row["jobs"] == 60
        # Every Pareto point of the per-pod frontier (with and without spare nodes) is compared.
        points = scenario["dominance_with_spare_nodes"]["per_pod"]
        assert points and all(d["baseline_config"].startswith("per_pod") for d in points)
        waits = [d["baseline_p95_min"] for d in points]
        assert waits == sorted(waits)
        # The frontier: the per-pod autoscaler over idleAfter alone, one point each.
        assert [d["baseline_config"] for d in scenario["dominance"]["per_pod"]] == ["per_pod"] * 5
        targets = {t["target"] for t in scenario["targets"]}
        assert any(t.startswith("Kubeforge with headroomNodes 1 vs per-pod") for t in targets)
    assert "headroomNodes 1" in done.stdout and "Kubeforge without headroom" in done.stdout
