"""The deploy stage as the component runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubeforge.components.deploy.deploy import (
    DeployResult,
    build_deployment,
    build_inference_service,
    build_service,
    register_and_promote,
)
from kubeforge.components.ingest.ingest import load_split
from kubeforge.components.train.model import load
from kubeforge.core.config import IMAGE
from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.core.tracking import stage_run

TARGETS = ("local", "kserve", "deployment")


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


def run_deploy(
    model_path: str,
    test_path: str,
    model_name: str,
    alias: str,
    min_accuracy: float,
    target: str,
    namespace: str,
    tracking_uri: str,
    parent_run_id: str,
    deployment_out: Any,
) -> DeployResult:
    """Register, smoke-test, move the alias, apply cluster manifests; fill the KFP output."""
    import mlflow

    if target not in TARGETS:
        raise KubeforgeError(f"target must be one of {TARGETS}, got {target!r}", "target")
    with stage_run("deploy", tracking_uri, parent_run_id):
        mlflow.log_params({"model_name": model_name, "alias": alias, "target": target})
        result = register_and_promote(
            load(model_path), load_split(test_path), model_name, alias, min_accuracy
        )
        mlflow.log_metric("smoke_accuracy", result.smoke_accuracy)
        manifests = render_manifests(
            target, model_name, namespace, result.model_uri, mlflow.get_tracking_uri()
        )
        if manifests:
            _apply(manifests)
        payload = {**json.loads(result.to_json()), "target": target, "manifests": manifests}
        Path(deployment_out.path).write_text(json.dumps(payload, indent=2))
        deployment_out.metadata.update({"model_uri": result.model_uri, "version": result.version})
    return result


def _apply(manifests: list[dict[str, Any]]) -> None:
    """Server-side apply each object with the in-cluster (or local) kubeconfig."""
    from kubernetes import dynamic

    client = dynamic.DynamicClient(api_client())
    for obj in manifests:
        resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        resource.server_side_apply(
            body=obj,
            name=obj["metadata"]["name"],
            namespace=obj["metadata"]["namespace"],
            field_manager="kubeforge",
            force_conflicts=True,
        )
