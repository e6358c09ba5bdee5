"""Serving: Kubeforge's server vs ``mlflow models serve`` of the same registered model.

Both serve ``models:/bench-digits@champion`` (a digits-shaped classifier: 64 features, 10 classes)
from one MLflow registry on SQLite, on loopback, each in its own process. The same request mix
(single rows and batches of 32, the same bytes: ``{"instances": [[...]]}``) is replayed at 1, 8
and 64 concurrent keep-alive clients, bounded in count and time. Every ratio's baseline is
MLflow's figure measured in the same run, right after ours.

Run: ``python -m benchmarks.serving [--quick]`` (``make bench-serving``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "bench-digits"
LEVELS = (1, 8, 64)


@dataclass
class Run:
    server: str
    clients: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _register(work: Path) -> str:
    """Train a small digits classifier for a few epochs and register it as champion."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_digits

    from kubeforge.components.common.model import Classifier, ModelSpec
    from kubeforge.core.tracking import connect

    uri = connect(f"sqlite:///{work / 'mlflow.db'}")
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    torch.manual_seed(0)
    spec = ModelSpec(64, (32,), tuple(str(i) for i in range(10)), tuple(f"p{i}" for i in range(64)))
    model = Classifier(spec, x.mean(axis=0), x.std(axis=0) + 1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    from mlflow.models import infer_signature

    with torch.no_grad():
        # A float32 tensor signature: MLflow casts the JSON numbers to what the model takes.
        signature = infer_signature(x[:4], model(torch.tensor(x[:4])).numpy())
    with mlflow.start_run() as run:
        mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", MODEL)
    MlflowClient().set_registered_model_alias(MODEL, "champion", version.version)
    return uri


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def _bodies(batch: int) -> list[bytes]:
    """The request mix: single rows and batches of ``batch`` rows, alternating, digits pixels."""
    from sklearn.datasets import load_digits

    x = load_digits().data
    rng = np.random.default_rng(0)
    out = []
    for i in range(64):
        rows = 1 if i % 2 == 0 else batch
        pick = rng.integers(0, len(x), rows)
        out.append(json.dumps({"instances": x[pick].tolist()}).encode())
    return out


async def _client(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    budget: list[int],
    deadline: float,
    latencies: list[float],
    statuses: list[int],
    offset: int,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            body = bodies[i % len(bodies)]
            i += 1
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            response = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"content-length: *(\d+)", response, re.I)
            await reader.readexactly(int(match.group(1)) if match else 0)
            latencies.append(time.perf_counter() - started)
            statuses.append(int(response.split(b" ", 2)[1]))
    finally:
        writer.close()


async def _load(
    port: int, path: str, bodies: list[bytes], clients: int, total: int, seconds: float
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    statuses: list[int] = []
    budget = [total]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _client("127.0.0.1", port, path, bodies, budget, deadline, latencies, statuses, c * 7)
            for c in range(clients)
        )
    )
    return latencies, statuses, time.perf_counter() - started


def measure(
    server: str, port: int, path: str, bodies: list[bytes], clients: int, total: int, secs: float
) -> Run:
    asyncio.run(_load(port, path, bodies, clients, min(total, 50), secs))  # warm-up
    latencies, statuses, wall = asyncio.run(_load(port, path, bodies, clients, total, secs))
    ms = np.array(latencies) * 1000
    return Run(
        server,
        clients,
        len(statuses),
        sum(1 for s in statuses if s != 200),
        round(wall, 2),
        round(len(statuses) / wall, 1),
        round(float(np.percentile(ms, 50)), 2),
        round(float(np.percentile(ms, 99)), 2),
        round(float(ms.max()), 2),
    )


def _counted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(v)
        for v in re.findall(r"^kubeforge_serving_requests_total\{[^}]*\} (\S+)$", text, re.M)
    )


