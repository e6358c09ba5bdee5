"""Kubeforge's GPUNodePool next to the real Cluster Autoscaler, on one kwok test cluster.

``python -m benchmarks.autoscaler [--quick]`` (``make bench-autoscaler``, ``QUICK=1``).

One seeded trace of PyTorchJobs (about 20 jobs, 1x1 to 4x8 GPUs, arrivals over ~15 minutes) is
replayed twice against the same real control plane, kwok and Kubeflow training operator: once
with the Kubeforge operator scaling a GPUNodePool of kwok nodes, once with the Cluster
Autoscaler (kwok cloud provider) scaling a node group of the same nodes, its
``--scale-down-unneeded-time`` equal to the pool's ``idleAfter``. The real scheduler binds every
pod in both runs. ``--quick`` divides every time of the trace and of both autoscalers (arrivals,
run times, idle times, reconcile intervals) by ``--speed`` (5 unless told).

Printed side by side, with ratios Kubeforge / Cluster Autoscaler from this one run: jobs ever
partially placed, time from job creation to all ranks Running (p50/p95), idle GPU-minutes and
nodes added. Results go to ``benchmarks/results/autoscaler[-quick].json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
POOL_LABEL = "kubeforge.io/pool"
GPU = "nvidia.com/gpu"
# Trace shapes (pods x GPUs per pod), 1x1 to 4x8, and their weights.
SHAPES = ((1, 1), (1, 2), (1, 4), (1, 8), (2, 4), (2, 8), (4, 4), (4, 8))
WEIGHTS = (3, 2, 2, 3, 1, 3, 1, 2)


@dataclass(frozen=True)
class TraceJob:
    """One job of the trace: when it arrives, its shape and how long each rank runs (trace s)."""

    name: str
    arrival_s: float
    pods: int
    gpus: int
    run_s: float


def make_trace(seed: int, jobs: int, span_s: float) -> list[TraceJob]:
    """``jobs`` jobs with uniform random arrivals over ``span_s`` and run times of 2-6 min."""
    rng = random.Random(seed)
    arrivals = sorted(rng.uniform(0.0, span_s) for _ in range(jobs))
    trace = []
    for i, arrival in enumerate(arrivals):
        pods, gpus = rng.choices(SHAPES, WEIGHTS)[0]
        trace.append(
            TraceJob(f"j{i:02d}-{pods}x{gpus}", arrival, pods, gpus, rng.uniform(120, 360))
        )
    return trace


@dataclass
class _JobSeen:
    created: float
    ranks: int
    all_running: float | None = None
    partially_placed: bool = False


@dataclass
class RunResult:
    """What one autoscaler did with the trace (times in wall-clock seconds of this run)."""

    name: str
    jobs: int
    jobs_all_running: int = 0
    jobs_succeeded: int = 0
    partially_placed: int = 0
    start_waits_s: list[float] = field(default_factory=list)
    idle_gpu_s: float = 0.0
    busy_gpu_s: float = 0.0
    nodes_added: int = 0
    peak_nodes: int = 0
    end_s: float = 0.0
    nodes_left: int = 0
    finished: bool = False


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Observer:
    """Polls the pods of the run's namespace and the nodes of its pool or group.

    A job is *partially placed* when, at one poll, some of its pods are bound while another of
    its pods is Pending with the scheduler's ``Unschedulable`` verdict. A job's start is the first
    poll at which all its ranks are Running. Idle GPU time: the allocatable GPUs of the pool's
    Ready nodes not requested by Running pods of a job whose ranks all run, integrated between
    polls (a rank of a job still waiting for another rank holds idle GPUs).
    """

    def __init__(self, api_client: Any, namespace: str, pool: str, t0: float) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.pool, self.t0 = namespace, pool, t0
        self.jobs: dict[str, _JobSeen] = {}
        self.nodes_seen: set[str] = set()
        self.peak_nodes = 0
        self.idle_gpu_s = 0.0
        self.busy_gpu_s = 0.0
        self._last: float | None = None
        self._last_idle = 0.0
        self._last_busy = 0.0

    def poll(self) -> tuple[int, int]:
        """One observation; returns (pool nodes now, jobs succeeded)."""
        now = time.monotonic()
        nodes = self.core.list_node(label_selector=f"{POOL_LABEL}={self.pool}").items
        pods = self.core.list_namespaced_pod(self.namespace).items
        if self._last is not None:  # integrate the previous state over the interval
            self.idle_gpu_s += self._last_idle * (now - self._last)
            self.busy_gpu_s += self._last_busy * (now - self._last)
        self._last = now
        # By uid: the pool reuses the lowest free node names.
        self.nodes_seen.update(n.metadata.uid for n in nodes)
        self.peak_nodes = max(self.peak_nodes, len(nodes))
        by_job: dict[str, list[Any]] = {}
        for pod in pods:
            job = (pod.metadata.labels or {}).get("training.kubeflow.org/job-name")
            if job in self.jobs:
                by_job.setdefault(job, []).append(pod)
        started: set[str] = set()
        for name, seen in self.jobs.items():
            ranks = by_job.get(name, [])
            phases = [p.status.phase for p in ranks]
            if (
                seen.all_running is None
                and len(ranks) == seen.ranks
                and all(ph == "Running" for ph in phases)
            ):
                seen.all_running = now
            if seen.all_running is not None and not all(ph == "Succeeded" for ph in phases):
                started.add(name)
            bound = [p for p in ranks if p.spec.node_name]
            waiting = [p for p in ranks if not p.spec.node_name and _unschedulable(p)]
            if bound and waiting:
                seen.partially_placed = True
        ready_gpus = 0
        ready = set()
        for node in nodes:
            conditions = node.status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                ready.add(node.metadata.name)
                ready_gpus += int((node.status.allocatable or {}).get(GPU, "0"))
        busy = 0
        for name in started:
            for pod in by_job.get(name, []):
                if pod.status.phase == "Running" and pod.spec.node_name in ready:
                    busy += _gpus(pod)
        self._last_idle, self._last_busy = float(ready_gpus - busy), float(busy)
        succeeded = sum(1 for name in self.jobs if self._succeeded(name))
        return len(nodes), succeeded

    def _succeeded(self, name: str) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            job = self.custom.get_namespaced_custom_object(
                "kubeflow.org", "v1", self.namespace, "pytorchjobs", name
            )
        except ApiException:
            return False
        conditions = job.get("status", {}).get("conditions", [])
        return any(c["type"] == "Succeeded" and c["status"] == "True" for c in conditions)


def _unschedulable(pod: Any) -> bool:
    return any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in pod.status.conditions or []
    )


def _gpus(pod: Any) -> int:
    total = 0
    for container in pod.spec.containers:
        requests = (container.resources and container.resources.requests) or {}
        total += int(requests.get(GPU, "0"))
    return total


def replay(
    api_client: Any,
    namespace: str,
    pool: str,
    trace: list[TraceJob],
    speed: float,
    poll_s: float,
    timeout_s: float,
    scaler: subprocess.Popen[bytes],
    log: Path,
) -> Observer:
    """Submit the trace's jobs at their (compressed) arrival times; observe until the pool is
    empty again after the last job succeeded, or ``timeout_s``.

    Raises:
        RuntimeError: the autoscaler's process (``scaler``, logging to ``log``) exited.
    """
    from kubeforge.testing.builders import pytorchjob

    t0 = time.monotonic()
    observer = Observer(api_client, namespace, pool, t0)
    pending = list(trace)
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        if scaler.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{log.stem} exited with code {scaler.returncode}:\n{tail}")
        now = time.monotonic()
        while pending and pending[0].arrival_s / speed <= now - t0:
            job = pending.pop(0)
            run = f"{max(1.0, job.run_s / speed):.0f}s"
            builder = pytorchjob(job.name).namespace(namespace).workers(job.pods - 1)
            builder.gpus(job.gpus).pool(pool).runs_for(run).submit(api_client)
            observer.jobs[job.name] = _JobSeen(time.monotonic(), job.pods)
        nodes, succeeded = observer.poll()
        if not pending and succeeded == len(trace) and nodes == 0:
            break
        time.sleep(poll_s)
    return observer


def summarize(name: str, observer: Observer, trace: list[TraceJob], t_end: float) -> RunResult:
    """The run's figures from what ``observer`` saw."""
    result = RunResult(name, len(trace))
    for seen in observer.jobs.values():
        if seen.all_running is not None:
            result.jobs_all_running += 1
            result.start_waits_s.append(seen.all_running - seen.created)
        result.partially_placed += int(seen.partially_placed)
    result.jobs_succeeded = sum(1 for job in observer.jobs if observer._succeeded(job))
    result.idle_gpu_s = observer.idle_gpu_s
    result.busy_gpu_s = observer.busy_gpu_s
    result.nodes_added = len(observer.nodes_seen)
    result.peak_nodes = observer.peak_nodes
    result.end_s = t_end - observer.t0
    nodes = observer.core.list_node(label_selector=f"{POOL_LABEL}={observer.pool}").items
    result.nodes_left = len(nodes)
    result.finished = result.jobs_succeeded == len(trace) and not nodes
    return result


