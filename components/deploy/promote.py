"""Deploy: register in MLflow, smoke-test over HTTP, then move the alias; cluster manifests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kubeforge.components.deploy.server import ModelServer
from kubeforge.components.ingest.ingest import LoadedSplit
from kubeforge.components.train.model import Classifier
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
    alias: str = "champion",
    min_accuracy: float = 0.8,
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


def build_inference_service(
    name: str, namespace: str, storage_uri: str, service_account: str = ""
) -> dict[str, Any]:
    """A KServe ``InferenceService`` serving an MLflow-format model from ``storage_uri``."""
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": "mlflow"},
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "resources": {
                "requests": {"cpu": "100m", "memory": "512Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        }
    }
    if service_account:
        predictor["serviceAccountName"] = service_account
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(name)},
        "spec": {"predictor": predictor},
    }


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "kubeforge"}


def build_deployment(
    name: str, namespace: str, image: str, model_uri: str, tracking_uri: str, replicas: int = 1
) -> dict[str, Any]:
    """A Deployment running ``kubeforge serve`` for ``model_uri`` (no KServe needed)."""
    labels = _labels(name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "args": ["serve", model_uri, "--host", "0.0.0.0", "--port", "8080"],
                            "env": [{"name": "MLFLOW_TRACKING_URI", "value": tracking_uri}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def build_service(name: str, namespace: str) -> dict[str, Any]:
    """The Service in front of :func:`build_deployment`, with Prometheus scrape annotations."""
    labels = _labels(name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
        },
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
