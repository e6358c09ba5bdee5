"""Cluster objects that serve a registered model: a KServe InferenceService, or a Deployment."""

from __future__ import annotations

from typing import Any

from kubeforge.core.config import IMAGE


def render_manifests(
    target: str, name: str, namespace: str, model_uri: str, tracking_uri: str
) -> list[dict[str, Any]]:
    """The cluster objects for ``target`` (none for ``local``)."""
    if target == "kserve":
        return [build_inference_service(name, namespace, model_uri)]
    if target == "deployment":
        return [
            build_deployment(name, namespace, IMAGE, model_uri, tracking_uri),
            build_service(name, namespace),
        ]
    return []


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
