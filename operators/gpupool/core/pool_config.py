"""A GPUNodePool object read into what the operator uses. Pure.

The object's spec is parsed by the api models (:func:`~kubeforge.operators.schema.from_dict`),
which also apply every default; :func:`pool_config` only maps the typed spec to the planner's
:class:`~kubeforge.operators.gpupool.core.planner.PoolPolicy` and the provider's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeforge.core.durations import parse_duration
from kubeforge.operators.gpupool.api.models import GPUNodePoolSpec, KwokProvider
from kubeforge.operators.gpupool.core.planner import PoolPolicy, ScaleDownPolicy
from kubeforge.operators.schema import from_dict


@dataclass(frozen=True)
class PoolConfig:
    """A GPUNodePool's spec as the operator uses it (durations in seconds)."""

    name: str
    policy: PoolPolicy
    gpu_resource: str
    product: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    namespaces: tuple[str, ...]
    match_labels: dict[str, str]
    node_selector: dict[str, str]
    mode: str
    gpu_delay_s: float
    provision_timeout_s: float
    capi_namespace: str
    capi_deployment: str

    @property
    def provider_kind(self) -> str:
        """``clusterAPI`` or ``kwok``."""
        return "clusterAPI" if self.capi_deployment else "kwok"

    @property
    def enforce(self) -> bool:
        """The plan is applied (``Enforce``), not only reported (``Observe``)."""
        return self.mode == "Enforce"


def pool_config(obj: Mapping[str, Any]) -> PoolConfig:
    """The pool object (a dict from the API server) through its typed spec."""
    spec = from_dict(GPUNodePoolSpec, obj.get("spec"), "spec")
    scaling, down, template = spec.scaling, spec.scaleDown, spec.nodeTemplate
    selector, capi = spec.jobSelector, spec.provider.clusterAPI
    kwok = spec.provider.kwok or KwokProvider()  # unused without kwok; its defaults stand in
    return PoolConfig(
        name=obj["metadata"]["name"],
        policy=PoolPolicy(
            gpus_per_node=spec.gpu.perNode,
            min_nodes=scaling.minNodes,
            max_nodes=scaling.maxNodes,
            max_in_flight=scaling.maxInFlight,
            idle_after_s=parse_duration(down.idleAfter),
            min_node_age_s=parse_duration(down.minNodeAge),
            scale_down=ScaleDownPolicy(down.policy),
            headroom_nodes=scaling.headroomNodes,
        ),
        gpu_resource=spec.gpu.resourceName,
        product=spec.gpu.product,
        labels=dict(template.labels),
        taints=[{"key": t.key, "value": t.value, "effect": t.effect} for t in template.taints],
        namespaces=tuple(selector.namespaces),
        match_labels=dict(selector.matchLabels),
        node_selector=dict(selector.nodeSelector),
        mode=spec.mode,
        gpu_delay_s=parse_duration(kwok.gpuDelay),
        provision_timeout_s=parse_duration(scaling.provisionTimeout),
        capi_namespace=capi.namespace if capi else "",
        capi_deployment=capi.machineDeployment if capi else "",
    )
