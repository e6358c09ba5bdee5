"""The shipped rules and dashboard in a real Prometheus, without the Kubernetes control plane.

The end-to-end module (``test_prometheus_e2e.py``) checks the same files against live metrics;
this one needs only Debian's Prometheus, so ``pytest -m "not cluster"`` still checks them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubeforge.testing.fixtures import StartPrometheus, wait_for
from kubeforge.testing.prometheus import (
    PrometheusError,
    dashboard_queries,
    substitute_variables,
)

ROOT = Path(__file__).parents[2]
RULES = ROOT / "charts" / "kubeforge" / "files" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "charts" / "kubeforge" / "files" / "grafana-dashboard.json"


def test_shipped_rules_load_and_evaluate_in_prometheus(start_prometheus: StartPrometheus) -> None:
    prom = start_prometheus({}, [RULES])

    def rules() -> list[dict[str, object]]:
        return [r for g in prom.api("rules")["groups"] for r in g["rules"]]

    wait_for(lambda: all(r["health"] != "unknown" for r in rules()), timeout=30)
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    assert {r["name"] for r in rules()} == {
        rule.get("alert") or rule["record"] for group in shipped for rule in group["rules"]
    }
    assert {r["name"]: r.get("lastError") for r in rules() if r["health"] != "ok"} == {}
    # No operator target at all: "operator down" is pending (its 5m `for:` has not passed).
    wait_for(lambda: bool(prom.alerts()), timeout=30)
    assert {(a["labels"]["alertname"], a["state"]) for a in prom.alerts()} == {
        ("KubeforgeOperatorDown", "pending")
    }


def test_every_dashboard_query_parses(start_prometheus: StartPrometheus) -> None:
    prom = start_prometheus({})
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert queries
    variables = {v["name"]: ".*" for v in dashboard["templating"]["list"]}
    for expr in queries:
        prom.query(substitute_variables(expr, variables))
    # The same check refuses a broken query and a variable the dashboard does not define.
    with pytest.raises(PrometheusError, match="parse error"):
        prom.query(substitute_variables(queries[0] + " +", variables))
    with pytest.raises(PrometheusError, match="unknown template variable"):
        substitute_variables('kubeforge_pool_nodes{pool=~"$cluster"}', variables)
