"""The main pipeline: ingest -> label -> train -> distill -> deploy."""

from kfp import dsl

from kubeforge.components.deploy.component import deploy
from kubeforge.components.distill.component import distill
from kubeforge.components.ingest.component import ingest
from kubeforge.components.label.component import label
from kubeforge.components.train.component import train

NAME = "kubeforge-main"


@dsl.pipeline(name=NAME, description="Raw data to a served model with few labels.")
def main_pipeline(
    data_uri: str,
    label_column: str = "label",
    feature_columns: str = "",
    data_format: str = "auto",
    labeling_functions: str = "kubeforge.components.label.examples.digits:labeling_functions",
    gold_budget: float = 0.05,
    human_labels: str = "",
    teacher_hidden: str = "256,256,256",
    epochs: int = 30,
    nproc: int = 2,
    train_backend: str = "local",
    namespace: str = "default",
    workers: int = 1,
    gpus_per_replica: int = 1,
    node_selector: str = "",
    student_hidden: str = "32",
    quantize_int8: bool = False,
    min_retention: float = 0.97,
    model_name: str = "kubeforge-digits",
    deploy_target: str = "local",
    seed: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
) -> None:
    """Ingest, weakly label, train a teacher, distill a student, deploy it behind an alias."""
    tracking = {
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "mlflow_parent_run_id": mlflow_parent_run_id,
    }
    ingested = ingest(
        data_uri=data_uri,
        label_column=label_column,
        feature_columns=feature_columns,
        data_format=data_format,
        seed=seed,
        **tracking,
    ).set_display_name("ingest")
    labelled = label(
        train_data=ingested.outputs["train_data"],
        labeling_functions=labeling_functions,
        gold_budget=gold_budget,
        human_labels=human_labels,
        seed=seed,
        **tracking,
    ).set_display_name("label")
    trained = train(
        train_data=labelled.outputs["labeled_data"],
        val_data=ingested.outputs["val_data"],
        hidden=teacher_hidden,
        epochs=epochs,
        nproc=nproc,
        backend=train_backend,
        namespace=namespace,
        workers=workers,
        gpus_per_replica=gpus_per_replica,
        node_selector=node_selector,
        seed=seed,
        **tracking,
    ).set_display_name("train")
    distilled = distill(
        teacher=trained.outputs["model"],
        train_data=labelled.outputs["labeled_data"],
        test_data=ingested.outputs["test_data"],
        hidden=student_hidden,
        quantize_int8=quantize_int8,
        min_retention=min_retention,
        seed=seed,
        **tracking,
    ).set_display_name("distill")
    deploy(
        model=distilled.outputs["student"],
        test_data=ingested.outputs["test_data"],
        model_name=model_name,
        target=deploy_target,
        namespace=namespace,
        **tracking,
    ).set_display_name("deploy")
