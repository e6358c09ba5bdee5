"""The chart's containers, run here as processes with the command and env the chart renders.

No kubelet runs in the test cluster, so the operator's and MLflow's commands run on this machine:
the operator with the ServiceAccount token of a `helm install`ed release (so the chart's RBAC is
all it has), MLflow with the chart's environment. Only addresses and paths that cannot exist
here (0.0.0.0 listeners, the /data volume, the in-cluster login) are swapped for local ones.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.components.train.pytorchjob import build_pytorchjob, submit_pytorchjob
from kubeforge.testing.controlplane import free_port, stop_process_groups
from kubeforge.testing.fixtures import Kubectl, kwok_pool, wait_for

pytestmark = pytest.mark.cluster

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def _container(objects: list[dict[str, Any]], chart: Any, suffix: str) -> dict[str, Any]:
    deployment = chart.find(objects, "Deployment", suffix)
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0]


def _plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.fixture
def process_log(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each is stopped (its whole group) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    stop_process_groups(procs, grace_s=20)


def _get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _service_account_kubeconfig(
    kubectl: Kubectl, kubeconfig: Path, namespace: str, account: str, path: Path
) -> Path:
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": "kubeforge-admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.timeout(300)
def test_operator_runs_with_only_the_charts_rbac(
    chart: Any,
    kubectl: Kubectl,
    kubeconfig: Path,
    api_client: Any,
    namespace: str,
    release: str,
    pytorchjob_crd: str,
    cluster_api_crds: list[str],
    process_log: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    chart.helm("install", release, str(chart.path), "--namespace", namespace)
    objects = [
        doc
        for doc in yaml.safe_load_all(
            chart.helm("get", "manifest", release, "--namespace", namespace).stdout
        )
        if doc
    ]
    container = _container(objects, chart, "-operator")
    account = chart.find(objects, "ServiceAccount")["metadata"]["name"]
    sa_config = _service_account_kubeconfig(
        kubectl, kubeconfig, namespace, account, tmp_path / "sa.kubeconfig"
    )
    # The ServiceAccount itself may not read Secrets: the token is really the least-privileged one.
    denied = kubectl("--kubeconfig", str(sa_config), "get", "secrets", "-A", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr

    pool = f"chart-{secrets.token_hex(3)}"
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(kwok_pool(pool)),
    )
    submit_pytorchjob(
        api_client,
        build_pytorchjob(
            "bert", namespace, "img", ["train"], workers=1, gpus_per_replica=8,
            node_selector={"kubeforge.io/pool": pool},
        ),
    )  # fmt: skip

    health_port, metrics_port = free_port(), free_port()
    command = [
        str(BIN / arg) if i == 0 else arg.replace("0.0.0.0:8081", f"127.0.0.1:{health_port}")
        for i, arg in enumerate(container["command"])
    ]
    env = {
        **os.environ,
        **_plain_env(container),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(sa_config),
        "KUBEFORGE_METRICS_PORT": str(metrics_port),
        "KUBEFORGE_METRICS_ADDR": "127.0.0.1",
        "KUBEFORGE_RECONCILE_INTERVAL": "1",
    }
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process_log.append(
            subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def pool_nodes() -> list[str]:
        out = kubectl("get", "nodes", "-l", f"kubeforge.io/pool={pool}", "-o", "name").stdout
        return out.split()

    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{health_port}/healthz") == 200, timeout=60)
        wait_for(lambda: len(pool_nodes()) == 2, timeout=90)

        def ready() -> bool:
            status = json.loads(kubectl("get", "gpunodepools", pool, "-o", "json").stdout)
            return bool(status.get("status", {}).get("readyNodes") == 2)

        wait_for(ready, timeout=60)

        # A PipelineRun becomes a Job of the chart's image; deleting the run deletes the Job.
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))

        def jobs() -> list[str]:
            out = kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout
            return out.split()

        wait_for(lambda: jobs() == ["job.batch/digits-1"], timeout=60)
        job = json.loads(kubectl("get", "job", "digits-1", "-n", namespace, "-o", "json").stdout)
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == _plain_env(container)["KUBEFORGE_IMAGE"] == container["image"]
        kubectl("delete", "pipelinerun", "digits-1", "-n", namespace, "--timeout=60s")
        assert jobs() == []
        # The operator took part in the release's peering (it may patch the peering object).
        peering = json.loads(kubectl("get", "clusterkopfpeering", release, "-o", "json").stdout)
        assert peering.get("status"), peering
        assert _get(f"http://127.0.0.1:{metrics_port}/metrics") == 200
        assert process_log[0].poll() is None, log.read_text()[-3000:]
    finally:
        text = log.read_text(errors="replace")
        kubectl("delete", "gpunodepools", pool, "--wait=false", check=False)
        for node in pool_nodes():
            kubectl("delete", node, check=False)
    # 403 as a status code, not inside a random name ("chart-f403b5" failed a CI run).
    forbidden = [line for line in text.splitlines() if re.search(r"\b403\b|orbidden", line)]
    assert not forbidden, "\n".join(forbidden[:20])


@pytest.mark.timeout(240)
def test_mlflow_server_runs_with_the_charts_environment(
    chart: Any, process_log: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    objects = chart.render("kf", "ml", "--set", f"mlflow.port={port}")
    container = _container(objects, chart, "-mlflow")
    data = tmp_path / "data"
    data.mkdir()
    env = {name: value.replace("/data", str(data)) for name, value in _plain_env(container).items()}
    assert env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{data}/mlflow.db"
    command = [str(BIN / container["command"][0]), *container["command"][1:]]
    command = [arg.replace("--host=0.0.0.0", "--host=127.0.0.1") for arg in command]
    log = tmp_path / "mlflow.log"
    with log.open("wb") as out:
        process_log.append(
            subprocess.Popen(
                command,
                env={**os.environ, **env, "HOME": str(tmp_path)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{base}/health") == 200, timeout=150, interval=0.5)
    except AssertionError:
        raise AssertionError(log.read_text(errors="replace")[-3000:]) from None

    # Requests through the Service name pass the server's Host check; a foreign host does not.
    service = chart.find(objects, "Service", "-mlflow")["metadata"]["name"]
    search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(search, host=f"{service}.ml.svc:{port}") == 200
    assert _get(search, host=f"{service}.ml.svc.cluster.local:{port}") == 200
    assert _get(search, host="attacker.example.com") == 403

    # A run logged through the server keeps its row in SQLite and its artifact on the volume.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=base)
    experiment = client.create_experiment("chart-test")
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "hello", "note.txt")
    assert (data / "mlflow.db").is_file()
    stored = list((data / "artifacts").rglob("note.txt"))
    assert [p.read_text() for p in stored] == ["hello"]
