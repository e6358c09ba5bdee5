"""KFP interface of the deploy component."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kubeforge.core.config import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    model: Input[Model],
    test_data: Input[Dataset],
    deployment: Output[Artifact],
    model_name: str = "",
    alias: str = "champion",
    min_accuracy: float = 0.8,
    gate_confidence: float = 0.95,
    target: str = "local",
    namespace: str = "default",
    mlflow_tracking_uri: str = "",
    mlflow_parent_run_id: str = "",
):
    """Register the model in MLflow and move the alias only after an HTTP smoke test passes.

    Args:
        model: The model to deploy (the distilled student).
        test_data: Rows for the smoke test.
        deployment: JSON: registered version, alias, model URI, rendered manifests.
        model_name: Registered model name in the MLflow registry; empty for one derived from
            the data (``kubeforge-<file name>``). An alias is never moved to a model of another
            input signature.
        alias: Registry alias moved to the new version after the smoke test.
        min_accuracy: Smallest smoke-test accuracy that lets the alias move; the gate fails
            only when its whole confidence interval (Wilson) is below.
        gate_confidence: Confidence level of the retention and smoke-test gates' intervals.
        target: ``local`` (serve with ``kubeforge serve``), ``kserve`` (an InferenceService) or
            ``deployment`` (a Deployment + Service); cluster targets are applied in-cluster.
        namespace: Namespace of the cluster resources.
        mlflow_tracking_uri: MLflow tracking URI; empty for the default.
        mlflow_parent_run_id: MLflow run to nest this stage's run under.
    """
    from kubeforge.components.deploy.stage import DeployParams, run_deploy

    run_deploy(
        DeployParams.from_arguments(locals()),  # the parameters above, each written once
        model.path,
        test_data.path,
        deployment,
        mlflow_tracking_uri,
        mlflow_parent_run_id,
    )
