"""KFP interface of the train component."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kubeforge.core.config import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    train_data: Input[Dataset],
    val_data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    hidden: str = "256,256,256",
    epochs: int = 30,
    batch_size: int = 64,
    learning_rate: float = 0.001,
    weight_decay: float = 0.0001,
    grad_accum_steps: int = 1,
    nproc: int = 2,
    backend: str = "local",
    namespace: str = "default",
    workers: int = 1,
    gpus_per_replica: int = 1,
    node_selector: str = "",
    tolerations: str = "",
    expected_runtime: str = "auto",
    seed: int = 0,
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
):
    """Train the teacher classifier with DDP: locally (TorchX), as a PyTorchJob or a TrainJob.

    Args:
        train_data: Labelled training rows.
        val_data: Validation split.
        model: The trained model (torch.save of spec and weights).
        metrics: Validation accuracy, loss, samples/s.
        hidden: Comma-separated hidden layer widths.
        epochs: Passes over the training data.
        batch_size: Rows per step and process.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay (decoupled, on every weight and bias).
        grad_accum_steps: Micro-batches per optimizer step.
        nproc: Local DDP processes (gloo on CPU).
        backend: ``local`` (TorchX here), ``pytorchjob`` or ``trainjob`` (Trainer v2).
        namespace: Namespace of the PyTorchJob or TrainJob.
        workers: Replicas besides the first (PyTorchJob Workers; TrainJob nodes minus one).
        gpus_per_replica: GPUs each replica (TrainJob node) requests.
        node_selector: ``key=value,...`` node selector of the GPU pool.
        tolerations: Taints of the GPU pool's nodes the job's pods tolerate, as ``kubectl
            taint`` writes them, comma-separated: ``key=value:Effect``, ``key:Effect``,
            ``key=value`` or ``key`` (every effect).
        expected_runtime: How long the PyTorchJob or TrainJob runs, declared on its pods
            (``kubeforge.io/expected-runtime-seconds``) so the GPU pool sees when their nodes
            free: ``auto`` learns it from finished train runs with the same settings in MLflow
            (scaled to epochs x rows), ``none`` declares nothing, or seconds / a duration
            (``1h30m``).
        seed: Seed for initialisation and shuffling.
        mlflow_tracking_uri: MLflow tracking URI; empty for the default.
        mlflow_parent_run_id: MLflow run to nest this stage's run under.
    """
    from kubeforge.components.train.stage import run_train
    from kubeforge.components.train.trainer import TrainParams

    run_train(
        TrainParams.from_arguments(locals()),  # the parameters above, each written once
        train_data.path,
        val_data.path,
        model,
        metrics,
        mlflow_tracking_uri,
        mlflow_parent_run_id,
        train_uri=train_data.uri,
        val_uri=val_data.uri,
    )
