"""A real node: real containers, a pod network, cluster DNS and ClusterIPs (no simulated part)."""

from __future__ import annotations

import ipaddress
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.fixtures import Kubectl, wait_for
from kubeforge.testing.node import BUSYBOX_IMAGE, POD_CIDR, on_real_node

pytestmark = pytest.mark.cluster


def _container(command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "main",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",  # imported into the node's containerd; no registry here
        "command": ["sh", "-c", command],
        **extra,
    }


def _apply(kubectl: Kubectl, namespace: str, *objects: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))


def test_pod_goes_ready_running_a_real_container(
    real_node: str, api_client: Any, kubectl: Kubectl, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello"},
        "spec": on_real_node(
            {
                "containers": [
                    _container(
                        'echo "started as $(hostname)"; touch /tmp/ready; exec sleep 3600',
                        readinessProbe={
                            "exec": {"command": ["cat", "/tmp/ready"]},
                            "periodSeconds": 1,
                        },
                    )
                ]
            }
        ),
    }
    _apply(kubectl, namespace, pod)
    core = client.CoreV1Api(api_client)

    def ready() -> bool:
        conditions = core.read_namespaced_pod("hello", namespace).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    wait_for(ready, timeout=60)
    status = core.read_namespaced_pod("hello", namespace).status
    assert status.container_statuses[0].container_id.startswith("containerd://")
    assert ipaddress.ip_address(status.pod_ip) in ipaddress.ip_network(POD_CIDR)
    info = core.read_node(real_node).status.node_info
    assert info.container_runtime_version.startswith("containerd://1.6")
    assert info.kubelet_version == "v1.35.4"
    # Through the apiserver to the kubelet (its client certificate) and into the container.
    assert "started as hello" in kubectl("logs", "-n", namespace, "hello").stdout
    assert kubectl("exec", "-n", namespace, "hello", "--", "hostname").stdout.strip() == "hello"


def test_indexed_job_pods_rendezvous_over_headless_service_by_dns_name(
    real_node: str, api_client: Any, kubectl: Kubectl, namespace: str
) -> None:
    # Rank 0 listens; rank 1 finds it by its DNS name (CoreDNS) and sends over the pod network.
    script = (
        'if [ "$JOB_COMPLETION_INDEX" = 0 ]; then '
        'msg="$(nc -l -p 5000)"; echo "rank 0 got: $msg"; [ "$msg" = "hello from rank 1" ]; '
        "else "
        'until echo "hello from rank 1" | nc rdv-0.rdv 5000; do sleep 0.3; done; '
        "fi"
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "rdv"},
        "spec": {"clusterIP": "None", "selector": {"job-name": "rdv"}},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "rdv"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "spec": on_real_node(
                    {
                        "subdomain": "rdv",
                        "restartPolicy": "Never",
                        "containers": [_container(script)],
                    }
                )
            },
        },
    }
    _apply(kubectl, namespace, service, job)
    batch = client.BatchV1Api(api_client)

    def finished() -> bool:
        status = batch.read_namespaced_job("rdv", namespace).status
        return bool((status.succeeded or 0) == 2 or (status.failed or 0) > 0)

    wait_for(finished, timeout=120)
    status = batch.read_namespaced_job("rdv", namespace).status
    assert status.succeeded == 2, status
    core = client.CoreV1Api(api_client)
    rank0 = core.list_namespaced_pod(
        namespace, label_selector="job-name=rdv,batch.kubernetes.io/job-completion-index=0"
    ).items[0]
    log = kubectl("logs", "-n", namespace, rank0.metadata.name).stdout
    assert "rank 0 got: hello from rank 1" in log


def test_deployment_answers_through_its_cluster_ip(
    real_node: str, api_client: Any, kubectl: Kubectl, namespace: str
) -> None:
    serve = (
        'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html && '
        "exec httpd -f -p 8080 -h /tmp/www"
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": on_real_node(
                    {
                        "containers": [
                            _container(
                                serve,
                                ports=[{"containerPort": 8080}],
                                readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                            )
                        ]
                    }
                ),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    _apply(kubectl, namespace, deployment, service)
    apps = client.AppsV1Api(api_client)
    wait_for(
        lambda: (apps.read_namespaced_deployment("web", namespace).status.ready_replicas or 0) == 2,
        timeout=90,
    )
    core = client.CoreV1Api(api_client)
    cluster_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    pods = {
        p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=web").items
    }

    answered: set[str] = set()
    deadline = time.monotonic() + 60
    # kube-proxy programs the ClusterIP a moment after the endpoints exist; poll for the body.
    while answered != pods and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=2) as resp:  # noqa: S310
                body = resp.read().decode().strip()
                if resp.status == 200 and body.startswith("hello from "):
                    answered.add(body.removeprefix("hello from "))
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    assert answered == pods  # both replicas, each reached through the one virtual IP
