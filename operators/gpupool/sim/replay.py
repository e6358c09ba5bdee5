"""Job histories a user replays through the pool planner (``kubeforge pool simulate``). Pure.

Two sources: a CSV of jobs (:func:`read_jobs_csv`), or the PyTorchJobs and TrainJobs of a
cluster read through the API as plain dicts (:func:`jobs_from_objects`; the CLI does the
reading). Either gives :class:`~kubeforge.operators.gpupool.sim.trace.TraceJob`s, submit times
relative to the first job, checked against the pool (:func:`check_fits`). Every refusal is one
:class:`ReplayError` whose message names the row or object and the field.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any

from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.demand import pod_gpus
from kubeforge.operators.gpupool.core.pool_config import parse_duration
from kubeforge.operators.gpupool.sim.trace import TraceJob

COLUMNS = ("submit_time", "replicas", "gpus_per_replica", "duration")


class ReplayError(ValueError):
    """A job history that cannot be replayed; the message says which row or job and why."""


def _seconds(text: str, where: str, column: str) -> float:
    """Seconds from a number (``90``), a duration (``1h30m``) or an ISO 8601 timestamp."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_duration(value)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(
            f"{where}: column {column!r} is {value!r}: give seconds (90), a duration (1h30m) "
            "or an ISO 8601 time (2026-01-05T10:00:00Z)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _count(text: str, where: str, column: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ReplayError(f"{where}: column {column!r} is {text!r}, not a whole number") from None
    if value < 1:
        raise ReplayError(f"{where}: column {column!r} is {value}; it must be at least 1")
    return value


def read_jobs_csv(text: str, source: str = "the CSV") -> tuple[TraceJob, ...]:
    """Jobs from CSV text with the header ``submit_time,replicas,gpus_per_replica,duration``.

    ``submit_time`` is seconds, a duration or an ISO time (made relative to the earliest job);
    ``duration`` is how long the job runs once all its replicas are placed (seconds or a
    duration). Extra columns (a job name, say) are ignored.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ReplayError(
            f"{source}: missing column(s) {', '.join(missing)}; the header must name "
            f"{','.join(COLUMNS)} (found {','.join(header) or 'no header'})"
        )
    rows = []
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "") for k, v in raw.items()}
        where = f"{source} line {number}"
        submit = _seconds(row["submit_time"], where, "submit_time")
        replicas = _count(row["replicas"], where, "replicas")
        gpus = _count(row["gpus_per_replica"], where, "gpus_per_replica")
        duration = _seconds(row["duration"], where, "duration")
        if duration <= 0 or not math.isfinite(duration):
            raise ReplayError(f"{where}: column 'duration' must be positive, not {duration:g}")
        rows.append((submit, replicas, gpus, duration))
    if not rows:
        raise ReplayError(f"{source}: no jobs (a header and at least one row are needed)")
    return _trace(rows)


def _trace(rows: list[tuple[float, int, int, float]]) -> tuple[TraceJob, ...]:
    start = min(r[0] for r in rows)
    ordered = sorted(rows, key=lambda r: r[0])
    return tuple(
        TraceJob(i, round(submit - start, 3), (gpus,) * replicas, round(duration, 3))
        for i, (submit, replicas, gpus, duration) in enumerate(ordered)
    )


def _finished_at(obj: Mapping[str, Any]) -> float | None:
    status = obj.get("status") or {}
    if status.get("completionTime"):
        return parse_rfc3339(status["completionTime"])
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Succeeded", "Complete", "Failed") and cond.get("status") == "True":
            return parse_rfc3339(cond.get("lastTransitionTime"))
    return None


def _started_at(obj: Mapping[str, Any]) -> float:
    status = obj.get("status") or {}
    if status.get("startTime"):
        return parse_rfc3339(status["startTime"])
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Running", "Created") and cond.get("lastTransitionTime"):
            return parse_rfc3339(cond["lastTransitionTime"])
    return parse_rfc3339((obj.get("metadata") or {}).get("creationTimestamp"))


def _shape(obj: Mapping[str, Any], resource: str) -> tuple[int, int]:
    """(replicas, GPUs per replica) of a PyTorchJob or a TrainJob; (0, 0) without GPUs."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "TrainJob":
        trainer = spec.get("trainer") or {}
        resources = trainer.get("resourcesPerNode") or {}
        gpus = pod_gpus({"containers": [{"resources": resources}]}, resource)
        return int(trainer.get("numNodes") or 1), gpus
    replicas = gpus = 0
    for replica in (spec.get("pytorchReplicaSpecs") or {}).values():
        per_pod = pod_gpus((replica.get("template") or {}).get("spec") or {}, resource)
        if per_pod:
            replicas += int(replica.get("replicas", 1))
            gpus = max(gpus, per_pod)
    return replicas, gpus


def jobs_from_objects(
    objects: Iterable[Mapping[str, Any]], resource: str = "nvidia.com/gpu"
) -> tuple[tuple[TraceJob, ...], list[str]]:
    """Finished PyTorchJobs/TrainJobs as a trace: created -> submit, run time -> duration.

    The run time is completion minus start (the queue wait is what the simulator replays).
    Returns the trace and, per job left out, why (not finished, no GPUs).
    """
    rows: list[tuple[float, int, int, float]] = []
    skipped: list[str] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        name = f"{obj.get('kind', 'job')} {meta.get('namespace', '')}/{meta.get('name', '')}"
        finished = _finished_at(obj)
        if finished is None:
            skipped.append(f"{name}: not finished")
            continue
        replicas, gpus = _shape(obj, resource)
        if not replicas or not gpus:
            skipped.append(f"{name}: asks for no {resource}")
            continue
        created = parse_rfc3339(meta.get("creationTimestamp"))
        duration = max(1.0, finished - _started_at(obj))
        rows.append((created, replicas, gpus, duration))
    if not rows:
        raise ReplayError(
            "no finished PyTorchJob or TrainJob with GPUs to replay"
            + (f" ({len(skipped)} left out: {'; '.join(skipped[:3])})" if skipped else "")
        )
    return _trace(rows), skipped


def check_fits(trace: Iterable[TraceJob], gpus_per_node: int, max_nodes: int) -> None:
    """Refuse a job no pool of this shape can ever run (it would wait forever)."""
    for job in trace:
        biggest = max(job.pods)
        if biggest > gpus_per_node:
            raise ReplayError(
                f"job {job.index + 1} (submitted at {job.created_at:g}s) asks {biggest} GPUs per "
                f"replica; the pool's nodes have {gpus_per_node} (--gpus-per-node)"
            )
        per_node = gpus_per_node // biggest
        nodes = math.ceil(len(job.pods) / per_node)
        if nodes > max_nodes:
            raise ReplayError(
                f"job {job.index + 1} (submitted at {job.created_at:g}s) needs {nodes} nodes of "
                f"{gpus_per_node} GPUs, more than maxNodes {max_nodes} (--max-nodes)"
            )
