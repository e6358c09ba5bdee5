from __future__ import annotations

import pytest
import yaml

from kubeforge.components.common.params import StageParams
from kubeforge.components.deploy.stage import DeployParams
from kubeforge.components.distill.component import distill
from kubeforge.components.distill.distillation import DistillParams
from kubeforge.components.ingest.prepare import IngestParams
from kubeforge.components.label.labeling import LabelParams
from kubeforge.components.train.component import train
from kubeforge.components.train.trainer import TrainParams
from kubeforge.pipelines.main.tests.test_compile import GOLDEN
from kubeforge.pipelines.signature import pipeline_inputs


@pytest.mark.parametrize(
    "params",
    [IngestParams, LabelParams, TrainParams, DistillParams, DeployParams],
    ids=lambda p: p.__name__,
)
def test_each_stage_takes_exactly_its_component_parameters(params: type[StageParams]) -> None:
    params.check_component()


def test_pipeline_parameters_keep_their_names_and_feed_their_stages() -> None:
    ir = yaml.safe_load(GOLDEN.read_text())
    declared = ir["root"]["inputDefinitions"]["parameters"]
    tasks = ir["root"]["dag"]["tasks"]

    def feeds(task: str, parameter: str) -> str:
        source: str = tasks[task]["inputs"]["parameters"][parameter]["componentInputParameter"]
        return source

    assert feeds("train", "hidden") == "teacher_hidden"
    assert feeds("train", "backend") == "train_backend"
    assert feeds("train", "epochs") == "epochs"
    assert feeds("distill", "hidden") == "student_hidden"
    assert feeds("distill", "epochs") == "distill_epochs"
    assert feeds("deploy", "target") == "deploy_target"
    assert feeds("deploy", "namespace") == feeds("train", "namespace") == "namespace"
    assert {feeds(t, "seed") for t in ("ingest", "label", "train", "distill")} == {"seed"}
    assert declared["teacher_hidden"]["defaultValue"] == "256,256,256"
    assert declared["distill_epochs"]["defaultValue"] == 60
    assert "isOptional" not in declared["data_uri"]


def test_one_pipeline_parameter_for_two_different_defaults_is_refused() -> None:
    with pytest.raises(ValueError, match="'hidden' feeds train .* and distill .*rename one"):
        pipeline_inputs({train: {}, distill: {}})
