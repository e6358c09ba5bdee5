from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeforge.components.common.model import Classifier, ModelSpec
from kubeforge.components.common.splits import LoadedSplit, load_split
from kubeforge.components.deploy.manifests import (
    build_deployment,
    build_inference_service,
    build_service,
)
from kubeforge.components.deploy.promote import default_model_name, register_and_promote
from kubeforge.components.deploy.server import ModelServer
from kubeforge.core.errors import KubeforgeError


@pytest.fixture
def model(digits_teacher: Classifier) -> Classifier:
    return digits_teacher


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_server_predicts_reports_health_and_latency_metrics(
    model: Classifier, digits_splits: Path
) -> None:
    test = load_split(digits_splits / "test.parquet")
    server = ModelServer(model, list(model.spec.classes), "digits").start()
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        code, body = _post(server.predict_url, {"instances": test.features()[:20].tolist()})
        assert code == 200
        truth = [test.classes[i] for i in test.label_indices()[:20]]
        assert np.mean([p == t for p, t in zip(body["predictions"], truth, strict=True)]) > 0.7
        code, body = _post(server.predict_url, {"instances": [[1.0, 2.0]]})
        assert code == 400 and "64 numbers" in body["error"]
        code, _ = _post(server.predict_url, {"rows": []})
        assert code == 400
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
    finally:
        server.stop()
    assert 'kubeforge_serving_request_duration_seconds_count{model="digits"} 3.0' in metrics
    assert 'kubeforge_serving_requests_total{code="200",model="digits"} 1.0' in metrics
    assert 'kubeforge_serving_requests_total{code="400",model="digits"} 2.0' in metrics
    assert 'kubeforge_serving_predictions_total{model="digits"} 20.0' in metrics


def test_alias_moves_only_after_a_passing_smoke_test(
    model: Classifier, digits_splits: Path, mlflow_home: str
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    test = load_split(digits_splits / "test.parquet")
    with mlflow.start_run():
        good = register_and_promote(model, test, "digits", "champion", min_accuracy=0.5)
    client = MlflowClient(mlflow_home)
    assert str(client.get_model_version_by_alias("digits", "champion").version) == good.version

    broken = Classifier(
        ModelSpec(64, (4,), model.spec.classes, model.spec.feature_columns),
        np.zeros(64),
        np.ones(64),
    )
    with mlflow.start_run(), pytest.raises(KubeforgeError) as excinfo:
        register_and_promote(broken, test, "digits", "champion", min_accuracy=0.5)
    assert excinfo.value.parameter == "min_accuracy"
    assert str(client.get_model_version_by_alias("digits", "champion").version) == good.version
    versions = client.search_model_versions("name='digits'")
    failed = [v for v in versions if v.tags.get("kubeforge.smoke_test") == "failed"]
    assert [str(v.version) for v in failed] == ["2"]


def test_alias_never_moves_to_a_model_of_another_input_signature(
    model: Classifier, digits_splits: Path, mlflow_home: str
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    test = load_split(digits_splits / "test.parquet")
    with mlflow.start_run():
        first = register_and_promote(model, test, "shared", "champion", min_accuracy=0.5)
    other = Classifier(
        ModelSpec(4, (8,), ("a", "b"), ("f0", "f1", "f2", "f3")), np.zeros(4), np.ones(4)
    )
    with mlflow.start_run(), pytest.raises(KubeforgeError) as excinfo:
        register_and_promote(other, test, "shared", "champion", min_accuracy=0.0)
    assert excinfo.value.parameter == "model_name"
    assert "64 features" in str(excinfo.value) and "4 features" in str(excinfo.value)
    client = MlflowClient(mlflow_home)
    assert str(client.get_model_version_by_alias("shared", "champion").version) == first.version
    assert len(client.search_model_versions("name='shared'")) == 1  # nothing registered


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("/data/digits.csv", "kubeforge-digits"),
        ("s3://bucket/Customer Churn.parquet", "kubeforge-customer-churn"),
        ("pets/", "kubeforge-pets"),
        ("", "kubeforge-churned-age"),
    ],
    ids=["csv", "s3-parquet", "image-folder", "no-source"],
)
def test_default_model_name_comes_from_the_data(source: str, name: str) -> None:
    import pandas as pd

    split = LoadedSplit(pd.DataFrame(), "churned", ["age", "tenure"], ["no", "yes"], source)
    assert default_model_name(split) == name


def test_inference_service_manifest() -> None:
    isvc = build_inference_service("digits", "ml", "models:/digits@champion")
    assert isvc["kind"] == "InferenceService"
    container = isvc["spec"]["predictor"]["containers"][0]
    assert container["args"][:2] == ["serve", "models:/digits@champion"]


@pytest.mark.cluster
def test_deployment_and_service_pass_server_side_dry_run(kubectl: Any, namespace: str) -> None:
    objects = [
        build_deployment(
            "digits",
            namespace,
            "example/kubeforge:1",
            "models:/digits@champion",
            "http://mlflow:5000",
        ),
        build_service("digits", namespace),
    ]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=manifest).stdout
    applied = json.loads(out)["items"]
    assert [o["kind"] for o in applied] == ["Deployment", "Service"]
    pod = applied[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    bad = dict(objects[0], spec={**objects[0]["spec"], "replicas": "two"})
    proc = kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(bad), check=False)
    assert proc.returncode != 0 and "replicas" in proc.stderr
