"""KFP interface of the label component."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from kubeforge.core.config import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def label(
    train_data: Input[Dataset],
    labeled_data: Output[Dataset],
    report: Output[Artifact],
    review_tasks: Output[Artifact],
    labeling_functions: str = "kubeforge.components.label.generic:labeling_functions",
    gold_budget: float = 0.05,
    confidence_threshold: float = 0.9,
    min_confidence: float = 0.5,
    review_count: int = 50,
    human_labels: str = "",
    seed: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
):
    """Label the training rows by weak supervision from a small gold set.

    Args:
        train_data: Training split from ingest.
        labeled_data: Training rows with labels, their source and confidence.
        report: JSON label quality report (per-LF stats, label model vs majority vote).
        review_tasks: The most uncertain rows as Label Studio import tasks.
        labeling_functions: ``module:function`` building the labelling functions.
        gold_budget: Largest share of training rows whose labels may be used as gold.
        confidence_threshold: Model-assisted labels vote only above this probability.
        min_confidence: Weak labels below this label-model confidence are dropped.
        review_count: How many uncertain rows to export for human review.
        human_labels: Path of a Label Studio JSON export to merge in as gold labels.
        seed: Seed for the gold choice and the models.
        mlflow_tracking_uri: MLflow tracking URI; empty for the default.
        mlflow_parent_run_id: MLflow run to nest this stage's run under.
    """
    from kubeforge.components.label.labeling import LabelParams
    from kubeforge.components.label.stage import run_label

    run_label(
        LabelParams.from_arguments(locals()),  # the parameters above, each written once
        train_data.path,
        {"data": labeled_data, "report": report, "review": review_tasks},
        mlflow_tracking_uri,
        mlflow_parent_run_id,
    )
