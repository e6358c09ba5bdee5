"""KFP interface of the ingest component."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from kubeforge.core.config import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    data_uri: str,
    train_data: Output[Dataset],
    val_data: Output[Dataset],
    test_data: Output[Dataset],
    report: Output[Artifact],
    label_column: str = "label",
    feature_columns: str = "",
    data_format: str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_size: int = 8,
    gold_budget: float = 0.05,
    seed: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
):
    """Read, validate, clean, split and fingerprint a dataset; log it to MLflow.

    Args:
        data_uri: Local path, file://, s3://, gs:// or http(s):// URI of a CSV, Parquet or JSONL
            file, or of an image folder with one sub-folder per class.
        train_data: Training split (Parquet; unlabelled rows included).
        val_data: Validation split (Parquet, labelled).
        test_data: Test split (Parquet, labelled).
        report: JSON report: rows read/kept, drops by reason, splits, fingerprint.
        label_column: Column holding the class; empty cells are unlabelled rows.
        feature_columns: Comma-separated numeric feature columns; empty for all others.
        data_format: auto, csv, parquet, jsonl or images.
        val_fraction: Share of labelled rows for validation.
        test_fraction: Share of labelled rows for test.
        image_size: Images are resized to image_size x image_size grey pixels.
        gold_budget: Largest share of training rows whose labels may be used as gold;
            ingest refuses a split too small to give each class its gold rows.
        seed: Seed of the deterministic split.
        mlflow_tracking_uri: MLflow tracking URI; empty for the default.
        mlflow_parent_run_id: MLflow run to nest this stage's run under.
    """
    from kubeforge.components.ingest.prepare import IngestParams
    from kubeforge.components.ingest.stage import run_ingest

    run_ingest(
        IngestParams.from_arguments(locals()),  # the parameters above, each written once
        {"train": train_data, "val": val_data, "test": test_data, "report": report},
        mlflow_tracking_uri,
        mlflow_parent_run_id,
    )