def _duration(seconds: float) -> str:
    return f"{max(seconds, 1.0):.0f}s"


@contextlib.contextmanager
def cluster() -> Iterator[tuple[Path, Path, Any]]:
    """A control plane with kwok and the training operator: (bin dir, kubeconfig, client)."""
    from kubernetes import config

    from kubeforge.testing.controllers import Kwok, TrainingOperator
    from kubeforge.testing.controlplane import ControlPlane, build_binaries
    from kubeforge.testing.fixtures import wait_for_crd
    from kubeforge.testing.modules import pytorchjob_crd_path

    bin_dir = build_binaries()
    with ControlPlane(bin_dir=bin_dir) as plane:
        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={plane.kubeconfig}"]
        crds = {
            "pytorchjobs.kubeflow.org": pytorchjob_crd_path(),
            "gpunodepools.kubeforge.io": REPO / "manifests/crds/kubeforge.io_gpunodepools.yaml",
        }
        for crd, path in crds.items():
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-f", str(path)],
                check=True,
                capture_output=True,
            )
            wait_for_crd(api_client, crd)
        kwok = Kwok(bin_dir, plane.kubeconfig).start()
        operator = TrainingOperator(bin_dir, plane.kubeconfig, api_client).start()
        try:
            yield bin_dir, plane.kubeconfig, api_client
        finally:
            operator.stop()
            kwok.stop()
            api_client.close()


