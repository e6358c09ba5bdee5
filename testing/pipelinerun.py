"""Pieces of the tests that run a PipelineRun on the real node (MLflow in the cluster, RBAC, runs).

The run's objects are the examples in ``manifests/examples`` with a test's parameters; MLflow runs
in the cluster as the chart runs it; :func:`deploy_mlflow` starts it and uploads the data. The
run's pods carry no toleration: such a test asks for the ``untainted_node`` fixture.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kubeforge.testing.controlplane import repo_root
from kubeforge.testing.fixtures import wait_for, wait_for_crd
from kubeforge.testing.node import on_real_node

EXAMPLES = repo_root() / "manifests" / "examples"
CRDS = repo_root() / "manifests" / "crds"
MLFLOW_PORT = 5000
SERVE_MLFLOW = (
    "mkdir -p /tmp/mlflow && "
    f"exec mlflow server --host=0.0.0.0 --port={MLFLOW_PORT} --serve-artifacts"
)


def mlflow_objects(namespace: str, image: str) -> list[dict[str, Any]]:
    """MLflow as the chart runs it (tracking + artifact proxy), on the pod's own disk."""
    labels = {"app": "mlflow"}
    env = {
        "MLFLOW_BACKEND_STORE_URI": "sqlite:////tmp/mlflow/mlflow.db",
        "MLFLOW_ARTIFACTS_DESTINATION": "/tmp/mlflow/artifacts",
        "MLFLOW_WORKERS": "1",
        # Reached by its Service name from pods and by its ClusterIP from this test.
        "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
        "MLFLOW_TMP_DIR": "/tmp",
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mlflow", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": on_real_node(
                    {
                        "containers": [
                            {
                                "name": "mlflow",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "command": ["sh", "-c", SERVE_MLFLOW],
                                "env": [{"name": k, "value": v} for k, v in env.items()],
                                "ports": [{"name": "http", "containerPort": MLFLOW_PORT}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/health", "port": MLFLOW_PORT},
                                    "periodSeconds": 2,
                                },
                            }
                        ]
                    }
                ),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mlflow", "namespace": namespace},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": MLFLOW_PORT}]},
    }
    return [deployment, service]


def runner_rbac(namespace: str) -> list[dict[str, Any]]:
    """What the run's pod does: PyTorchJobs (and reading their pods), Deployments, Services."""
    rules = [
        {
            "apiGroups": ["kubeflow.org"],
            "resources": ["pytorchjobs"],
            "verbs": ["get", "list", "watch", "create"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "patch"]},
    ]
    meta = {"name": "pipeline-runner", "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pipeline-runner",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": namespace}
            ],
        },
    ]


def example_objects(
    namespace: str, data_uri: str, parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    """The example Pipeline and PipelineRun with this cluster's data and the small settings."""
    objects = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "Pipeline":
            obj["spec"]["parameters"] = {**obj["spec"]["parameters"], "data_uri": data_uri}
        else:
            obj["spec"]["parameters"] = {
                **obj["spec"].get("parameters", {}),
                **parameters,
                "namespace": namespace,  # of the PyTorchJob and the served Deployment
            }
            obj["spec"]["serviceAccountName"] = "pipeline-runner"
        objects.append(obj)
    return objects


def ready_pods(core: Any, namespace: str, selector: str) -> list[Any]:
    """The pods matching ``selector`` whose Ready condition is true."""
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def diagnose(kubectl: Callable[..., subprocess.CompletedProcess[str]], namespace: str) -> str:
    """What a failed run left: its objects, the namespace's events and each pod's last lines."""
    kinds = "pods,pytorchjobs,jobs,deployments,services"
    parts = [kubectl("get", kinds, "-n", namespace, "-o", "wide", check=False).stdout]
    events = kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
    parts.append("\n".join(events.stdout.splitlines()[-30:]))
    names = kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split()
    for pod in names:
        log = kubectl("logs", "-n", namespace, pod, "--all-containers", "--tail=40", check=False)
        parts.append(f"--- {pod}\n{log.stdout}{log.stderr}")
    return "\n".join(parts)


def answers(url: str, check: Callable[[bytes], bool]) -> bool:
    """Whether ``url`` answers what ``check`` wants (kube-proxy programs a ClusterIP late)."""
    try:
        return check(http(url))
    except OSError:  # URLError too: not programmed yet, or the server is starting
        return False


def http(url: str, body: bytes | None = None, method: str = "GET") -> bytes:
    """The body ``url`` answers (``body`` sent as JSON when given)."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - a ClusterIP
        data: bytes = resp.read()
        return data


def deploy_mlflow(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    api_client: Any,
    namespace: str,
    image: str,
    data: Path,
) -> tuple[str, str, str]:
    """MLflow in ``namespace`` with ``data`` uploaded through its artifact proxy.

    Returns:
        Its URL from this host (the ClusterIP), its URL from pods (the Service name), and the
        data's URL from pods.
    """
    core = client.CoreV1Api(api_client)
    objects = yaml.safe_dump_all(mlflow_objects(namespace, image))
    kubectl("apply", "-n", namespace, "-f", "-", stdin=objects)
    wait_for(lambda: bool(ready_pods(core, namespace, "app=mlflow")), timeout=300)
    cluster_ip = core.read_namespaced_service("mlflow", namespace).spec.cluster_ip
    outside = f"http://{cluster_ip}:{MLFLOW_PORT}"
    inside = f"http://mlflow.{namespace}.svc.cluster.local:{MLFLOW_PORT}"
    wait_for(lambda: answers(f"{outside}/health", lambda body: body == b"OK"), timeout=60)
    artifact = f"api/2.0/mlflow-artifacts/artifacts/data/{data.name}"
    http(f"{outside}/{artifact}", data.read_bytes(), method="PUT")
    return outside, inside, f"{inside}/{artifact}"


def prepare_run(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    api_client: Any,
    namespace: str,
    image: str,
    data: Path,
    kubeconfig: Path,
    setenv: Callable[[str, str], None],
    delenv: Callable[[str], None],
) -> tuple[str, str, str]:
    """Everything a PipelineRun on the real node needs before it is applied.

    Kubeforge's CRDs, MLflow in ``namespace`` with ``data`` (:func:`deploy_mlflow`), the run's
    RBAC, and the environment of the operator that this test process runs (``setenv`` and
    ``delenv``: pytest's monkeypatch, so nothing outlives the test).

    Returns:
        What :func:`deploy_mlflow` returns.
    """
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for crd in ("pipelines.kubeforge.io", "pipelineruns.kubeforge.io"):
        wait_for_crd(api_client, crd)
    urls = deploy_mlflow(kubectl, api_client, namespace, image, data)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(runner_rbac(namespace)))
    setenv("KUBECONFIG", str(kubeconfig))
    setenv("KUBEFORGE_IMAGE", image)
    setenv("MLFLOW_TRACKING_URI", urls[1])
    setenv("KUBEFORGE_RUN_INTERVAL", "5")
    setenv("KUBEFORGE_METRICS_PORT", "0")
    delenv("KUBEFORGE_KFP_HOST")
    return urls


def run_status(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], namespace: str, name: str
) -> dict[str, Any]:
    """The PipelineRun ``name``'s status as the API server holds it now ({} before any)."""
    out = kubectl("get", "pipelinerun", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status", {}))
