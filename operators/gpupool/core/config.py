"""Read a GPUNodePool object (a dict from the API server) into what the operator uses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubeforge.operators.gpupool.core.planner import PoolPolicy

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0 seconds (the CRD's pattern already refused anything else)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


@dataclass(frozen=True)
class PoolConfig:
    """A GPUNodePool's spec, defaulted and typed."""

    name: str
    policy: PoolPolicy
    gpu_resource: str
    product: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    namespaces: tuple[str, ...] = ()
    match_labels: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    mode: str = "Enforce"
    gpu_delay_s: float = 0.0
    provision_timeout_s: float = 900.0
    capi_namespace: str = ""
    capi_deployment: str = ""

    @property
    def provider_kind(self) -> str:
        """``clusterAPI`` or ``kwok``."""
        return "clusterAPI" if self.capi_deployment else "kwok"


def pool_config(obj: dict[str, Any]) -> PoolConfig:
    """Defaults match the CRD's, so an object written before a default changed reads the same."""
    spec = obj.get("spec", {})
    gpu = spec.get("gpu", {})
    scaling = spec.get("scaling", {})
    down = spec.get("scaleDown", {})
    template = spec.get("nodeTemplate", {})
    selector = spec.get("jobSelector", {})
    kwok = (spec.get("provider") or {}).get("kwok") or {}
    capi = (spec.get("provider") or {}).get("clusterAPI") or {}
    return PoolConfig(
        name=obj["metadata"]["name"],
        policy=PoolPolicy(
            gpus_per_node=int(gpu.get("perNode", 8)),
            min_nodes=int(scaling.get("minNodes", 0)),
            max_nodes=int(scaling.get("maxNodes", 10)),
            max_in_flight=int(scaling.get("maxInFlight", 10)),
            idle_after_s=parse_duration(down.get("idleAfter", "10m")),
            min_node_age_s=parse_duration(down.get("minNodeAge", "10m")),
        ),
        gpu_resource=gpu.get("resourceName", "nvidia.com/gpu"),
        product=gpu.get("product", ""),
        labels=dict(template.get("labels", {})),
        taints=[dict(t) for t in template.get("taints", [])],
        namespaces=tuple(selector.get("namespaces", [])),
        match_labels=dict(selector.get("matchLabels", {})),
        node_selector=dict(selector.get("nodeSelector", {})),
        mode=spec.get("mode", "Enforce"),
        gpu_delay_s=parse_duration(kwok.get("gpuDelay", "0s")),
        provision_timeout_s=parse_duration(scaling.get("provisionTimeout", "15m")),
        capi_namespace=capi.get("namespace", "default") if capi else "",
        capi_deployment=capi.get("machineDeployment", "") if capi else "",
    )
