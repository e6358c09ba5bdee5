"""Helpers for the chart tests: the real helm binary against the test API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.testing.controlplane import repo_root
from kubeforge.testing.fixtures import Helm, Kubectl, go_module_dir, wait_for_crd

ROOT = repo_root()
CHART = ROOT / "charts" / "kubeforge"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


class Chart:
    """The chart, its paths and the helm commands the tests run on it."""

    root = ROOT
    path = CHART
    ci_values = CI_VALUES

    def __init__(self, helm: Helm) -> None:
        self.helm = helm

    def render(
        self, release: str, namespace: str, *extra: str, values: Path | None = None
    ) -> list[dict[str, Any]]:
        """``helm template`` of the chart, parsed into objects."""
        files = ["-f", str(values)] if values else []
        out = self.helm(
            "template", release, str(CHART), "--namespace", namespace, *files, *extra
        ).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    @staticmethod
    def find(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
        """The one object of ``kind`` whose name ends with ``name_suffix``."""
        found = [
            o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
        ]
        assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def chart(helm: Helm) -> Chart:
    """The chart and helm, for rendering and finding objects."""
    return Chart(helm)


@pytest.fixture(scope="session")
def chart_crds(kubectl: Kubectl, api_client: Any) -> list[str]:
    """The chart's CRDs, installed (as helm install would) and established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    names = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        wait_for_crd(api_client, name)
        names.append(name)
    return names


@pytest.fixture(scope="session")
def monitoring_crds(kubectl: Kubectl, api_client: Any) -> list[str]:
    """The Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs (pinned)."""
    folder = go_module_dir(PROMETHEUS_OPERATOR) / "example" / "prometheus-operator-crd"
    names = []
    for plural in MONITORING_CRDS:
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(folder / f"monitoring.coreos.com_{plural}.yaml"),
        )
        name = f"{plural}.monitoring.coreos.com"
        wait_for_crd(api_client, name)
        names.append(name)
    return names


@pytest.fixture
def release(namespace: str, helm: Helm) -> Iterator[str]:
    """A release name unique to the test; uninstalled afterwards (cluster-scoped objects too)."""
    name = f"kf{namespace.removeprefix('kf-test-')}"
    yield name
    helm("uninstall", name, "--namespace", namespace, check=False)
