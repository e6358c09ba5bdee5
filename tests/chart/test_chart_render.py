"""The chart lints, renders for every scenario, and the API server accepts what it renders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.testing.fixtures import Kubectl

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CI_VALUES = sorted((ROOT / "charts" / "kubeforge" / "ci").glob("*-values.yaml"))
SCENARIOS = [pytest.param(None, id="default")] + [
    pytest.param(path, id=path.name.removesuffix("-values.yaml")) for path in CI_VALUES
]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("values", SCENARIOS)
def test_helm_lint_strict(chart: Any, values: Path | None) -> None:
    files = ["-f", str(values)] if values else []
    proc = chart.helm("lint", "--strict", str(chart.path), *files, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_ci_scenarios_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"external-mlflow-values.yaml", "mlflow-off-values.yaml"} <= names
    assert "monitoring-values.yaml" in names


@pytest.mark.parametrize("values", SCENARIOS)
def test_rendered_chart_passes_server_side_dry_run(
    chart: Any,
    kubectl: Kubectl,
    namespace: str,
    chart_crds: list[str],
    monitoring_crds: list[str],
    values: Path | None,
) -> None:
    objects = chart.render("kubeforge", namespace, values=values)
    proc = kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objects), check=False
    )
    assert proc.returncode == 0, proc.stderr
    accepted = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(objects), proc.stdout


def test_default_render_runs_the_operator_as_specified(chart: Any) -> None:
    objects = chart.render("kf", "ml")
    deployment = chart.find(objects, "Deployment", "-operator")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "kopf",
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8081/healthz",
        "-m",
        "kubeforge.operators.main",
    ]
    env = _env(container)
    assert env["KUBEFORGE_METRICS_PORT"] == "8080"
    assert env["KUBEFORGE_PEERING"] == "kf"
    assert env["KUBEFORGE_PEERING_LIFETIME"] == "60"
    assert env["KUBEFORGE_IMAGE"] == "ghcr.io/kubeforge/kubeforge:0.1.0"
    assert container["image"] == "ghcr.io/kubeforge/kubeforge:0.1.0"
    assert env["KUBEFORGE_KFP_HOST"] == ""
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    mlflow_service = chart.find(objects, "Service", "-mlflow")
    assert env["MLFLOW_TRACKING_URI"] == f"http://{mlflow_service['metadata']['name']}.ml.svc:5000"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    # The metrics Service selects the operator pods on the metrics port.
    service = chart.find(objects, "Service", "-operator-metrics")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert chart.find(objects, "ClusterKopfPeering")["metadata"]["name"] == "kf"
    # Prometheus-Operator kinds are off by default; the Grafana dashboard ConfigMap is on.
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    dashboard = chart.find(objects, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["kubeforge.json"].strip() == (
        (chart.path / "files" / "grafana-dashboard.json").read_text().strip()
    )


def test_default_mlflow_keeps_sqlite_and_artifacts_on_its_pvc(chart: Any) -> None:
    objects = chart.render("kf", "ml")
    deployment = chart.find(objects, "Deployment", "-mlflow")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:////data/mlflow.db"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "/data/artifacts"
    assert "kf-kubeforge-mlflow.ml.svc:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    pvc = chart.find(objects, "PersistentVolumeClaim", "-mlflow")
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]


def test_external_mlflow_scenario_reads_the_secret_and_needs_no_pvc(chart: Any) -> None:
    values = chart.path / "ci" / "external-mlflow-values.yaml"
    objects = chart.render("kf", "ml", values=values)
    (container,) = chart.find(objects, "Deployment", "-mlflow")["spec"]["template"]["spec"][
        "containers"
    ]
    env = _env(container)
    assert env["MLFLOW_BACKEND_STORE_URI"] == {
        "secretKeyRef": {"name": "mlflow-backend", "key": "backend-store-uri"}
    }
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "gs://kubeforge-artifacts/mlflow"
    assert env["GOOGLE_CLOUD_PROJECT"] == "kubeforge-example"
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    operator = chart.find(objects, "Deployment", "-operator")
    assert _env(operator["spec"]["template"]["spec"]["containers"][0])["KUBEFORGE_KFP_HOST"] == (
        "http://ml-pipeline.kubeflow.svc:8888"
    )


def test_mlflow_off_scenario_points_the_operator_at_the_external_secret(chart: Any) -> None:
    objects = chart.render("kf", "ml", values=chart.path / "ci" / "mlflow-off-values.yaml")
    assert not [o for o in objects if o["metadata"]["name"].endswith("-mlflow")]
    operator = chart.find(objects, "Deployment", "-operator")
    env = _env(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["MLFLOW_TRACKING_URI"] == {
        "secretKeyRef": {"name": "mlflow-tracking", "key": "tracking-uri"}
    }


def test_monitoring_scenario_ships_the_rules_file_and_scrapes_the_operator(chart: Any) -> None:
    objects = chart.render("kf", "ml", values=chart.path / "ci" / "monitoring-values.yaml")
    rule = chart.find(objects, "PrometheusRule")
    rules_file = yaml.safe_load((chart.path / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == rules_file
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    monitor = chart.find(objects, "ServiceMonitor")
    service = chart.find(objects, "Service", "-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    pod_monitor = chart.find(objects, "PodMonitor", "-model-servers")
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    # It selects the pods of the model servers that the deploy component builds, on their port.
    from kubeforge.components.deploy.manifests import build_deployment

    server = build_deployment("digits", "team-a", "img", "models:/digits@champion", "http://m")
    pod = server["spec"]["template"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= (
        pod["metadata"]["labels"].items()
    )
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        matched = {
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
        }[op]
        if not matched:
            return False
    return True


def test_monitoring_scenario_scrapes_the_throughput_of_pytorchjob_pods(chart: Any) -> None:
    from kubeflow.training.constants import constants as training

    from kubeforge.components.deploy.manifests import build_deployment
    from kubeforge.components.train.pytorchjob import build_pytorchjob

    objects = chart.render("kf", "ml", values=chart.path / "ci" / "monitoring-values.yaml")
    monitor = chart.find(objects, "PodMonitor", "-training")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    selector = monitor["spec"]["selector"]
    # The labels the Kubeflow training operator puts on a PyTorchJob's pods select them; the
    # model servers' pods are not selected.
    master = {training.JOB_NAME_LABEL: "teacher", training.REPLICA_TYPE_LABEL: "master"}
    assert _selects(selector, master)
    server = build_deployment("digits", "team-a", "img", "models:/digits@champion", "http://m")
    assert not _selects(selector, server["spec"]["template"]["metadata"]["labels"])
    # It scrapes the port every replica of the train component's PyTorchJob declares, where the
    # trainer listens (KUBEFORGE_METRICS_PORT, LOCAL_RANK unset in a pod).
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    job = build_pytorchjob("teacher", "ml", "img", ["train"], workers=1)
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        (container,) = spec["template"]["spec"]["containers"]
        (port,) = container["ports"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert port["name"] == endpoint["port"]
        assert port["containerPort"] == int(env["KUBEFORGE_METRICS_PORT"])
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        pytest.param("operator.replicas=two", "/operator/replicas", id="string-for-int"),
        pytest.param("mlflow.enabled=maybe", "/mlflow/enabled", id="string-for-bool"),
        pytest.param("mlflow.port=70000", "/mlflow/port", id="port-out-of-range"),
        pytest.param("peering.lifetime=2", "/peering/lifetime", id="peering-lifetime-too-short"),
        pytest.param(
            "monitoring.serviceMonitor.interval=soon",
            "/monitoring/serviceMonitor/interval",
            id="bad-duration",
        ),
        pytest.param(
            "mlflow.resources.limits.memory=lots",
            "/mlflow/resources/limits/memory",
            id="bad-quantity",
        ),
        pytest.param("operator.replica=3", "replica", id="unknown-key"),
    ],
)
def test_wrong_value_fails_install_naming_the_value(
    chart: Any, namespace: str, release: str, setting: str, named: str
) -> None:
    proc = chart.helm(
        "install", release, str(chart.path), "--namespace", namespace, "--set", setting, check=False
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert named in proc.stderr, proc.stderr
    assert release not in chart.helm("list", "--namespace", namespace, "--short").stdout


def test_kustomize_base_is_rendered_from_the_chart(kube_bin_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "render_base.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HELM": str(kube_bin_dir / "helm")},
    )
    assert proc.returncode == 0, proc.stderr


def test_kustomize_base_rbac_matches_the_chart_defaults(chart: Any) -> None:
    chart_role = chart.find(chart.render("kubeforge", "kubeforge-system"), "ClusterRole")
    base = list(yaml.safe_load_all((ROOT / "manifests" / "base" / "rbac.yaml").read_text()))
    (base_role,) = [o for o in base if o and o["kind"] == "ClusterRole"]
    assert base_role["rules"] == chart_role["rules"]
    (binding,) = [o for o in base if o and o["kind"] == "ClusterRoleBinding"]
    operator = list(yaml.safe_load_all((ROOT / "manifests" / "base" / "operator.yaml").read_text()))
    (account,) = [o for o in operator if o and o["kind"] == "ServiceAccount"]
    (deployment,) = [o for o in operator if o and o["kind"] == "Deployment"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": "kubeforge-system",
        }
    ]
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    )


def test_kubectl_apply_k_manifests_server_dry_run(kubectl: Kubectl, chart_crds: list[str]) -> None:
    # A server-side dry run cannot create the namespace its objects go into; the CRDs are real
    # (chart_crds) because a dry run cannot establish the CRDs its peering object needs either.
    kubectl("create", "namespace", "kubeforge-system", check=False)
    proc = kubectl("apply", "--dry-run=server", "-k", str(ROOT / "manifests"), check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "customresourcedefinition.apiextensions.k8s.io/gpunodepools.kubeforge.io",
        "namespace/kubeforge-system",
        "serviceaccount/kubeforge",
        "clusterrole.rbac.authorization.k8s.io/kubeforge-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeforge-operator",
        "deployment.apps/kubeforge-operator",
        "service/kubeforge-operator-metrics",
        "clusterkopfpeering.kopf.dev/kubeforge",
    ):
        assert expected in out, out


def test_chart_readme_permissions_table_is_the_cluster_role(chart: Any) -> None:
    role = chart.find(chart.render("kubeforge", "kubeforge-system"), "ClusterRole")
    rendered = [
        (
            ", ".join(group or "core" for group in rule["apiGroups"]),
            ", ".join(rule["resources"]),
            ", ".join(rule["verbs"]),
        )
        for rule in role["rules"]
    ]
    readme = (chart.path / "README.md").read_text()
    table = readme.split("| API group | resources | verbs |\n|---|---|---|\n", 1)[1]
    rows = []
    for line in table.splitlines():
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip() for cell in line.strip("|").split("|")))
    assert rows == rendered
