"""The main pipeline: ingest -> label -> train -> distill -> deploy.

Its parameters are its components' parameters (names, types, defaults from each
``component.py``); ``STAGES`` renames the few that would clash or that users know by another name.
"""

from kfp import dsl

from kubeforge.components.deploy.component import deploy
from kubeforge.components.distill.component import distill
from kubeforge.components.ingest.component import ingest
from kubeforge.components.label.component import label
from kubeforge.components.train.component import train
from kubeforge.pipelines.signature import StageInputs, pipeline_function

NAME = "kubeforge-main"

# Each stage, and which of its parameters the pipeline names otherwise: component -> pipeline.
STAGES = {
    ingest: {},
    label: {},
    train: {"hidden": "teacher_hidden", "backend": "train_backend"},
    distill: {"hidden": "student_hidden", "epochs": "distill_epochs"},
    deploy: {"target": "deploy_target"},
}


def _dag(inputs: StageInputs) -> None:
    ingested = ingest(**inputs(ingest)).set_display_name("ingest")
    labelled = label(train_data=ingested.outputs["train_data"], **inputs(label)).set_display_name(
        "label"
    )
    trained = train(
        train_data=labelled.outputs["labeled_data"],
        val_data=ingested.outputs["val_data"],
        **inputs(train),
    ).set_display_name("train")
    distilled = distill(
        teacher=trained.outputs["model"],
        train_data=labelled.outputs["labeled_data"],
        test_data=ingested.outputs["test_data"],
        **inputs(distill),
    ).set_display_name("distill")
    deploy(
        model=distilled.outputs["student"],
        test_data=ingested.outputs["test_data"],
        **inputs(deploy),
    ).set_display_name("deploy")


main_pipeline = dsl.pipeline(name=NAME, description="Raw data to a served model with few labels.")(
    pipeline_function(
        STAGES,
        _dag,
        "main_pipeline",
        "Ingest, weakly label, train a teacher, distill a student, deploy it behind an alias.",
    )
)