def run(work: Path, quick: bool) -> dict[str, Any]:
    os.environ["KUBEFORGE_HOME"] = str(work / "home")
    uri = _register(work)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "KUBEFORGE_HOME": str(work / "home")}
    # mlflow models serve starts the `uvicorn` command of this environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ours_port, mlflow_port = _free_port(), _free_port()
    ours = _start(
        [sys.executable, "-m", "kubeforge.cli.app", "serve", f"models:/{MODEL}@champion"]
        + ["--port", str(ours_port), "--name", MODEL],
        env,
        work / "ours.log",
    )
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    theirs = _start(
        [mlflow_bin, "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager"]
        + ["local", "-h", "127.0.0.1", "-p", str(mlflow_port)],
        env,
        work / "mlflow.log",
    )
    try:
        _wait(f"http://127.0.0.1:{ours_port}/v2/health/ready", ours, work / "ours.log")
        _wait(f"http://127.0.0.1:{mlflow_port}/health", theirs, work / "mlflow.log")
        bodies = _bodies(32)
        scale = 0.25 if quick else 1.0
        runs: list[Run] = []
        sent_to_ours = 0
        before = _counted(ours_port)
        for clients in LEVELS:
            total = int({1: 600, 8: 2400, 64: 4800}[clients] * scale)
            secs = 60 * scale
            mine = measure(
                "kubeforge", ours_port, f"/v1/models/{MODEL}:predict", bodies, clients, total, secs
            )
            sent_to_ours += mine.requests + min(total, 50)
            theirs_run = measure(
                "mlflow", mlflow_port, "/invocations", bodies, clients, total, secs
            )
            runs.append(mine)
            runs.append(theirs_run)
            print(
                f"  {clients:>2} clients: kubeforge {mine.throughput} req/s, mlflow "
                f"{theirs_run.throughput} req/s",
                flush=True,
            )
        counted = _counted(ours_port) - before
    finally:
        for proc in (ours, theirs):
            proc.send_signal(signal.SIGTERM)
        for proc in (ours, theirs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "runs": [asdict(r) for r in runs],
        "metrics_counted": counted,
        "requests_sent_to_kubeforge": sent_to_ours,
        "mlflow_workers": "1 (the default of mlflow models serve)",
        "kubeforge_workers": 1,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
    }


def report(results: dict[str, Any]) -> int:
    runs = {(r["server"], r["clients"]): r for r in results["runs"]}
    print("\n| clients | server | requests | errors | req/s | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(
            f"| {r['clients']} | {r['server']} | {r['requests']} | {r['errors']} | "
            f"{r['throughput']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |"
        )
    print("\n| target | measured | goal | met |\n|---|---|---|---|")
    missed = 0

    def target(name: str, value: float, op: str, goal: float, shown: str) -> None:
        nonlocal missed
        ok = value >= goal if op == ">=" else value <= goal
        missed += not ok
        print(f"| {name} | {shown} | {op} {goal} | {'yes' if ok else 'NO'} |")

    for clients in LEVELS:
        ours, theirs = runs[("kubeforge", clients)], runs[("mlflow", clients)]
        ratio = ours["throughput"] / theirs["throughput"]
        p99 = ours["p99_ms"] / theirs["p99_ms"]
        shown = f"{ratio:.2f}x ({ours['throughput']} vs {theirs['throughput']} req/s)"
        p99_shown = f"{p99:.2f} ({ours['p99_ms']} vs {theirs['p99_ms']} ms)"
        if clients == 1:
            print(f"| throughput vs MLflow, 1 client (no goal) | {shown} | - | - |")
            print(f"| p99 vs MLflow, 1 client (no goal) | {p99_shown} | - | - |")
            continue
        target(f"throughput vs MLflow, {clients} clients", ratio, ">=", 1.5, shown)
        target(f"p99 vs MLflow, {clients} clients", p99, "<=", 1.0, p99_shown)
    ours8 = runs[("kubeforge", 8)]
    target("slowest request at 8 clients, ms", ours8["max_ms"], "<=", 100, f"{ours8['max_ms']}")
    errors = sum(r["errors"] for r in results["runs"])
    target("errors, both servers", errors, "<=", 0, str(errors))
    gap = abs(results["metrics_counted"] - results["requests_sent_to_kubeforge"])
    target(
        "/metrics count minus requests sent",
        gap,
        "<=",
        0,
        f"{results['metrics_counted']:.0f} counted, {results['requests_sent_to_kubeforge']} sent",
    )
    print(
        f"\nKubeforge: 1 uvicorn worker; MLflow: {results['mlflow_workers']} workers; "
        f"{results['cpus']} CPUs; load average at the end {results['load_average_at_end']:.1f}"
    )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests and time")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubeforge-bench-serving-"))
    try:
        results = run(work, args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    missed = report(results)
    out = Path(__file__).parent / "results" / "serving.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
