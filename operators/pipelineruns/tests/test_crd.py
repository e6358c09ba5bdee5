"""The Pipeline and PipelineRun CRDs: generated from the models, enforced by the real API server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.pipelineruns.api.crd import CRDS, render
from kubeforge.testing.builders import pipeline, pipelinerun
from kubeforge.testing.fixtures import Kubectl

CRD_DIR = Path(__file__).parents[3] / "manifests" / "crds"


@pytest.mark.parametrize("plural", sorted(CRDS))
def test_committed_crds_are_generated_from_the_models(plural: str) -> None:
    committed = (CRD_DIR / f"kubeforge.io_{plural}.yaml").read_text()
    assert committed == render(plural), "manifests/crds is stale: run `make crds`"


def _described(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        if name not in ("apiVersion", "kind", "metadata") and not prop.get("description"):
            missing.append(f"{path}.{name}")
        missing += _described(prop, f"{path}.{name}")
        missing += _described(prop.get("items", {}), f"{path}.{name}[]")
    return missing


@pytest.mark.parametrize("plural", sorted(CRDS))
def test_every_field_has_a_description(plural: str) -> None:
    schema = CRDS[plural]()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _described(schema) == []


def _apply(kubectl: Kubectl, namespace: str, kind: str, name: str, spec: dict[str, Any]) -> Any:
    builder = pipeline(name, namespace) if kind == "Pipeline" else pipelinerun(name, namespace)
    body = {**builder.obj(), "spec": spec}  # as given: some specs must be refused
    return kubectl("apply", "-f", "-", stdin=json.dumps(body), check=False)


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        ("Pipeline", {"source": {"name": "nope"}}, "spec.source.name"),
        ("Pipeline", {"source": {}}, "set exactly one of name, ir, configMap"),
        ("Pipeline", {"source": {"name": "main", "ir": "x"}}, "exactly one of name, ir"),
        ("Pipeline", {"source": {"configMap": {}}}, "spec.source.configMap.name"),
        ("Pipeline", {"source": {"ir": "x", "version": "0.1.0"}}, "version needs name"),
        ("PipelineRun", {"parameters": {}}, "set exactly one of pipelineRef or pipeline"),
        ("PipelineRun", {"pipelineRef": {"name": "p"}, "experiment": ""}, "spec.experiment"),
        (
            "PipelineRun",
            {"pipelineRef": {"name": "p"}, "ttlSecondsAfterFinished": -1},
            "spec.ttlSecondsAfterFinished",
        ),
        ("PipelineRun", {"pipelineRef": {"name": "p"}, "parameters": []}, "spec.parameters"),
    ],
    ids=[
        "unknown-pipeline",
        "no-source",
        "two-sources",
        "configmap-without-name",
        "version-without-name",
        "run-without-pipeline",
        "empty-experiment",
        "negative-ttl",
        "parameters-not-an-object",
    ],
)
def test_the_api_server_refuses_invalid_specs_naming_the_field(
    pipeline_crds: None, kubectl: Kubectl, namespace: str, kind: str, spec: Any, field: str
) -> None:
    proc = _apply(kubectl, namespace, kind, "bad", spec)
    assert proc.returncode != 0
    assert field in proc.stderr


@pytest.mark.cluster
def test_a_started_run_is_immutable_but_a_pending_one_can_be_fixed(
    pipeline_crds: None, kubectl: Kubectl, namespace: str, api_client: Any
) -> None:
    from kubernetes import client

    spec = {"pipelineRef": {"name": "p"}, "parameters": {"epochs": 3, "data_uri": "x"}}
    assert _apply(kubectl, namespace, "PipelineRun", "r", spec).returncode == 0
    fixed = {**spec, "parameters": {"epochs": 4, "data_uri": "x"}}
    assert _apply(kubectl, namespace, "PipelineRun", "r", fixed).returncode == 0  # not started
    stored = json.loads(kubectl("get", "pipelinerun", "r", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["parameters"] == {"epochs": 4, "data_uri": "x"}  # kept as given
    assert stored["spec"]["experiment"] == "kubeforge"  # defaulted
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        "kubeforge.io", "v1alpha1", namespace, "pipelineruns", "r",
        {"status": {"backend": "job", "phase": "Running"}},
    )  # fmt: skip
    proc = _apply(kubectl, namespace, "PipelineRun", "r", spec)
    assert proc.returncode != 0
    assert "the spec of a started PipelineRun cannot change" in proc.stderr
    # Labels and annotations stay editable; re-applying the same spec changes nothing.
    assert kubectl("label", "pipelinerun", "r", "-n", namespace, "team=a").returncode == 0
    assert _apply(kubectl, namespace, "PipelineRun", "r", fixed).returncode == 0


@pytest.mark.cluster
def test_kubectl_explain_and_printer_columns(
    pipeline_crds: None, kubectl: Kubectl, namespace: str
) -> None:
    explained = kubectl("explain", "pipelinerun.spec.ttlSecondsAfterFinished").stdout
    assert "Delete the PipelineRun" in explained
    assert _apply(kubectl, namespace, "Pipeline", "p", {"source": {"name": "main"}}).returncode == 0
    header = kubectl("get", "kfpl", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == ["NAME", "SOURCE", "PHASE", "DIGEST", "AGE"]
    assert (
        _apply(kubectl, namespace, "PipelineRun", "r", {"pipelineRef": {"name": "p"}}).returncode
        == 0
    )
    header = kubectl("get", "kfrun", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == [
        "NAME",
        "PIPELINE",
        "PHASE",
        "STARTED",
        "DURATION",
        "MLFLOW",
        "RUN",
        "AGE",
    ]
