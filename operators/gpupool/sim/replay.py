"""Job histories a user replays through the pool planner (``kubeforge pool simulate``). Pure.

Two sources: a CSV of jobs (:func:`read_jobs_csv`), or the PyTorchJobs and TrainJobs of a
cluster read through the API as plain dicts (:func:`jobs_from_objects`; the CLI does the
reading). Either gives :class:`~kubeforge.operators.gpupool.sim.trace.TraceJob`s, submit times
relative to the first job, checked against the pool (:func:`check_fits`). Every refusal is one
:class:`ReplayError` whose message names the row or object and the field.

A job may declare its run time, as on a cluster with the pod template annotation
``kubeforge.io/expected-runtime-seconds``: the CSV's optional ``expected_runtime`` column, or that
annotation read from the objects. The planner sees the declared value; the job still runs for
its ``duration``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from kubeforge.core.config import EXPECTED_RUNTIME_ANNOTATION
from kubeforge.core.durations import parse_duration
from kubeforge.operators.clock import parse_rfc3339
from kubeforge.operators.gpupool.core.demand import pod_gpus
from kubeforge.operators.gpupool.sim.trace import TraceJob

COLUMNS = ("submit_time", "replicas", "gpus_per_replica", "duration")
DECLARED_COLUMN = "expected_runtime"  # optional: the run time the job declares; empty: none
# (submit time, replicas, GPUs per replica, run time, declared run time or None)
_Row = tuple[float, int, int, float, float | None]


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
    duration). The optional column ``expected_runtime`` is the run time the job declares
    (seconds or a duration, what its pods' ``kubeforge.io/expected-runtime-seconds`` would say);
    an empty cell declares none. Extra columns (a job name, say) are ignored.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ReplayError(
            f"{source}: missing column(s) {', '.join(missing)}; the header must name "
            f"{','.join(COLUMNS)} (found {','.join(header) or 'no header'})"
        )
    rows: list[_Row] = []
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "") for k, v in raw.items()}
        where = f"{source} line {number}"
        submit = _seconds(row["submit_time"], where, "submit_time")
        replicas = _count(row["replicas"], where, "replicas")
        gpus = _count(row["gpus_per_replica"], where, "gpus_per_replica")
        duration = _seconds(row["duration"], where, "duration")
        if duration <= 0 or not math.isfinite(duration):
            raise ReplayError(f"{where}: column 'duration' must be positive, not {duration:g}")
        declared = None
        if row.get(DECLARED_COLUMN, "").strip():
            declared = _seconds(row[DECLARED_COLUMN], where, DECLARED_COLUMN)
            if declared <= 0 or not math.isfinite(declared):
                raise ReplayError(
                    f"{where}: column {DECLARED_COLUMN!r} must be positive, not {declared:g} "
                    "(leave the cell empty for a job that declares no run time)"
                )
        rows.append((submit, replicas, gpus, duration, declared))
    if not rows:
        raise ReplayError(f"{source}: no jobs (a header and at least one row are needed)")
    return _trace(rows)


def _trace(rows: list[_Row]) -> tuple[TraceJob, ...]:
    start = min(r[0] for r in rows)
    ordered = sorted(rows, key=lambda r: r[0])
    return tuple(
        TraceJob(
            i,
            round(submit - start, 3),
            (gpus,) * replicas,
            round(duration, 3),
            None if declared is None else round(declared, 3),
        )
        for i, (submit, replicas, gpus, duration, declared) in enumerate(ordered)
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


def _annotation(template: Mapping[str, Any]) -> Any:
    return ((template.get("metadata") or {}).get("annotations") or {}).get(
        EXPECTED_RUNTIME_ANNOTATION
    )


def _gpu_pod_templates(obj: Mapping[str, Any], resource: str) -> list[tuple[str, Any]]:
    """(replica, its pod template's run-time annotation or None) per group of GPU pods.

    A PyTorchJob's replica templates that ask for GPUs. A TrainJob's trainer pods (the
    replicated job ``node``) as its user patches their template in ``spec.runtimePatches``
    (Trainer v2 has no other per-TrainJob place for pod annotations; the runtime's own
    template is not read, as for ``jobSelector``); a later patch wins.
    """
    spec = obj.get("spec") or {}
    if obj.get("kind") == "TrainJob":
        declared = None
        for patch in spec.get("runtimePatches") or []:
            template = (patch.get("trainingRuntimeSpec") or {}).get("template") or {}
            for job in (template.get("spec") or {}).get("replicatedJobs") or []:
                pod = ((job.get("template") or {}).get("spec") or {}).get("template") or {}
                if job.get("name") == "node" and _annotation(pod) is not None:
                    declared = _annotation(pod)
        return [("node", declared)]
    return [
        (kind, _annotation(replica.get("template") or {}))
        for kind, replica in sorted((spec.get("pytorchReplicaSpecs") or {}).items())
        if pod_gpus((replica.get("template") or {}).get("spec") or {}, resource)
    ]


def _declared_seconds(value: Any) -> float | None:
    """The annotation's seconds, valid as the operator reads it (a number >= 0); else None."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None  # negative or NaN: ignored


def _declared(obj: Mapping[str, Any], name: str, resource: str) -> tuple[float | None, str | None]:
    """The run time a job's GPU pods declare, and a note when a declaration is ignored.

    The operator ignores an invalid value, and cannot tell when a node frees if any pod on it
    declares none; so the job declares a run time only if every group of its GPU pods declares
    a valid one (the longest counts, as the operator takes the last pod of a node to end).
    """
    templates = _gpu_pod_templates(obj, resource)
    values = [(kind, value, _declared_seconds(value)) for kind, value in templates]
    bad = [
        f"{kind} {value!r}"
        for kind, value, seconds in values
        if value is not None and seconds is None
    ]
    if bad:
        return None, (
            f"{name}: {EXPECTED_RUNTIME_ANNOTATION} is {', '.join(bad)}, not seconds >= 0: "
            "ignored, as the operator ignores it"
        )
    given = [seconds for _, _, seconds in values if seconds is not None]
    if given and len(given) < len(values):
        silent = ", ".join(kind for kind, value, _ in values if value is None)
        return None, (
            f"{name}: {silent} declare(s) no {EXPECTED_RUNTIME_ANNOTATION}: the operator cannot "
            "tell when their nodes free, so the job counts as declaring none"
        )
    return (max(given) if given else None), None


class ClusterTrace(NamedTuple):
    """Finished jobs of a cluster as a trace, with what was left out or ignored and why."""

    jobs: tuple[TraceJob, ...]
    skipped: list[str]  # per job left out: not finished, no GPUs
    notes: list[str]  # per job whose run-time declaration is ignored


def jobs_from_objects(
    objects: Iterable[Mapping[str, Any]], resource: str = "nvidia.com/gpu"
) -> ClusterTrace:
    """Finished PyTorchJobs/TrainJobs as a trace: created -> submit, run time -> duration.

    The run time is completion minus start (the queue wait is what the simulator replays); the
    declared run time is the pods' ``kubeforge.io/expected-runtime-seconds`` annotation, read
    from the job's pod templates (:func:`_gpu_pod_templates`).
    """
    rows: list[_Row] = []
    skipped: list[str] = []
    notes: list[str] = []
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
        declared, note = _declared(obj, name, resource)
        if note:
            notes.append(note)
        rows.append((created, replicas, gpus, duration, declared))
    if not rows:
        raise ReplayError(
            "no finished PyTorchJob or TrainJob with GPUs to replay"
            + (f" ({len(skipped)} left out: {'; '.join(skipped[:3])})" if skipped else "")
        )
    return ClusterTrace(_trace(rows), skipped, notes)


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
