"""`helm install` into the test API server: RBAC, Pod Security and what NOTES.txt tells the user."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from kubeforge.testing.fixtures import Kubectl

pytestmark = pytest.mark.cluster

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# (resource as kubectl names it, subresource) -> the verbs the operator's ServiceAccount gets.
# Issue #6's list, plus what the controllers' code calls (events get, configmaps create/delete,
# pipelines/status, pipelineruns delete, machinedeployments patch); rbac.yaml grants exactly this.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("gpunodepools.kubeforge.io", ""): {"get", "list", "watch", "patch", "update"},
    ("gpunodepools.kubeforge.io", "status"): {"get", "patch", "update"},
    ("pipelines.kubeforge.io", ""): {"get", "list", "watch", "patch", "update"},
    ("pipelines.kubeforge.io", "status"): {"get", "patch", "update"},
    ("pipelineruns.kubeforge.io", ""): {"get", "list", "watch", "patch", "update", "delete"},
    ("pipelineruns.kubeforge.io", "status"): {"get", "patch", "update"},
    ("nodes", ""): {"get", "list", "watch", "create", "patch", "delete"},
    ("nodes", "status"): {"patch"},
    ("pods", ""): {"get", "list", "watch"},
    ("events", ""): {"get", "create", "patch"},
    ("configmaps", ""): {"get", "create", "delete"},
    ("events.events.k8s.io", ""): {"create", "patch"},
    ("pytorchjobs.kubeflow.org", ""): {"get", "list", "watch"},
    ("machinedeployments.cluster.x-k8s.io", ""): {"get", "list", "watch", "patch"},
    ("machinedeployments.cluster.x-k8s.io", "scale"): {"get", "patch", "update"},
    ("machines.cluster.x-k8s.io", ""): {"get", "list", "watch", "patch"},
    ("jobs.batch", ""): {"get", "list", "watch", "create", "delete"},
    ("clusterkopfpeerings.kopf.dev", ""): {"get", "list", "watch", "patch"},
    ("customresourcedefinitions.apiextensions.k8s.io", ""): {"get", "list", "watch"},
    ("namespaces", ""): {"get", "list", "watch"},
    # Nothing at all on these.
    ("secrets", ""): set(),
    ("pods", "exec"): set(),
    ("serviceaccounts", "token"): set(),
    ("deployments.apps", ""): set(),
    ("clusterroles.rbac.authorization.k8s.io", ""): set(),
    ("pytorchjobs.kubeflow.org", "status"): set(),
}


def _install(chart: Any, release: str, namespace: str, *extra: str) -> str:
    return str(
        chart.helm("install", release, str(chart.path), "--namespace", namespace, *extra).stdout
    )


def _manifest(chart: Any, release: str, namespace: str) -> list[dict[str, Any]]:
    out = chart.helm("get", "manifest", release, "--namespace", namespace).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _can_i(
    kubectl: Kubectl, user: str, verb: str, resource: str, subresource: str, *scope: str
) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}", *scope]
    if subresource:
        args.append(f"--subresource={subresource}")
    proc = kubectl(*args, check=False)
    answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert answer in {"yes", "no"}, f"kubectl {' '.join(args)}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def test_operator_service_account_gets_exactly_what_it_needs(
    chart: Any,
    kubectl: Kubectl,
    namespace: str,
    release: str,
    pytorchjob_crd: str,
    cluster_api_crds: list[str],
) -> None:
    # kubectl resolves "pytorchjobs.kubeflow.org" to its group only when the CRD is served.
    _install(chart, release, namespace)
    objects = _manifest(chart, release, namespace)
    account = chart.find(objects, "ServiceAccount")["metadata"]["name"]
    user = f"system:serviceaccount:{namespace}:{account}"

    def allowed(key: tuple[str, str]) -> set[str]:
        resource, subresource = key
        return {
            verb
            for verb in VERBS
            if _can_i(kubectl, user, verb, resource, subresource, "--all-namespaces")
        }

    with ThreadPoolExecutor(max_workers=4) as pool:
        granted = dict(zip(EXPECTED, pool.map(allowed, EXPECTED), strict=True))
    wrong = {
        f"{resource}{'/' + sub if sub else ''}": {"granted": sorted(got), "expected": sorted(want)}
        for ((resource, sub), want), got in zip(EXPECTED.items(), granted.values(), strict=True)
        if got != want
    }
    assert not wrong, json.dumps(wrong, indent=1)

    # The headline refusals, each as a user would type it.
    assert not _can_i(kubectl, user, "get", "secrets", "", "--all-namespaces")
    assert not _can_i(kubectl, user, "get", "secrets", "", "--namespace", namespace)
    assert not _can_i(kubectl, user, "delete", "pytorchjobs.kubeflow.org", "", "-A")
    assert not _can_i(kubectl, user, "*", "*", "", "-A")
    # The same check for a ServiceAccount with no binding says no to what the operator may do,
    # so the yes answers above come from the chart's binding.
    other = f"system:serviceaccount:{namespace}:default"
    assert not _can_i(kubectl, other, "list", "gpunodepools.kubeforge.io", "", "-A")


def test_install_creates_crds_peering_and_operator(
    chart: Any, kubectl: Kubectl, namespace: str, release: str
) -> None:
    notes = _install(chart, release, namespace)
    assert "WARNING" not in notes
    assert f'peering "{release}"' in notes
    crds = kubectl("get", "crd", "-o", "name").stdout
    for path in sorted((chart.path / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}" in crds
    kubectl("get", "clusterkopfpeering", release)
    deployments = kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout.split()
    assert f"deployment.apps/{release}-kubeforge-operator" in deployments
    assert f"deployment.apps/{release}-kubeforge-mlflow" in deployments
    kubectl("get", "pvc", f"{release}-kubeforge-mlflow", "-n", namespace)
    kubectl("get", "configmap", f"{release}-kubeforge-dashboard", "-n", namespace)


def _pod_from(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def test_restricted_namespace_accepts_the_operator_and_mlflow_pods(
    chart: Any, kubectl: Kubectl, namespace: str, release: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    _install(chart, release, namespace)
    objects = _manifest(chart, release, namespace)
    # No controller-manager runs in the test cluster: create the pods from the templates.
    for suffix in ("-operator", "-mlflow"):
        pod = _pod_from(chart.find(objects, "Deployment", suffix), f"pod{suffix}")
        proc = kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(pod), check=False)
        assert proc.returncode == 0, proc.stderr
        kubectl("get", "pod", f"pod{suffix}", "-n", namespace)

    # The namespace really enforces: the same pod without its container security context is
    # refused, naming what it lacks.
    insecure = _pod_from(chart.find(objects, "Deployment", "-operator"), "insecure")
    del insecure["spec"]["containers"][0]["securityContext"]
    proc = kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(insecure), check=False)
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr
    assert "allowPrivilegeEscalation" in proc.stderr


def test_missing_mlflow_secret_is_reported_by_notes(
    chart: Any, kubectl: Kubectl, namespace: str, release: str
) -> None:
    values = chart.path / "ci" / "external-mlflow-values.yaml"
    notes = _install(chart, release, namespace, "-f", str(values))
    assert (
        f"WARNING: Secret {namespace}/mlflow-backend (value mlflow.existingSecret) does not exist"
        in notes
    )
    assert f"kubectl -n {namespace} create secret generic mlflow-backend" in notes

    kubectl(
        "create", "secret", "generic", "mlflow-backend", "-n", namespace,
        "--from-literal=wrong-key=postgresql://db/mlflow",
    )  # fmt: skip
    upgrade = ["upgrade", release, str(chart.path), "--namespace", namespace, "-f", str(values)]
    notes = chart.helm(*upgrade).stdout
    assert 'has no key "backend-store-uri" (value mlflow.existingSecretKey)' in notes

    kubectl("delete", "secret", "mlflow-backend", "-n", namespace)
    kubectl(
        "create", "secret", "generic", "mlflow-backend", "-n", namespace,
        "--from-literal=backend-store-uri=postgresql://db/mlflow",
    )  # fmt: skip
    assert "WARNING" not in chart.helm(*upgrade).stdout


def test_missing_external_tracking_secret_is_reported_by_notes(
    chart: Any, namespace: str, release: str
) -> None:
    values = chart.path / "ci" / "mlflow-off-values.yaml"
    notes = _install(chart, release, namespace, "-f", str(values))
    assert (
        f"WARNING: Secret {namespace}/mlflow-tracking (value mlflow.external.existingSecret) "
        "does not exist: the operator will not start until it does" in notes
    )
