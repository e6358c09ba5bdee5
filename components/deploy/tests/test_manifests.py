"""The serving objects deploy builds: probes on the server's routes, checked by the API server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kubeforge.components.deploy.manifests import (
    PORT,
    SHUTDOWN_DELAY_S,
    build_deployment,
    build_inference_service,
    render_manifests,
)

KSERVE = "github.com/kserve/kserve"
ISVC_CRD = "inferenceservices.serving.kserve.io"


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    pod = spec["template"]["spec"] if obj["kind"] == "Deployment" else spec["predictor"]
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("target", ["deployment", "kserve"])
def test_the_server_container_probes_readiness_and_liveness_and_drains(target: str) -> None:
    objects = render_manifests(target, "digits", "ml", "models:/digits@champion", "http://mlflow")
    container = _container(objects[0])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    args = container["args"]
    assert args[:2] == ["serve", "models:/digits@champion"]
    assert args[args.index("--name") + 1] == "digits"  # the route clients call
    assert args[args.index("--port") + 1] == str(PORT)
    assert float(args[args.index("--shutdown-delay") + 1]) == SHUTDOWN_DELAY_S
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow"} in container["env"]
    pod = objects[0]["spec"]["template"]["spec"] if target == "deployment" else objects[0]["spec"]
    grace = pod.get("terminationGracePeriodSeconds") or pod["predictor"].get(
        "terminationGracePeriodSeconds"
    )
    assert grace > SHUTDOWN_DELAY_S


def test_the_inference_service_runs_our_server_as_kserve_container() -> None:
    isvc = build_inference_service("digits", "ml", "models:/digits@champion", image="img:1")
    container = _container(isvc)
    assert container["name"] == "kserve-container" and container["image"] == "img:1"
    assert container["ports"] == [{"containerPort": PORT, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["port"] == PORT
    annotations = isvc["spec"]["predictor"]["annotations"]
    assert annotations["prometheus.io/port"] == str(PORT)


def _within(sent: Any, kept: Any) -> bool:
    """Whether everything in ``sent`` is in ``kept`` (which may hold defaults besides)."""
    if isinstance(sent, dict):
        return isinstance(kept, dict) and all(
            k in kept and _within(v, kept[k]) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(kept, list)
            and len(sent) == len(kept)
            and all(_within(a, b) for a, b in zip(sent, kept, strict=True))
        )
    return bool(sent == kept)


def _install_kserve_crd(kubectl: Any) -> None:
    from kubeforge.testing.modules import go_module_dir

    crds = go_module_dir(KSERVE) / "config" / "crd" / "full"
    path = crds / "serving.kserve.io_inferenceservices.yaml"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    deadline = time.monotonic() + 120
    while not _established(kubectl("get", "crd", ISVC_CRD, "-o", "json").stdout):
        assert time.monotonic() < deadline, f"{ISVC_CRD} never became Established"
        time.sleep(0.2)


def _established(crd_json: str) -> bool:
    conditions = json.loads(crd_json).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def test_inference_service_passes_server_side_dry_run_against_kserves_crd(
    kubectl: Any, namespace: str
) -> None:
    _install_kserve_crd(kubectl)
    isvc = build_inference_service(
        "digits", namespace, "models:/digits@champion", "http://mlflow:5000", image="img:1"
    )
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(isvc))
    applied = json.loads(out.stdout)
    assert applied["kind"] == "InferenceService"
    # The structural schema keeps every field we set (an unknown one would have been refused).
    sent, kept = _container(isvc), _container(applied)
    assert _within(sent, kept)
    assert applied["spec"]["predictor"]["volumes"] == isvc["spec"]["predictor"]["volumes"]
    # What KServe's schema refuses, the API server refuses, naming the field.
    typo = json.loads(json.dumps(isvc))
    typo["spec"]["predictor"]["minReplica"] = 1
    proc = kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(typo), check=False)
    assert proc.returncode != 0 and "minReplica" in proc.stderr
    wrong = json.loads(json.dumps(isvc))
    wrong["spec"]["predictor"]["minReplicas"] = "one"
    proc = kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(wrong), check=False)
    assert proc.returncode != 0 and "minReplicas" in proc.stderr


def test_deployment_probes_pass_server_side_dry_run(kubectl: Any, namespace: str) -> None:
    deployment = build_deployment(
        "digits", namespace, "img:1", "models:/digits@champion", "http://mlflow:5000"
    )
    out = kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(deployment)
    )
    container = _container(json.loads(out.stdout))
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v2/health/ready",
        "port": "http",
        "scheme": "HTTP",
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
