"""KFP interface of the distill component."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kubeforge.core.config import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def distill(
    teacher: Input[Model],
    train_data: Input[Dataset],
    test_data: Input[Dataset],
    student: Output[Model],
    report: Output[Artifact],
    hidden: str = "32",
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int = 60,
    quantize_int8: bool = False,
    min_retention: float = 0.97,
    gate_confidence: float = 0.95,
    seed: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
):
    """Distill the teacher into a smaller student; fail when retention is below the gate.

    Args:
        teacher: Model from train.
        train_data: Labelled training rows.
        test_data: Test split for the side-by-side report.
        student: The student model.
        report: JSON report: accuracy, parameters, bytes, p50/p95 latency of both models.
        hidden: Comma-separated hidden widths of the student.
        temperature: Softmax temperature of the distillation loss.
        alpha: Weight of the soft (teacher) loss against the hard-label loss.
        epochs: Student training epochs.
        quantize_int8: Apply dynamic int8 quantization to the student's Linear layers.
        min_retention: Smallest accepted student/teacher accuracy ratio; the gate fails only
            when its whole confidence interval (paired bootstrap on the test rows) is below.
        gate_confidence: Confidence level of the retention and smoke-test gates' intervals.
        seed: Seed for initialisation and shuffling.
        mlflow_tracking_uri: MLflow tracking URI; empty for the default.
        mlflow_parent_run_id: MLflow run to nest this stage's run under.
    """
    from kubeforge.components.distill.distillation import DistillParams
    from kubeforge.components.distill.stage import run_distill

    run_distill(
        DistillParams.from_arguments(locals()),  # the parameters above, each written once
        teacher.path,
        train_data.path,
        test_data.path,
        student,
        report,
        mlflow_tracking_uri,
        mlflow_parent_run_id,
    )
