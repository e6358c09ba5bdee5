from __future__ import annotations

from pathlib import Path

import yaml

from kubeforge.pipelines.registry import compile_pipeline

GOLDEN = Path(__file__).parents[1] / "main.yaml"


def test_compiled_pipeline_matches_the_golden_file(tmp_path: Path) -> None:
    out = tmp_path / "main.yaml"
    compile_pipeline("main", str(out))
    assert out.read_text() == GOLDEN.read_text(), (
        "the compiled DAG changed: run `make compile` and review pipelines/main/main.yaml"
    )


def test_dag_wires_the_five_stages_in_order() -> None:
    ir = yaml.safe_load(GOLDEN.read_text())
    tasks = ir["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "label", "train", "distill", "deploy"}
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps["label"] == {"ingest"}
    assert deps["train"] == {"ingest", "label"}
    assert deps["distill"] == {"ingest", "label", "train"}
    assert deps["deploy"] == {"ingest", "distill"}
    for name in tasks:
        executor = ir["deploymentSpec"]["executors"][f"exec-{name}"]["container"]
        assert "pip install" not in " ".join(executor["command"])
