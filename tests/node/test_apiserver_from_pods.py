"""Pods reach the apiserver as in-cluster clients: the ``kubernetes`` Service, its names and the CA.

A small Go client (``incluster/main.go``, built here with the Go that builds the control plane)
runs in a pod on the real node. It reads the pod's ServiceAccount token and CA, calls
``https://kubernetes.default.svc`` (cluster DNS) and ``https://$KUBERNETES_SERVICE_HOST:…``
(the ClusterIP the kubelet puts in every pod's environment), verifies the apiserver's certificate
for both, and asks the apiserver who it is (a SelfSubjectReview).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.controlplane import KUBERNETES_SERVICE_IP
from kubeforge.testing.fixtures import ImportImage, Kubectl, wait_for
from kubeforge.testing.node import NODE_IP, image_archive, on_real_node

pytestmark = pytest.mark.cluster

SOURCE = Path(__file__).parent / "incluster"
IMAGE = "localhost/kubeforge-incluster:test"


@pytest.fixture(scope="module")
def incluster_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go client, built static (no dependencies beyond Go's standard library)."""
    if shutil.which("go") is None:
        pytest.fail("Go is needed to build the in-cluster client (it builds the control plane too)")
    out = tmp_path_factory.mktemp("incluster") / "incluster"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."],
        cwd=SOURCE,
        env=env,
        check=True,
        timeout=600,
    )
    return out


def _run_pod(
    kubectl: Kubectl, api_client: Any, namespace: str, name: str, args: list[str]
) -> tuple[str, str]:
    """Run the client in a pod under the restricted profile; its phase and its log."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": on_real_node(
            {
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "main",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "args": args,
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            }
        ),
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))
    core = client.CoreV1Api(api_client)

    def finished() -> bool:
        return core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed")

    wait_for(finished, timeout=90)
    phase = core.read_namespaced_pod(name, namespace).status.phase
    return phase, kubectl("logs", "-n", namespace, name).stdout


def test_pod_reaches_the_apiserver_by_service_name_and_cluster_ip_verifying_its_ca(
    real_node: str,
    import_image: ImportImage,
    incluster_client: Path,
    api_client: Any,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    # The apiserver advertises the node's address: the `kubernetes` Service's endpoint is there.
    endpoints = client.CoreV1Api(api_client).read_namespaced_endpoints("kubernetes", "default")
    assert [a.ip for s in endpoints.subsets for a in s.addresses] == [NODE_IP]
    import_image(image_archive(IMAGE, {"incluster": (incluster_client, 0o755)}, ["/incluster"]))

    phase, log = _run_pod(
        kubectl, api_client, namespace, "incluster", ["https://kubernetes.default.svc", "env"]
    )

    assert phase == "Succeeded", log
    user = f"system:serviceaccount:{namespace}:default"
    assert log.splitlines() == [
        f"url=https://kubernetes.default.svc version=v1.35.4 user={user}",
        f"url=https://{KUBERNETES_SERVICE_IP}:443 version=v1.35.4 user={user}",
    ]


def test_pod_refuses_the_apiserver_under_a_name_its_certificate_does_not_hold(
    real_node: str,
    import_image: ImportImage,
    incluster_client: Path,
    api_client: Any,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    # A headless Service of our own whose endpoint is the apiserver: the same server, reached by
    # a name outside its certificate, is refused (the client really verifies the certificate).
    core = client.CoreV1Api(api_client)
    port = core.read_namespaced_endpoints("kubernetes", "default").subsets[0].ports[0].port
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "elsewhere"},
        "spec": {"clusterIP": "None", "ports": [{"name": "https", "port": port}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "elsewhere", "labels": {"kubernetes.io/service-name": "elsewhere"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE_IP]}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all([service, endpoints]))
    import_image(image_archive(IMAGE, {"incluster": (incluster_client, 0o755)}, ["/incluster"]))

    url = f"https://elsewhere.{namespace}.svc:{port}"
    phase, log = _run_pod(kubectl, api_client, namespace, "wrong-name", [url])

    assert phase == "Failed", log
    assert "x509: certificate is valid for" in log, log
    assert f"not elsewhere.{namespace}.svc" in log, log