def fresh_namespace(api_client: Any, name: str) -> str:
    """Create ``name`` and wait for its default ServiceAccount (pods need it)."""
    from kubernetes import client

    from kubeforge.testing.fixtures import wait_for

    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: bool(core.list_namespaced_service_account(name).items), timeout=60)
    return name


@dataclass(frozen=True)
class Settings:
    """Times of one run, already divided by the speed-up."""

    speed: float
    idle_after_s: float
    interval_s: float
    poll_s: float
    max_nodes: int
    timeout_s: float


def run_kubeforge(
    kubeconfig: Path, api_client: Any, trace: list[TraceJob], s: Settings, log: Path
) -> RunResult:
    """The trace through a GPUNodePool scaled by the Kubeforge operator (kopf process)."""
    from kubeforge.testing.builders import gpu_pool
    from kubeforge.testing.controlplane import free_port, spawn, stop_process_groups

    pool = "kf-pool"
    body = gpu_pool(pool).serving().scaling(maxNodes=s.max_nodes, maxInFlight=s.max_nodes)
    body.scale_down(idleAfter=_duration(s.idle_after_s), minNodeAge="0s")
    from kubernetes import client

    client.CustomObjectsApi(api_client).create_cluster_custom_object(
        "kubeforge.io", "v1alpha1", "gpunodepools", body.obj()
    )
    namespace = fresh_namespace(api_client, "bench-kubeforge")
    kopf = Path(sys.executable).parent / "kopf"
    proc = spawn(
        [str(kopf), "run", "--all-namespaces", "-m", "kubeforge.operators.main"],
        log,
        env={
            "KUBECONFIG": str(kubeconfig),
            "KUBEFORGE_RECONCILE_INTERVAL": str(s.interval_s),
            "KUBEFORGE_METRICS_PORT": str(free_port()),
            "KUBEFORGE_METRICS_ADDR": "127.0.0.1",
        },
    )
    try:
        observer = replay(
            api_client, namespace, pool, trace, s.speed, s.poll_s, s.timeout_s, proc, log
        )
        return summarize("Kubeforge GPUNodePool", observer, trace, time.monotonic())
    finally:
        stop_process_groups([proc], grace_s=30)


