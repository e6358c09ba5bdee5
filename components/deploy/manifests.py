"""Cluster objects that serve a registered model: a KServe InferenceService, or a Deployment."""

from __future__ import annotations

from typing import Any

from kubeforge.core.config import IMAGE

PORT = 8080
# Readiness turns false at SIGTERM; serving goes on this long so endpoints drop the pod first.
SHUTDOWN_DELAY_S = 5
# The drain delay plus requests in flight (the server's graceful timeout is 30 s).
TERMINATION_GRACE_S = 40
_TMP_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def render_manifests(
    target: str, name: str, namespace: str, model_uri: str, tracking_uri: str
) -> list[dict[str, Any]]:
    """The cluster objects for ``target`` (none for ``local``)."""
    if target == "kserve":
        return [build_inference_service(name, namespace, model_uri, tracking_uri)]
    if target == "deployment":
        return [
            build_deployment(name, namespace, IMAGE, model_uri, tracking_uri),
            build_service(name, namespace),
        ]
    return []


def build_inference_service(
    name: str,
    namespace: str,
    model_uri: str,
    tracking_uri: str = "",
    image: str = IMAGE,
    service_account: str = "",
) -> dict[str, Any]:
    """A KServe ``InferenceService`` whose predictor is Kubeforge's own server (a custom container).

    KServe's ``mlflow`` runtime cannot unpickle a Kubeforge classifier without the project
    installed, so the predictor runs the project image with ``kubeforge serve``: the same V1 and
    V2 routes KServe's clients speak, KServe-style probes on ``/v2/health/*``.
    """
    container = _server_container(name, image, model_uri, tracking_uri, "kserve-container")
    container["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]  # Knative: one unnamed port
    for probe in ("readinessProbe", "livenessProbe"):
        container[probe]["httpGet"]["port"] = PORT
    predictor: dict[str, Any] = {
        "minReplicas": 1,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "annotations": _scrape_annotations(),
        "securityContext": _POD_SECURITY,
        "containers": [container],
        "volumes": [_TMP_VOLUME],
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
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "securityContext": _POD_SECURITY,
                    "containers": [
                        _server_container(name, image, model_uri, tracking_uri, "server")
                    ],
                    "volumes": [_TMP_VOLUME],
                },
            },
        },
    }


def _server_container(
    name: str, image: str, model_uri: str, tracking_uri: str, container_name: str
) -> dict[str, Any]:
    """The ``kubeforge serve`` container: KServe-style probes, a drain delay before shutdown."""
    args = ["serve", model_uri, "--host", "0.0.0.0", "--port", str(PORT), "--name", name]
    args += ["--shutdown-delay", str(SHUTDOWN_DELAY_S)]
    env = [{"name": "MLFLOW_TRACKING_URI", "value": tracking_uri}] if tracking_uri else []
    return {
        "name": container_name,
        "image": image,
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT}],
        # MLflow downloads the model into /tmp; the root filesystem stays read-only.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        # Ready only once the model is loaded, and no longer from SIGTERM on.
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
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


def _scrape_annotations() -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
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
            "annotations": _scrape_annotations(),
        },
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
