"""The shipped Prometheus rules, checked and unit-tested by Debian's real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
RULES = ROOT / "charts" / "kubeforge" / "files" / "prometheus-rules.yaml"
RULE_TESTS = Path(__file__).with_name("prometheus-rules.test.yaml")
# Alerts the issue asks for (#6): each must exist in the shipped file.
REQUIRED_ALERTS = {
    "KubeforgePoolCannotScale",
    "KubeforgeJobsWaitingForGPUs",
    "KubeforgeGPUsIdleWhileJobsWait",
    "KubeforgeOperatorDown",
    "KubeforgePoolReconcileErrors",
}


def _promtool(prometheus_bin: Path, *args: str, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [str(prometheus_bin / "promtool"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_shipped_rules(prometheus_bin: Path) -> None:
    proc = _promtool(prometheus_bin, "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in proc.stdout


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        ("kubeforge_pool_pending_gang_gpus > 0 and", "parse error"),
        ("rate(kubeforge_pool_pending_gang_gpus)", "parse error"),
    ],
    ids=["dangling-operator", "range-function-without-range"],
)
def test_promtool_refuses_a_broken_expression(
    prometheus_bin: Path, tmp_path: Path, broken: str, error: str
) -> None:
    doc = yaml.safe_load(RULES.read_text())
    alert = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert"))
    alert["expr"] = broken
    copy = tmp_path / "rules.yaml"
    copy.write_text(yaml.safe_dump(doc))
    proc = _promtool(prometheus_bin, "check", "rules", str(copy))
    assert proc.returncode != 0
    assert error in proc.stdout + proc.stderr


def test_rule_unit_tests_pass_with_the_shipped_for_durations(prometheus_bin: Path) -> None:
    # Simulated series: each alert fires for the pool the scenario breaks, at the time its
    # `for:` allows, with the summary/description a user reads, and not for the healthy pool.
    proc = _promtool(prometheus_bin, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rule_unit_tests_can_fail(prometheus_bin: Path, tmp_path: Path) -> None:
    # The same unit tests against rules whose "cannot scale" alert ignores in-flight nodes: the
    # pool that is still registering its nodes would be reported, and promtool must say so.
    doc = yaml.safe_load(RULES.read_text())
    rules_list = [r for g in doc["groups"] for r in g["rules"]]
    alert = next(r for r in rules_list if r.get("alert") == "KubeforgePoolCannotScale")
    alert["expr"] = alert["expr"].split("unless")[0]
    rules = tmp_path / "charts" / "kubeforge" / "files" / "prometheus-rules.yaml"
    rules.parent.mkdir(parents=True)
    rules.write_text(yaml.safe_dump(doc))
    tests = tmp_path / "tests" / "monitoring" / RULE_TESTS.name
    tests.parent.mkdir(parents=True)
    tests.write_text(RULE_TESTS.read_text())
    proc = _promtool(prometheus_bin, "test", "rules", tests.name, cwd=tests.parent)
    assert proc.returncode != 0
    assert "KubeforgePoolCannotScale" in proc.stdout + proc.stderr


def test_every_alert_is_realistic_and_names_what_it_is_about() -> None:
    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert alerts.keys() >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule.get("for", "0s") not in ("0s", "0m"), f"{name} fires on one evaluation"
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        if "kubeforge_pool_" in rule["expr"]:
            assert "$labels.pool" in annotations["summary"], name
