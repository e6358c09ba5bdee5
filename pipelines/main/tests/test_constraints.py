"""Every range and choice of the main pipeline's parameters is checked before a task starts."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge.components.common.constraints import CONSTRAINTS
from kubeforge.core.errors import KubeforgeError
from kubeforge.pipelines.ir import check_parameters, parameters_from_strings
from kubeforge.pipelines.main.pipeline import STAGES
from kubeforge.pipelines.registry import pipeline_ir


def test_every_constraint_names_a_parameter_and_accepts_its_default() -> None:
    ir = pipeline_ir("main")
    renamed = {old for renames in STAGES.values() for old in renames}
    for name, rule in CONSTRAINTS.items():
        assert name in ir.parameters or name in renamed, name
        if name in ir.parameters:
            assert rule.accepts(ir.parameters[name].default), name


@pytest.mark.parametrize(
    ("pair", "parameter", "words"),
    [
        ("gold_budget=2", "gold_budget", "must be in (0, 1], got 2.0"),
        ("gold_budget=0", "gold_budget", "must be in (0, 1]"),
        ("data_format=xml", "data_format", "must be one of auto, csv, parquet, jsonl, images"),
        ("test_fraction=1.5", "test_fraction", "must be in (0, 1)"),
        ("min_retention=0", "min_retention", "in (0, 1]"),
        ("min_accuracy=1.2", "min_accuracy", "in [0, 1]"),
        ("gate_confidence=0.2", "gate_confidence", "in [0.5, 1)"),
        ("deploy_target=k8s", "deploy_target", "one of local, kserve, deployment"),
        ("train_backend=slurm", "train_backend", "one of local, pytorchjob"),
        ("epochs=0", "epochs", ">= 1"),
        ("learning_rate=-1", "learning_rate", "> 0"),
    ],
    ids=lambda v: str(v).split("=")[0] if "=" in str(v) else None,
)
def test_values_out_of_range_are_refused_before_the_run(
    pair: str, parameter: str, words: str
) -> None:
    with pytest.raises(KubeforgeError) as excinfo:
        parameters_from_strings(pipeline_ir("main"), ["data_uri=x.csv", pair])
    assert excinfo.value.parameter == parameter
    assert words in str(excinfo.value)


def test_a_pipelinerun_value_out_of_range_names_its_field() -> None:
    values: dict[str, Any] = {"data_uri": "x.csv", "gold_budget": 1.5}
    with pytest.raises(KubeforgeError) as excinfo:
        check_parameters(pipeline_ir("main"), values)
    assert excinfo.value.parameter == "spec.parameters.gold_budget"


def test_the_readme_documents_only_parameters_the_pipeline_has() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    ir = pipeline_ir("main")
    for name in ("image_size", "min_accuracy", "min_retention", "gold_budget", "model_name"):
        assert f"`{name}`" not in readme or name in ir.parameters, name
