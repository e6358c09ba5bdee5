from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.gpupool.api.crd import build_crd, render
from kubeforge.testing.builders import gpu_pool
from kubeforge.testing.fixtures import Kubectl, wait_for_crd

MANIFEST = Path(__file__).parents[3] / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"


def _every_property_described(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        if name not in ("apiVersion", "kind", "metadata") and not prop.get("description"):
            missing.append(here)
        missing += _every_property_described(prop, here)
        if "items" in prop:
            missing += _every_property_described(prop["items"], here + "[]")
    return missing


def test_committed_crd_is_generated_from_the_models() -> None:
    assert MANIFEST.read_text() == render(), "manifests/crds is stale: run `make crds`"


def test_every_field_has_a_description() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _every_property_described(schema) == []


@pytest.fixture(scope="module")
def gpupool_crd(kubectl: Kubectl, api_client: Any) -> str:
    kubectl("apply", "--server-side", "-f", str(MANIFEST))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    return "gpunodepools.kubeforge.io"


@pytest.mark.cluster
def test_valid_pool_is_stored_with_defaults(kubectl: Kubectl, gpupool_crd: str) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(gpu_pool("h100").scaling(maxNodes=4).obj()))
    stored = json.loads(kubectl("get", "gpunodepool", "h100", "-o", "json").stdout)
    assert stored["spec"]["gpu"]["resourceName"] == "nvidia.com/gpu"
    assert stored["spec"]["mode"] == "Enforce"
    assert stored["spec"]["scaling"]["minNodes"] == 0
    assert stored["spec"]["scaling"]["headroomNodes"] == 0
    table = kubectl("get", "gpool").stdout
    assert "PENDING JOBS" in table and "h100" in table
    kubectl("delete", "gpunodepool", "h100")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"scaling": {"minNodes": 5, "maxNodes": 2}}, "minNodes must not exceed maxNodes"),
        ({"scaling": {"headroomNodes": 3, "maxNodes": 2}}, "headroomNodes must not exceed"),
        ({"scaling": {"headroomNodes": -1}}, "spec.scaling.headroomNodes"),
        ({"gpu": {"perNode": 0}}, "spec.gpu.perNode"),
        ({"provider": {}}, "set exactly one provider"),
        ({"mode": "Maybe"}, "spec.mode"),
        ({"scaleDown": {"idleAfter": "soon"}}, "spec.scaleDown.idleAfter"),
    ],
    ids=[
        "min-above-max",
        "headroom-above-max",
        "negative-headroom",
        "zero-gpus",
        "no-provider",
        "bad-mode",
        "bad-duration",
    ],
)
@pytest.mark.cluster
def test_invalid_pools_are_refused_by_the_api_server(
    kubectl: Kubectl, gpupool_crd: str, spec: dict[str, Any], words: str
) -> None:
    proc = kubectl(
        "apply", "-f", "-", stdin=json.dumps(gpu_pool("bad").spec(**spec).obj()), check=False
    )
    assert proc.returncode != 0
    assert words in proc.stderr


@pytest.mark.cluster
def test_kubectl_explain_describes_the_fields(kubectl: Kubectl, gpupool_crd: str) -> None:
    out = kubectl("explain", "gpunodepool.spec.scaling.maxInFlight").stdout
    assert "requested but not yet GPU-ready" in out
