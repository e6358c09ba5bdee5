"""Promotion: register in MLflow, smoke-test the registered version over HTTP, move the alias."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

import numpy as np

from kubeforge.components.common.model import Classifier
from kubeforge.components.common.splits import LoadedSplit
from kubeforge.components.deploy.server import ModelServer
from kubeforge.core.errors import KubeforgeError


@dataclass
class DeployResult:
    """What deploy did."""

    model_name: str
    version: str
    alias: str
    alias_moved: bool
    smoke_accuracy: float
    model_uri: str

    def to_json(self) -> str:
        """As indented JSON."""
        return json.dumps(asdict(self), indent=2)


def smoke_test(
    model: Classifier, test: LoadedSplit, name: str, min_accuracy: float, rows: int = 64
) -> float:
    """Serve ``model`` on a free loopback port, send real requests, check the answers."""
    server = ModelServer(model, list(model.spec.classes), name).start()
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as resp:
            if resp.status != 200:
                raise KubeforgeError(f"smoke test: /healthz answered {resp.status}")
        x = test.features()[:rows]
        y = test.label_indices()[:rows]
        request = urllib.request.Request(
            server.predict_url,
            data=json.dumps({"instances": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise KubeforgeError(
                f"smoke test: predict answered {exc.code}: {exc.read()!r}"
            ) from exc
    finally:
        server.stop()
    index = {c: i for i, c in enumerate(model.spec.classes)}
    predicted = np.array([index.get(p, -1) for p in body.get("predictions", [])])
    if len(predicted) != len(y):
        raise KubeforgeError(f"smoke test: {len(predicted)} predictions for {len(y)} rows")
    acc = float((predicted == y).mean())
    if acc < min_accuracy:
        raise KubeforgeError(
            f"smoke test accuracy {acc:.3f} is below {min_accuracy:.3f}; alias not moved",
            "min_accuracy",
        )
    return acc


def register_and_promote(
    model: Classifier,
    test: LoadedSplit,
    model_name: str,
    alias: str,
    min_accuracy: float,
) -> DeployResult:
    """Log + register the model in the active MLflow run; move ``alias`` after a smoke test.

    The alias is only moved when the model loaded back from the registry passes the smoke test;
    a failing version stays registered, tagged ``kubeforge.smoke_test=failed``.
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("register_and_promote needs an active MLflow run")
    mlflow.pytorch.log_model(
        model,
        name="model",
        # Pickle keeps the Classifier (with its spec and classes); pt2 would keep only a graph.
        serialization_format="pickle",
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name)
    client = MlflowClient()
    uri = f"models:/{model_name}/{version.version}"
    loaded: Classifier = mlflow.pytorch.load_model(uri)
    try:
        acc = smoke_test(loaded, test, model_name, min_accuracy)
    except KubeforgeError:
        client.set_model_version_tag(model_name, version.version, "kubeforge.smoke_test", "failed")
        raise
    client.set_model_version_tag(model_name, version.version, "kubeforge.smoke_test", "passed")
    client.set_registered_model_alias(model_name, alias, version.version)
    return DeployResult(
        model_name, str(version.version), alias, True, acc, f"models:/{model_name}@{alias}"
    )