def run_cluster_autoscaler(
    bin_dir: Path, kubeconfig: Path, api_client: Any, trace: list[TraceJob], s: Settings
) -> tuple[RunResult, str]:
    """The trace through a kwok node group scaled by the real Cluster Autoscaler."""
    from kubeforge.testing.controllers import ClusterAutoscaler, NodeGroupTemplate

    pool = "ca-pool"
    group = NodeGroupTemplate(pool, gpus=8, max_nodes=s.max_nodes)
    flags = {
        "scan-interval": _duration(s.interval_s),
        "scale-down-unneeded-time": _duration(s.idle_after_s),
    }
    autoscaler = ClusterAutoscaler(
        bin_dir, kubeconfig, api_client, [group], POOL_LABEL, skip_taint=True, flags=flags
    )
    namespace = fresh_namespace(api_client, "bench-autoscaler")
    autoscaler.start()
    try:
        assert autoscaler.process is not None
        observer = replay(
            api_client,
            namespace,
            pool,
            trace,
            s.speed,
            s.poll_s,
            s.timeout_s,
            autoscaler.process,
            autoscaler.log,
        )
        result = summarize("Cluster Autoscaler (kwok)", observer, trace, time.monotonic())
        log = autoscaler.log.read_text(errors="replace")
        return result, log
    finally:
        autoscaler.stop()


