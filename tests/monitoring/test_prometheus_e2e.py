"""End to end: the real Prometheus scrapes the operator and a model server, evaluates our rules.

One scenario for the module: the operator process (the chart's command, ``kopf run -m
kubeforge.operators.main``) runs against the test API server with two kwok GPU pools of 8-GPU
nodes: ``fit`` gets a 16-GPU job and scales to 2 nodes; ``full`` (``maxNodes: 1``) gets an 8-GPU
job, which it scales for, and a 16-GPU job that can never fit. The real training operator makes
the jobs' pods, but the pools taint their nodes and the jobs do not tolerate the taint (the
misconfiguration the idle-GPU alert is for): the real scheduler binds no pod, the ready GPUs stay
idle. A local ``ModelServer`` answers predict requests,
and a training worker (``python -m kubeforge.components.train.trainer``, the PyTorchJob pods'
entry point) trains on the digits until Prometheus has measured its throughput.
Debian's Prometheus scrapes both every second and loads a copy of the shipped rules with ``for:``
removed (the shipped durations are tested on simulated time by ``prometheus-rules.test.yaml``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kubeforge.components.common.model import Classifier, ModelSpec
from kubeforge.components.deploy.server import ModelServer
from kubeforge.components.train.trainer import TrainConfig, TrainParams
from kubeforge.testing.builders import gpu_pool, job_pods, pytorchjob
from kubeforge.testing.controllers import Kwok, TrainingOperator
from kubeforge.testing.controlplane import free_port, stop_process_groups
from kubeforge.testing.fixtures import Kubectl, wait_for, wait_for_crd
from kubeforge.testing.prometheus import (
    PrometheusServer,
    dashboard_queries,
    substitute_variables,
)

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).parents[2]
POOL_CRD = ROOT / "manifests" / "crds" / "kubeforge.io_gpunodepools.yaml"
RULES = ROOT / "charts" / "kubeforge" / "files" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "charts" / "kubeforge" / "files" / "grafana-dashboard.json"
OPERATOR_JOB = "kubeforge-operator"
SERVING_JOB = "kubeforge-model-servers"
TRAINING_JOB = "kubeforge-training"
MODEL = "tiny"
UNTOLERATED = ("kubeforge.io/reserved", "ops")  # the pools' taint, which no job tolerates
GOOD_REQUESTS = 7
BAD_REQUESTS = 2
# Dashboard metrics no code path of this scenario produces, and where each is defined.
NOT_PRODUCED_HERE = {
    "kubeforge_pool_reconcile_errors_total": ROOT / "operators/gpupool/handlers/metrics.py",
    "kubeforge_pool_job_wait_seconds_bucket": ROOT / "operators/gpupool/handlers/metrics.py",
}


@dataclass
class Scenario:
    """What the module's tests look at."""

    prometheus: PrometheusServer
    operator: subprocess.Popen[bytes]
    operator_log: Path
    fit: str
    full: str
    namespace: str
    api_client: Any

    def active_alerts(self, name: str) -> dict[str, str]:
        """Pool (or "" for alerts without one) -> state, of the active alerts called ``name``."""
        return {
            a["labels"].get("pool", ""): a["state"]
            for a in self.prometheus.alerts()
            if a["labels"]["alertname"] == name
        }

    def operator_log_tail(self) -> str:
        """The operator's last log lines, for failure messages."""
        return "\n".join(self.operator_log.read_text(errors="replace").splitlines()[-30:])


def _rules_without_for(tmp: Path) -> Path:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    path = tmp / "rules-without-for.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _tiny_model() -> Classifier:
    spec = ModelSpec(
        n_features=4, hidden=(8,), classes=("no", "yes"), feature_columns=("a", "b", "c", "d")
    )
    return Classifier(spec, np.zeros(4, dtype=np.float32), np.ones(4, dtype=np.float32)).eval()


def _nodes(kubectl: Kubectl, pool: str) -> list[str]:
    return kubectl("get", "nodes", "-l", f"kubeforge.io/pool={pool}", "-o", "name").stdout.split()


