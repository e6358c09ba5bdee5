"""``helm install`` of the chart with the project image: the operator and MLflow as real pods.

The release runs on the real node in a namespace that enforces the ``restricted`` Pod Security
Standard: both operator replicas and MLflow become Ready, the operator reaches the apiserver with
its ServiceAccount (in-cluster) and MLflow through its Service's DNS name, one replica leads
(kopf peering) and acts for a kwok GPU pool, and killing its pod hands the lead over.
``helm uninstall`` then leaves the CRDs and the MLflow volume claim (kept on purpose: it holds
the tracking database and artifacts) and nothing else of the release.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeforge.testing.builders import gpu_pool, parse_metrics
from kubeforge.testing.controllers import Kwok
from kubeforge.testing.controlplane import repo_root
from kubeforge.testing.fixtures import Helm, Kubectl, wait_for
from kubeforge.testing.node import NODE_TAINT

pytestmark = pytest.mark.cluster

CHART = repo_root() / "charts" / "kubeforge"
PEERING_LIFETIME_S = 10  # the standby takes over about this long after the leader dies


@pytest.fixture
def mlflow_volume(kubectl: Kubectl, tmp_path: Path) -> Iterator[Callable[[str, str], None]]:
    """A hostPath PersistentVolume reserved for one claim (this cluster has no provisioner)."""
    made: list[str] = []

    def make(namespace: str, claim: str) -> None:
        folder = tmp_path / "mlflow-data"
        folder.mkdir()
        folder.chmod(0o777)  # the MLflow container runs as UID 10001; hostPath ignores fsGroup
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": namespace},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": claim},
                "hostPath": {"path": str(folder), "type": "Directory"},
            },
        }
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(volume))
        made.append(namespace)

    yield make
    for name in made:
        kubectl("delete", "pv", name, "--ignore-not-found", "--wait=false")


def _on_real_node() -> dict[str, Any]:
    return {
        "nodeSelector": {"kubeforge.io/node": "real"},
        "tolerations": [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
    }


def _values(image: str) -> dict[str, Any]:
    repository, tag = image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "peering": {"lifetime": PEERING_LIFETIME_S},
        # Plans a pool every 2 s rather than 15 s, so the test sees decisions soon.
        "operator": {
            "extraEnv": [{"name": "KUBEFORGE_RECONCILE_INTERVAL", "value": "2"}],
            **_on_real_node(),
        },
        "mlflow": {"workers": 1, **_on_real_node()},
    }


def _pods(core: Any, namespace: str, component: str) -> list[Any]:
    selector = f"app.kubernetes.io/component={component}"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if not p.metadata.deletion_timestamp]


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _decisions(pod: Any, pool: str) -> float:
    """How often the operator in ``pod`` planned ``pool`` (its /metrics, over the pod network)."""
    try:
        url = f"http://{pod.status.pod_ip}:8080/metrics"
        with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - a pod's address
            samples = parse_metrics(resp.read().decode())
    except OSError:
        return 0.0
    return samples.get(("kubeforge_pool_decision_seconds_count", (("pool", pool),)), 0.0)


def _peers(kubectl: Kubectl, peering: str) -> dict[str, int]:
    obj = json.loads(kubectl("get", "clusterkopfpeering", peering, "-o", "json").stdout)
    return {name: int(p["priority"]) for name, p in (obj.get("status") or {}).items()}


def _pool_nodes(core: Any, pool: str) -> list[str]:
    return [
        n.metadata.name for n in core.list_node(label_selector=f"kubeforge.io/pool={pool}").items
    ]


@pytest.mark.timeout(1200)
def test_helm_install_runs_operator_and_mlflow_pods_one_leader_handing_over_on_its_death(
    real_node: str,
    project_image: str,
    kwok: Kwok,
    helm: Helm,
    mlflow_volume: Callable[[str, str], None],
    kubectl: Kubectl,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(api_client)
    for mode in ("enforce", "warn"):
        kubectl("label", "namespace", namespace, f"pod-security.kubernetes.io/{mode}=restricted")
    release = f"kf{namespace.removeprefix('kf-test-')}"
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(_values(project_image)))
    rendered = helm("template", release, str(CHART), "-n", namespace, "-f", str(values)).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    (claim,) = [o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"]
    mlflow_volume(namespace, claim)

    install = helm(
        "install", release, str(CHART), "-n", namespace, "-f", str(values),
        "--wait", "--timeout=10m", timeout=900,
    )  # fmt: skip
    pool = f"{release}-pool"
    try:
        # Admitted under `restricted` (no warning either), Ready, real containers on the node.
        assert "PodSecurity" not in install.stderr, install.stderr
        operators, (mlflow,) = _pods(core, namespace, "operator"), _pods(core, namespace, "mlflow")
        assert len(operators) == 2
        for pod in [*operators, mlflow]:
            assert _ready(pod), pod.status
            assert pod.spec.node_name == real_node
            assert pod.status.container_statuses[0].container_id.startswith("containerd://")
            assert pod.status.container_statuses[0].image.endswith(project_image.split("/")[-1])
        uid = kubectl("exec", "-n", namespace, operators[0].metadata.name, "--", "id", "-u")
        assert uid.stdout.strip() == "10001"
        # The operator's pod reaches MLflow by the Service name the chart gives it.
        probe = (
            "import os, urllib.request; "
            "print(urllib.request.urlopen(os.environ['MLFLOW_TRACKING_URI'] + '/health').read())"
        )
        out = kubectl(
            "exec", "-n", namespace, operators[0].metadata.name, "--", "python", "-c", probe
        )
        assert out.stdout.strip() == "b'OK'"

        # Both replicas joined the release's peering under their pod names; one leads.
        names = {p.metadata.name for p in operators}
        wait_for(lambda: set(_peers(kubectl, release)) == names, timeout=120)
        print(kubectl("get", "deployments,pods", "-n", namespace).stdout)  # for the README
        print(kubectl("get", "clusterkopfpeering", release, "-o", "yaml").stdout)
        peers = _peers(kubectl, release)
        leader = max(peers, key=lambda name: peers[name])
        (standby,) = names - {leader}

        # The leader acts: it grows a kwok pool to its minimum; the standby plans nothing.
        body = gpu_pool(pool).kwok(gpuDelay="1s").scaling(minNodes=1, maxNodes=2).obj()
        kubectl("apply", "-f", "-", stdin=json.dumps(body))
        wait_for(lambda: len(_pool_nodes(core, pool)) == 1, timeout=120)
        by_name = {p.metadata.name: p for p in operators}
        wait_for(lambda: _decisions(by_name[leader], pool) >= 3, timeout=60)
        assert _ready(core.read_namespaced_pod(standby, namespace))  # standing by, alive
        assert _decisions(by_name[standby], pool) == 0
        standby_log = kubectl("logs", "-n", namespace, standby).stdout
        assert "Pausing operations in favour of" in standby_log

        # Kill the leader's pod: another replica takes over and acts on a change to the pool.
        kubectl("delete", "pod", "-n", namespace, leader, "--grace-period=0", "--force")
        patch = '{"spec":{"scaling":{"minNodes":2}}}'
        kubectl("patch", "gpunodepool", pool, "--type=merge", "-p", patch)
        wait_for(lambda: len(_pool_nodes(core, pool)) == 2, timeout=PEERING_LIFETIME_S + 120)
        # The Deployment's replacement joins; the dead leader's record expires and goes.
        wait_for(lambda: sum(map(_ready, _pods(core, namespace, "operator"))) == 2, timeout=300)
        live = {p.metadata.name: p for p in _pods(core, namespace, "operator")}
        assert leader not in live
        wait_for(
            lambda: set(_peers(kubectl, release)) == set(live), timeout=PEERING_LIFETIME_S + 60
        )
        peers = _peers(kubectl, release)
        new_leader = max(peers, key=lambda name: peers[name])
        planned = _decisions(live[new_leader], pool)
        wait_for(lambda: _decisions(live[new_leader], pool) >= planned + 2, timeout=60)

        kubectl("delete", "gpunodepool", pool, "--timeout=120s")
    finally:
        kubectl(
            "patch",
            "gpunodepool",
            pool,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kubectl("delete", "gpunodepool", pool, "--ignore-not-found", "--wait=false", check=False)
        kubectl(
            "delete", "nodes", "-l", f"kubeforge.io/pool={pool}", "--ignore-not-found", check=False
        )

    crds_before = set(kubectl("get", "crd", "-o", "name").stdout.split())
    helm("uninstall", release, "-n", namespace, "--wait", "--timeout=5m", timeout=600)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, timeout=120)

    # What is left of the release: its CRDs and, by its keep policy, MLflow's claim.
    label = f"app.kubernetes.io/instance={release}"
    kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,persistentvolumeclaims"
    left = kubectl("get", kinds, "-n", namespace, "-l", label, "-o", "name").stdout.split()
    assert left == [f"persistentvolumeclaim/{claim}"]
    cluster_kinds = "clusterroles,clusterrolebindings,clusterkopfpeerings"
    assert kubectl("get", cluster_kinds, "-l", label, "-o", "name").stdout.split() == []
    helm_secrets = kubectl("get", "secrets", "-n", namespace, "-l", "owner=helm", "-o", "name")
    assert helm_secrets.stdout.split() == []
    assert set(kubectl("get", "crd", "-o", "name").stdout.split()) == crds_before
    for crd in ("gpunodepools.kubeforge.io", "pipelines.kubeforge.io", "pipelineruns.kubeforge.io"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in crds_before