def table(kf: RunResult, ca: RunResult, speed: float, work: float) -> str:
    """The side-by-side table; minutes are trace minutes (wall-clock minutes x speed)."""

    def ratio(a: float, b: float) -> str:
        if math.isnan(a) or math.isnan(b):
            return "—"
        if b == 0:
            return "—" if a == 0 else "∞"
        return f"{a / b:.2f}×"

    def mins(values: list[float], q: float) -> float:
        return percentile(values, q) * speed / 60

    rows = [
        (
            "jobs all ranks Running / succeeded",
            f"{kf.jobs_all_running} / {kf.jobs_succeeded}",
            f"{ca.jobs_all_running} / {ca.jobs_succeeded}",
            "",
        ),
        (
            "jobs ever partially placed",
            str(kf.partially_placed),
            str(ca.partially_placed),
            ratio(kf.partially_placed, ca.partially_placed),
        ),
    ]
    for q in (50, 95):
        a, b = mins(kf.start_waits_s, q), mins(ca.start_waits_s, q)
        rows.append(
            (f"creation → all ranks Running p{q} (min)", f"{a:.2f}", f"{b:.2f}", ratio(a, b))
        )
    idle_kf, idle_ca = kf.idle_gpu_s * speed / 60, ca.idle_gpu_s * speed / 60
    busy_kf, busy_ca = kf.busy_gpu_s * speed / 60, ca.busy_gpu_s * speed / 60
    rows += [
        ("GPU-minutes the trace's ranks run (the work)", f"{work:.1f}", f"{work:.1f}", ""),
        ("idle GPU-minutes", f"{idle_kf:.1f}", f"{idle_ca:.1f}", ratio(idle_kf, idle_ca)),
        (
            "busy GPU-minutes (all ranks running)",
            f"{busy_kf:.1f}",
            f"{busy_ca:.1f}",
            ratio(busy_kf, busy_ca),
        ),
        (
            "nodes added",
            str(kf.nodes_added),
            str(ca.nodes_added),
            ratio(kf.nodes_added, ca.nodes_added),
        ),
        ("peak nodes", str(kf.peak_nodes), str(ca.peak_nodes), ratio(kf.peak_nodes, ca.peak_nodes)),
        (
            "end: all done, pool empty (min)",
            f"{kf.end_s * speed / 60:.1f}",
            f"{ca.end_s * speed / 60:.1f}",
            ratio(kf.end_s, ca.end_s),
        ),
        ("nodes left at the end", str(kf.nodes_left), str(ca.nodes_left), ""),
    ]
    lines = [
        f"| metric | {kf.name} | {ca.name} | Kubeforge / CA |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both replays in one process and print the comparison."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autoscaler", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="compress every time by --speed")
    parser.add_argument("--speed", type=float, default=5.0, help="time compression of --quick")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--span-min", type=float, default=15.0, help="arrivals over (trace min)")
    parser.add_argument(
        "--idle-after-min",
        type=float,
        default=5.0,
        help="idleAfter = CA's --scale-down-unneeded-time (trace min)",
    )
    parser.add_argument(
        "--interval-s",
        type=float,
        default=10.0,
        help="pool reconcile interval = CA --scan-interval (trace s)",
    )
    parser.add_argument("--max-nodes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error(f"--speed must be positive, not {args.speed}")
    speed = args.speed if args.quick else 1.0
    trace = make_trace(args.seed, args.jobs, args.span_min * 60)
    longest = max(j.arrival_s + j.run_s for j in trace)
    settings = Settings(
        speed=speed,
        idle_after_s=args.idle_after_min * 60 / speed,
        interval_s=max(1.0, args.interval_s / speed),
        poll_s=0.5,
        max_nodes=args.max_nodes,
        # The whole trace, the scale-down tail and as long again for queueing.
        timeout_s=2 * (longest + args.idle_after_min * 60) / speed + 120,
    )
    gpus = sum(j.pods * j.gpus for j in trace)
    print(
        f"trace: {len(trace)} jobs, {gpus} GPUs asked in all, arrivals over {args.span_min} min, "
        f"speed {speed}x; idleAfter = --scale-down-unneeded-time = {args.idle_after_min} min; "
        f"reconcile = scan interval {settings.interval_s * speed:.0f} s (trace time)",
        flush=True,
    )
    # SIGTERM unwinds like Ctrl-C, so every process and work folder is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with cluster() as (bin_dir, kubeconfig, api_client):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kubeforge-bench-") as tmp:
            kf = run_kubeforge(kubeconfig, api_client, trace, settings, Path(tmp) / "kopf.log")
        print(f"Kubeforge run done ({kf.end_s:.0f} s wall clock)", flush=True)
        ca, _ = run_cluster_autoscaler(bin_dir, kubeconfig, api_client, trace, settings)
        print(f"Cluster Autoscaler run done ({ca.end_s:.0f} s wall clock)", flush=True)
    work = sum(j.pods * j.gpus * j.run_s for j in trace) / 60
    text = table(kf, ca, speed, work)
    print(text)
    out = args.out or RESULTS / ("autoscaler-quick.json" if args.quick else "autoscaler.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "trace": [asdict(j) for j in trace],
                "settings": asdict(settings),
                "runs": [asdict(kf), asdict(ca)],
                "wall_clock_s": time.monotonic() - started,
                "machine": platform.platform(),
                "table": text,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0 if kf.finished and ca.finished else 1


if __name__ == "__main__":
    sys.exit(main())
