"""Load the model a server serves: from the MLflow registry (an alias resolved once) or a file."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from kubeforge.components.deploy.server import LoadedModel
from kubeforge.core.errors import KubeforgeError

log = logging.getLogger("kubeforge.serving")

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


@dataclass(frozen=True)
class ResolvedUri:
    """A model URI pinned to one registry version (``models:/name/3``)."""

    asked: str
    pinned: str
    version: str


def resolve_model_uri(model_uri: str) -> ResolvedUri:
    """Pin ``models:/name@alias`` to the version the alias points to now (other URIs as given).

    A server resolves its alias once, at start: moving the alias later changes what the next
    server (a rollout) serves, never what a running one answers with.

    Raises:
        KubeforgeError: The registered model or its alias does not exist (names ``model_uri``).
    """
    match = _ALIAS_URI.match(model_uri)
    if match is None:
        pinned = _VERSION_URI.match(model_uri)
        return ResolvedUri(model_uri, model_uri, pinned.group("version") if pinned else "")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name, alias = match.group("name"), match.group("alias")
    try:
        found = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise KubeforgeError(
            f"registered model {name!r} has no alias {alias!r} in the MLflow registry",
            "model_uri",
        ) from exc
    version = str(found.version)
    return ResolvedUri(model_uri, f"models:/{name}/{version}", version)


def load_for_serving(model_uri: str, tracking_uri: str = "") -> LoadedModel:
    """The model behind ``model_uri`` (``models:/name@alias``, ``models:/name/3`` or a file).

    Raises:
        KubeforgeError: MLflow is unreachable, or the URI does not resolve to a classifier.
    """
    if Path(model_uri).is_file():
        from kubeforge.components.common.model import load

        model = load(model_uri)
        log.info("loaded %s from a file", model_uri)
        return LoadedModel(model, [str(c) for c in model.spec.classes], "")
    import mlflow.pytorch

    from kubeforge.core.tracking import connect

    connect(tracking_uri)
    resolved = resolve_model_uri(model_uri)
    if resolved.pinned != model_uri:
        log.info("resolved %s to version %s (%s)", model_uri, resolved.version, resolved.pinned)
    try:
        model = mlflow.pytorch.load_model(resolved.pinned)
    except Exception as exc:  # noqa: BLE001 - any failure means the URI does not resolve
        raise KubeforgeError(
            f"cannot load model {resolved.pinned!r}: {type(exc).__name__}", "model_uri"
        ) from exc
    spec = getattr(model, "spec", None)
    if spec is None or not getattr(spec, "classes", None):
        raise KubeforgeError(f"{model_uri!r} is not a Kubeforge classifier", "model_uri")
    log.info("loaded %s (version %s)", resolved.pinned, resolved.version or "-")
    return LoadedModel(model, [str(c) for c in spec.classes], resolved.version)
