"""Read a pipeline source (a Kubeforge pipeline by name, inline IR, or a ConfigMap) as IR.

Client code (it reads ConfigMaps); may import the controller's ``api/`` models.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from kubeforge.core.errors import KubeforgeError
from kubeforge.operators.pipelineruns.api.models import ConfigMapSource, PipelineSource
from kubeforge.pipelines.ir import PipelineIR, load_ir
from kubeforge.pipelines.registry import compiled_text


def operator_version() -> str:
    """The Kubeforge version this operator runs."""
    return importlib.metadata.version("kubeforge")


def resolve_source(
    api_client: Any, namespace: str, source: PipelineSource, field: str
) -> PipelineIR:
    """The compiled pipeline a source names.

    Args:
        api_client: Kubernetes client (ConfigMaps are read in ``namespace``).
        namespace: The namespace of the Pipeline or PipelineRun.
        source: ``spec.source`` of a Pipeline or ``spec.pipeline`` of a PipelineRun.
        field: Where the source sits, named in errors (``spec.source``).

    Raises:
        KubeforgeError: A version this operator does not have, a missing ConfigMap or key, or
            text that is not a compiled pipeline; ``parameter`` names the field.
    """
    if source.name:
        wanted = source.version
        if wanted and wanted != operator_version():
            raise KubeforgeError(
                f"{field}.version: pipeline {source.name!r} version {wanted} is not available;"
                f" this operator runs Kubeforge {operator_version()}",
                f"{field}.version",
            )
        return load_ir(compiled_text(source.name), f"{field}.name")
    if source.ir:
        return load_ir(source.ir, f"{field}.ir")
    ref = source.configMap or ConfigMapSource()
    return load_ir(_configmap_text(api_client, namespace, ref, field), f"{field}.configMap")


def _configmap_text(api_client: Any, namespace: str, ref: ConfigMapSource, field: str) -> str:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name, key = ref.name, ref.key
    try:
        cm = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise KubeforgeError(
                f"{field}.configMap.name: ConfigMap {namespace}/{name} does not exist",
                f"{field}.configMap.name",
            ) from exc
        raise
    text = (cm.data or {}).get(key)
    if not text:
        raise KubeforgeError(
            f"{field}.configMap.key: ConfigMap {namespace}/{name} has no key {key!r}",
            f"{field}.configMap.key",
        )
    return str(text)