@pytest.fixture(scope="module")
def scenario(
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    pytorchjob_crd: str,
    kwok: Kwok,
    training_operator: TrainingOperator,
    prometheus_bin: Path,
    digits_labelled: Path,
    digits_splits: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    from kubernetes import client

    tmp = tmp_path_factory.mktemp("monitoring")
    kubectl("apply", "--server-side", "-f", str(POOL_CRD))
    wait_for_crd(api_client, "gpunodepools.kubeforge.io")
    suffix = secrets.token_hex(3)
    fit, full = f"fit-{suffix}", f"full-{suffix}"
    namespace = f"kf-mon-{suffix}"
    core = client.CoreV1Api(api_client)
    with contextlib.ExitStack() as cleanup:  # undone in reverse order, also on a failed setup
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        cleanup.callback(core.delete_namespace, namespace)
        # (pool, maxNodes, workers of each job): a job is a Master plus its Workers, 8 GPUs each.
        for pool, max_nodes, jobs in ((fit, 10, [1]), (full, 1, [0, 1])):
            body = gpu_pool(pool).serving().taint(*UNTOLERATED).scaling(maxNodes=max_nodes)
            kubectl("apply", "-f", "-", stdin=json.dumps(body.obj()))
            cleanup.callback(_delete_pool, kubectl, pool)
            for i, workers in enumerate(jobs):
                job = pytorchjob(f"job-{i}-{pool}").namespace(namespace).workers(workers).pool(pool)
                job.submit(api_client)
        server = ModelServer(_tiny_model(), ["no", "yes"], MODEL).start()
        cleanup.callback(server.stop)
        operator_port = free_port()
        log = tmp / "operator.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBEFORGE_RECONCILE_INTERVAL": "1",
            "KUBEFORGE_METRICS_PORT": str(operator_port),
            "KUBEFORGE_METRICS_ADDR": "127.0.0.1",
        }
        with log.open("wb") as out:
            # The chart's container command, in a process of its own so a test can stop it.
            operator = subprocess.Popen(
                [sys.executable, "-m", "kopf", "run", "--standalone", "-A"]
                + ["-m", "kubeforge.operators.main"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        cleanup.callback(stop_process_groups, [operator])
        trainer_port = free_port()
        config = TrainConfig(
            str(digits_labelled / "train.parquet"),
            str(digits_splits / "val.parquet"),
            str(tmp / "train"),
            # epochs: stopped once Prometheus has seen it train
            TrainParams.defaults(hidden="32", epochs=1_000_000, nproc=1),
            checkpoint_interval_s=3600.0,
        )
        (tmp / "train.json").write_text(json.dumps(asdict(config)))
        prometheus = PrometheusServer(
            prometheus_bin,
            {
                OPERATOR_JOB: [f"127.0.0.1:{operator_port}"],
                SERVING_JOB: [server.url.removeprefix("http://")],
                TRAINING_JOB: [f"127.0.0.1:{trainer_port}"],
            },
            [_rules_without_for(tmp)],
            interval="1s",
            workdir=tmp / "prometheus",
        )
        cleanup.callback(prometheus.stop)
        prometheus.start()
        scene = Scenario(prometheus, operator, log, fit, full, namespace, api_client)
        _drive(scene, kubectl, server)
        _train_until_measured(prometheus, tmp / "train.json", trainer_port)
        yield scene


def _train_until_measured(prometheus: PrometheusServer, config: Path, port: int) -> None:
    """Run a training worker until Prometheus has two scrapes of a growing sample counter."""
    env = {
        **os.environ,
        "KUBEFORGE_METRICS_PORT": str(port),
        "KUBEFORGE_METRICS_ADDR": "127.0.0.1",
        "OMP_NUM_THREADS": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "kubeforge.components.train.trainer", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        rate = "sum(rate(kubeforge_train_samples_total[1m]))"

        def measured() -> bool:
            if worker.poll() is not None:
                stderr = worker.stderr.read().decode() if worker.stderr else ""
                raise AssertionError(f"the training worker exited: {stderr[-2000:]}")
            return (prometheus.value(rate) or 0.0) > 0

        wait_for(measured, timeout=120)
    finally:
        stop_process_groups([worker])


def _delete_pool(kubectl: Kubectl, pool: str) -> None:
    # Runs after the operator stopped: drop its finalizer, delete the pool and its kwok nodes.
    patch = '{"metadata":{"finalizers":null}}'
    kubectl("patch", "gpool", pool, "--type=merge", "-p", patch, check=False)
    kubectl("delete", "gpool", pool, "--ignore-not-found", "--wait=false", check=False)
    for node in _nodes(kubectl, pool):
        kubectl("delete", node, check=False)


def _refused_for_the_taint(scene: Scenario, job: str, pods: int) -> bool:
    found = job_pods(scene.api_client, scene.namespace, job)
    return len(found) == pods and all(
        not p.spec.node_name
        and any(
            c.type == "PodScheduled"
            and c.reason == "Unschedulable"
            and "untolerated taint" in (c.message or "")
            for c in p.status.conditions or []
        )
        for p in found
    )


def _drive(scene: Scenario, kubectl: Kubectl, server: ModelServer) -> None:
    """Let the pools settle and send the predict requests, as Prometheus watches."""
    prom = scene.prometheus

    def ready(pool: str, nodes: int) -> bool:
        if scene.operator.poll() is not None:
            raise AssertionError(f"the operator exited:\n{scene.operator_log_tail()}")
        status = json.loads(kubectl("get", "gpool", pool, "-o", "json").stdout)
        return bool(status.get("status", {}).get("readyNodes") == nodes)

    wait_for(lambda: ready(scene.fit, 2), timeout=90)
    wait_for(lambda: ready(scene.full, 1), timeout=30)
    # The real scheduler saw the ready nodes and refused every pod for the taint.
    wait_for(lambda: _refused_for_the_taint(scene, f"job-0-{scene.fit}", 2), timeout=60)
    wait_for(lambda: prom.value(f'up{{job="{SERVING_JOB}"}}') == 1.0, timeout=30)
    good = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    assert _post(server.predict_url, good) == 200
    # Prometheus sees the first request before the rest, so rate() has an increase to measure.
    requests = f'kubeforge_serving_requests_total{{model="{MODEL}",code="200"}}'
    wait_for(lambda: prom.value(requests) == 1.0, timeout=30)
    for _ in range(GOOD_REQUESTS - 1):
        assert _post(server.predict_url, good) == 200
    for _ in range(BAD_REQUESTS):
        assert _post(server.predict_url, {"instances": [[1.0, 2.0]]}) == 400


def test_pool_metrics_have_the_values_the_scenario_caused(scenario: Scenario) -> None:
    prom, fit, full = scenario.prometheus, scenario.fit, scenario.full

    def nodes(pool: str, state: str) -> float | None:
        return prom.value(f'kubeforge_pool_nodes{{pool="{pool}",state="{state}"}}')

    def gpus(pool: str, state: str) -> float | None:
        return prom.value(f'kubeforge_pool_gpus{{pool="{pool}",state="{state}"}}')

    wait_for(lambda: nodes(fit, "gpu_ready") == 2.0 and nodes(full, "gpu_ready") == 1.0)
    assert (gpus(fit, "allocatable"), gpus(fit, "allocated"), gpus(fit, "idle")) == (16, 0, 16)
    assert (gpus(full, "allocatable"), gpus(full, "allocated"), gpus(full, "idle")) == (8, 0, 8)
    assert prom.value(f'sum(kubeforge_pool_nodes{{pool="{full}"}})') == 1.0
    # Pending gang GPUs: every GPU of the jobs whose pods are not all bound (here: all jobs).
    assert prom.value(f'kubeforge_pool_pending_gang_gpus{{pool="{fit}"}}') == 16.0
    assert prom.value(f'kubeforge_pool_pending_gang_gpus{{pool="{full}"}}') == 24.0
    assert prom.value(f'kubeforge_pool_decision_seconds_count{{pool="{fit}"}}')


def test_scale_events_are_counted_for_the_pool_that_scaled(scenario: Scenario) -> None:
    # fit added 2 nodes, full 1: each pool's counter says so, whatever the other pool did.
    prom = scenario.prometheus
    for pool, added in ((scenario.fit, 2.0), (scenario.full, 1.0)):
        series = prom.query(f'kubeforge_pool_scale_events_total{{pool="{pool}"}}')
        got = [
            (s["metric"].get("direction"), s["metric"].get("reason"), s["value"][1]) for s in series
        ]
        up = f'sum(kubeforge_pool_scale_events_total{{pool="{pool}",direction="up"}})'
        assert prom.value(up) == added, f"{pool}: {got}"


def test_serving_metrics_count_the_requests_sent(scenario: Scenario) -> None:
    prom = scenario.prometheus
    total = f'kubeforge_serving_requests_total{{model="{MODEL}",code="200"}}'
    wait_for(lambda: prom.value(total) == float(GOOD_REQUESTS), timeout=30)
    bad = f'kubeforge_serving_requests_total{{model="{MODEL}",code="400"}}'
    assert prom.value(bad) == float(BAD_REQUESTS)
    count = f'kubeforge_serving_request_duration_seconds_count{{model="{MODEL}"}}'
    assert prom.value(count) == float(GOOD_REQUESTS + BAD_REQUESTS)
    # The shipped recording rule: p99 latency of the model over 5m, a finite number of seconds.
    p99 = f'kubeforge:serving_request_duration_seconds:p99_5m{{model="{MODEL}"}}'

    def p99_known() -> bool:
        value = prom.value(p99)
        return value is not None and math.isfinite(value)

    wait_for(p99_known, timeout=30)
    assert 0 < (prom.value(p99) or 0) <= 1.0  # the largest finite bucket is 1 s


def test_training_throughput_reached_prometheus(scenario: Scenario) -> None:
    # The dashboard's throughput panel, over a window that holds the worker's scrapes.
    prom = scenario.prometheus
    total = prom.value("sum(max_over_time(kubeforge_train_samples_total[5m]))")
    assert total is not None and total > 0
    throughput = prom.value("sum(rate(kubeforge_train_samples_total[5m]))")
    assert throughput is not None and throughput > 0


def test_alerts_fire_for_the_broken_pool_only(scenario: Scenario) -> None:
    fit, full = scenario.fit, scenario.full

    def settled() -> bool:
        cannot = scenario.active_alerts("KubeforgePoolCannotScale")
        idle = scenario.active_alerts("KubeforgeGPUsIdleWhileJobsWait")
        both = {fit: "firing", full: "firing"}
        return cannot == {full: "firing"} and idle == both

    # fit got its nodes: it can hold its job, so it is not "cannot scale"; full cannot hold its
    # 16-GPU job. In both, ready GPUs sit idle while the jobs' pods are not bound.
    wait_for(settled, timeout=60)
    active = {
        (a["labels"]["alertname"], a["labels"].get("pool")) for a in scenario.prometheus.alerts()
    }
    assert active == {
        ("KubeforgePoolCannotScale", full),
        ("KubeforgeGPUsIdleWhileJobsWait", fit),
        ("KubeforgeGPUsIdleWhileJobsWait", full),
        ("KubeforgeJobsWaitingForGPUs", fit),
        ("KubeforgeJobsWaitingForGPUs", full),
    }  # and none of: operator down, reconcile errors, provisioning failed, queue wait, latency
    cannot = next(
        a
        for a in scenario.prometheus.alerts()
        if a["labels"]["alertname"] == "KubeforgePoolCannotScale"
    )
    assert cannot["labels"]["severity"] == "critical"
    summary = cannot["annotations"]["summary"]
    assert summary == f"GPU pool {full} cannot scale for the jobs waiting on it"
    assert "for 24 GPUs" in cannot["annotations"]["description"]


def test_every_rule_of_the_shipped_file_evaluates_without_error(scenario: Scenario) -> None:
    prom = scenario.prometheus
    shipped = yaml.safe_load(RULES.read_text())
    for group in shipped["groups"]:
        for rule in group["rules"]:
            prom.query(rule["expr"])  # raises PrometheusError on a bad expression

    def all_evaluated() -> bool:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return all(r["health"] != "unknown" for r in rules)

    wait_for(all_evaluated, timeout=30)
    loaded = {r["name"]: r for g in prom.api("rules")["groups"] for r in g["rules"]}
    names = {rule.get("alert") or rule["record"] for g in shipped["groups"] for rule in g["rules"]}
    assert loaded.keys() == names
    broken = {name: r.get("lastError") for name, r in loaded.items() if r["health"] != "ok"}
    assert broken == {}


def test_every_dashboard_query_is_valid_and_reads_real_metrics(scenario: Scenario) -> None:
    prom = scenario.prometheus
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 10
    wait_for(lambda: bool(prom.query(f'kubeforge_pool_nodes{{pool="{scenario.fit}"}}')))
    scraped = set(prom.api("label/__name__/values"))
    for expr in queries:
        # "All" of a multi-value variable is its allValue, ".*".
        prom.query(substitute_variables(expr, {"pool": ".*", "model": ".*"}))
        for metric in set(re.findall(r"\b(kubeforge_[a-z_]+|up)\b", expr)):
            if metric in NOT_PRODUCED_HERE:
                name = re.sub(r"_(total|bucket)$", "", metric)
                source = NOT_PRODUCED_HERE[metric].read_text()
                assert f'"{name}"' in source, f"{metric}: not defined where it should be"
            else:
                assert metric in scraped, f"{expr}: Prometheus has no metric {metric}"
    # The template variables list the pools and the model the scenario created.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name, expected in (("pool", {scenario.fit, scenario.full}), ("model", {MODEL})):
        found = re.fullmatch(r"label_values\((\w+), (\w+)\)", variables[name]["definition"])
        assert found, variables[name]["definition"]
        metric, label = found.groups()
        values = set(prom.api(f"label/{label}/values", **{"match[]": metric}))
        assert expected <= values


def test_operator_down_fires_when_the_operator_stops(scenario: Scenario) -> None:
    # Last in the module: it stops the operator (the fixture's cleanup copes with that).
    assert scenario.active_alerts("KubeforgeOperatorDown") == {}
    stop_process_groups([scenario.operator])
    up = f'up{{job="{OPERATOR_JOB}"}}'
    wait_for(lambda: scenario.prometheus.value(up) == 0.0, timeout=30)
    wait_for(lambda: scenario.active_alerts("KubeforgeOperatorDown") == {"": "firing"}, timeout=30)
    replica = scenario.active_alerts("KubeforgeOperatorReplicaDown")
    assert replica == {"": "firing"}
