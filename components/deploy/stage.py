"""The deploy stage as the component runs it: promote, then apply the serving objects."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from kubeforge.components.common.constraints import TARGETS
from kubeforge.components.common.model import load
from kubeforge.components.common.params import StageParams
from kubeforge.components.common.splits import load_split
from kubeforge.components.deploy.manifests import render_manifests
from kubeforge.components.deploy.promote import (
    DeployResult,
    default_model_name,
    register_and_promote,
)
from kubeforge.core.errors import KubeforgeError
from kubeforge.core.kube import api_client
from kubeforge.core.tracking import stage_run


@dataclass(frozen=True)
class DeployParams(StageParams):
    """The deploy component's parameters; defaults and documentation: ``component.py``."""

    component = "kubeforge.components.deploy.component:deploy"

    model_name: str
    alias: str
    min_accuracy: float
    gate_confidence: float
    target: str
    namespace: str


def run_deploy(
    params: DeployParams,
    model_path: str,
    test_path: str,
    deployment_out: Any,
    tracking_uri: str,
    parent_run_id: str,
) -> DeployResult:
    """Register, smoke-test, move the alias, apply cluster manifests; fill the KFP output."""
    import mlflow

    target = params.target
    if target not in TARGETS:
        raise KubeforgeError(f"target must be one of {TARGETS}, got {target!r}", "target")
    with stage_run("deploy", tracking_uri, parent_run_id):
        test = load_split(test_path)
        params = replace(params, model_name=params.model_name or default_model_name(test))
        mlflow.log_params(asdict(params))
        result = register_and_promote(
            load(model_path),
            test,
            params.model_name,
            params.alias,
            params.min_accuracy,
            params.gate_confidence,
        )
        gate = result.smoke_gate
        mlflow.log_metrics(
            {
                "smoke_accuracy": result.smoke_accuracy,
                "smoke_ci_low": float(gate["low"]),
                "smoke_ci_high": float(gate["high"]),
                "smoke_rows": float(gate["rows"]),
                "gate_confidence": params.gate_confidence,
            }
        )
        manifests = render_manifests(
            target, params.model_name, params.namespace, result.model_uri, mlflow.get_tracking_uri()
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
