"""Promotion: register in MLflow, smoke-test the registered version over HTTP, move the alias."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kubeforge.components.common.gates import GateResult, accuracy_gate
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
    smoke_gate: dict[str, Any]

    def to_json(self) -> str:
        """As indented JSON."""
        return json.dumps(asdict(self), indent=2)


SIGNATURE_TAG = "kubeforge.signature"


def default_model_name(split: LoadedSplit) -> str:
    """A registry name from the data: ``kubeforge-<file or folder name>`` (``kubeforge-digits``).

    Without a recorded source: ``kubeforge-<label column>-<first feature>`` so two datasets
    of different shape do not share a name by default.
    """
    stem = split.source.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".gz", ".csv", ".parquet", ".jsonl", ".ndjson"):
        stem = stem.removesuffix(suffix)
    if not stem:
        stem = f"{split.label_column}-{split.feature_columns[0] if split.feature_columns else ''}"
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "model"
    return f"kubeforge-{slug}"[:63].rstrip("-")


def signature(model: Classifier) -> dict[str, list[str]]:
    """What a caller must send and gets back: the feature columns (in order) and the classes."""
    return {
        "feature_columns": list(model.spec.feature_columns),
        "classes": list(model.spec.classes),
    }


def _short(names: list[str], shown: int = 4) -> str:
    more = f", … ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_alias_signature(client: Any, model: Classifier, model_name: str, alias: str) -> None:
    """Refuse to move ``alias`` of ``model_name`` away from a model with another signature.

    Raises:
        KubeforgeError: The alias points to a version whose feature columns or classes differ;
            it names ``model_name``.
    """
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return  # no such model or alias yet: nothing to compare with
    recorded = (current.tags or {}).get(SIGNATURE_TAG)
    if not recorded:
        return
    theirs = json.loads(recorded)
    ours = signature(model)
    if theirs == ours:
        return
    what = (
        f"{len(theirs['feature_columns'])} features ({_short(theirs['feature_columns'])}) "
        f"and classes {_short(theirs['classes'])}"
    )
    mine = (
        f"{len(ours['feature_columns'])} features ({_short(ours['feature_columns'])}) "
        f"and classes {_short(ours['classes'])}"
    )
    raise KubeforgeError(
        f"registered model {model_name!r} has alias {alias!r} on version {current.version}, "
        f"which takes {what}; this model takes {mine}: refusing to move the alias to a model "
        "with another input signature; give this data its own model_name",
        "model_name",
    )


def smoke_test(
    model: Classifier,
    test: LoadedSplit,
    name: str,
    min_accuracy: float,
    confidence: float = 0.95,
    rows: int = 1024,
) -> GateResult:
    """Serve ``model`` on a free loopback port, send real requests, gate on the answers.

    The gate fails only when the Wilson interval of the smoke accuracy at ``confidence`` lies
    wholly below ``min_accuracy``.
    """
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
    gate = accuracy_gate(predicted == y, min_accuracy, confidence)
    if not gate.passed:
        raise KubeforgeError(
            f"smoke test failed, alias not moved: {gate.describe()}; the whole interval is "
            "below min_accuracy",
            "min_accuracy",
        )
    return gate


def register_and_promote(
    model: Classifier,
    test: LoadedSplit,
    model_name: str,
    alias: str,
    min_accuracy: float,
    confidence: float = 0.95,
) -> DeployResult:
    """Log + register the model in the active MLflow run; move ``alias`` after a smoke test.

    Nothing is registered when the alias points to a model of another input signature. The
    alias is only moved when the model loaded back from the registry passes the smoke test;
    a failing version stays registered, tagged ``kubeforge.smoke_test=failed``.
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("register_and_promote needs an active MLflow run")
    client = MlflowClient()
    check_alias_signature(client, model, model_name, alias)
    mlflow.pytorch.log_model(
        model,
        name="model",
        # Pickle keeps the Classifier (with its spec and classes); pt2 would keep only a graph.
        serialization_format="pickle",
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name)
    client.set_model_version_tag(
        model_name, version.version, SIGNATURE_TAG, json.dumps(signature(model))
    )
    uri = f"models:/{model_name}/{version.version}"
    loaded: Classifier = mlflow.pytorch.load_model(uri)
    try:
        gate = smoke_test(loaded, test, model_name, min_accuracy, confidence)
    except KubeforgeError:
        client.set_model_version_tag(model_name, version.version, "kubeforge.smoke_test", "failed")
        raise
    client.set_model_version_tag(model_name, version.version, "kubeforge.smoke_test", "passed")
    client.set_registered_model_alias(model_name, alias, version.version)
    return DeployResult(
        model_name,
        str(version.version),
        alias,
        True,
        gate.value,
        f"models:/{model_name}@{alias}",
        gate.as_dict(),
    )
