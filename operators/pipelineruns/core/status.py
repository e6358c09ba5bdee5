"""The status of a Pipeline and a PipelineRun after one reconcile, and the Event that goes with it.

Each function takes the status before (parsed with ``from_dict``) and what the reconcile found,
and returns the typed status to write (fields left None are not written: the status is sent as
a merge patch, as it always was) plus the Event to post, if any. Pure: ``now`` is passed in.
May import the controller's ``api/`` and ``core/`` modules, :mod:`kubeforge.operators.conditions`
and :mod:`kubeforge.operators.clock`; no Kubernetes, no kopf, no wall clock.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from kubeforge.core.errors import KubeforgeError
from kubeforge.operators.clock import parse_rfc3339, rfc3339
from kubeforge.operators.conditions import condition
from kubeforge.operators.pipelineruns.api.models import (
    FINISHED,
    Backend,
    DeclaredParameter,
    PipelinePhase,
    PipelineRunStatus,
    PipelineStatus,
    RunPhase,
)
from kubeforge.operators.pipelineruns.core.backend_state import RunState
from kubeforge.operators.schema import Condition
from kubeforge.pipelines.ir import PipelineIR


class Reason(enum.StrEnum):
    """Reasons of the conditions and Events of Pipelines and PipelineRuns."""

    RESOLVED = "Resolved"
    INVALID_PIPELINE = "InvalidPipeline"
    INVALID_SPEC = "InvalidSpec"
    KFP_UNAVAILABLE = "KfpUnavailable"
    STARTED = "Started"
    RUN_FAILED = "RunFailed"
    BACKEND_UNAVAILABLE = "BackendUnavailable"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class EventNote:
    """An Event to post on the object: ``Warning`` when ``warning``, else ``Normal``."""

    reason: Reason
    message: str
    warning: bool


@dataclass(frozen=True)
class StartedRun:
    """What starting a run on a backend gave back: the handle status keeps to follow it."""

    backend: Backend
    job_name: str | None = None
    kfp_run_id: str | None = None
    url: str | None = None


def _conditions(
    before: list[Condition] | None, stamp: str, *wanted: tuple[str, bool, Reason, str]
) -> list[Condition]:
    """Conditions ``(type, active, reason, message)``; each keeps its time while it holds."""
    previous = {c.type: dataclasses.asdict(c) for c in before or []}
    return [
        Condition(**condition(previous, kind, active, reason.value, message, stamp))
        for kind, active, reason, message in wanted
    ]


def pipeline_ready(
    before: PipelineStatus, generation: int, ir: PipelineIR, now: float
) -> PipelineStatus:
    """A Pipeline whose source resolved and whose default parameters the IR accepts."""
    return PipelineStatus(
        observedGeneration=generation,
        phase=PipelinePhase.READY,
        pipelineName=ir.name,
        digest=ir.digest,
        message="",
        parameters=[
            DeclaredParameter(p.name, p.type, not p.optional) for p in ir.parameters.values()
        ],
        conditions=_conditions(
            before.conditions, rfc3339(now), ("Ready", True, Reason.RESOLVED, "")
        ),
    )


def pipeline_invalid(
    before: PipelineStatus, generation: int, error: KubeforgeError, now: float
) -> tuple[PipelineStatus, EventNote | None]:
    """A Pipeline runs cannot use; a Warning Event when the reason is new."""
    message = str(error)
    status = PipelineStatus(
        observedGeneration=generation,
        phase=PipelinePhase.FAILED,
        message=message,
        conditions=_conditions(
            before.conditions, rfc3339(now), ("Ready", False, Reason.INVALID_PIPELINE, message)
        ),
    )
    new = before.message != message
    return status, EventNote(Reason.INVALID_PIPELINE, message, warning=True) if new else None


def run_not_started(
    before: PipelineRunStatus, generation: int, error: KubeforgeError, now: float
) -> tuple[PipelineRunStatus, EventNote | None]:
    """A run that cannot start (invalid spec, or KFP unavailable): Failed, nothing started."""
    reason = Reason.KFP_UNAVAILABLE if error.parameter == "kfpHost" else Reason.INVALID_SPEC
    message = str(error)
    status = PipelineRunStatus(
        observedGeneration=generation,
        phase=RunPhase.FAILED,
        message=f"not started: {message}",
        conditions=_conditions(
            before.conditions,
            rfc3339(now),
            ("Started", False, reason, message),
            ("Failed", True, reason, message),
        ),
    )
    new = before.message != status.message
    return status, EventNote(reason, message, warning=True) if new else None


def run_started(
    before: PipelineRunStatus, generation: int, ir: PipelineIR, started: StartedRun, now: float
) -> tuple[PipelineRunStatus, EventNote]:
    """A run just started on its backend: Pending until the backend says more."""
    status = PipelineRunStatus(
        observedGeneration=generation,
        phase=RunPhase.PENDING,
        pipelineName=ir.name,
        digest=ir.digest,
        message=f"started on the {started.backend} backend",
        conditions=_conditions(
            before.conditions,
            rfc3339(now),
            ("Started", True, Reason.STARTED, ""),
            ("Failed", False, Reason.STARTED, ""),
        ),
        backend=started.backend,
        jobName=started.job_name,
        kfpRunId=started.kfp_run_id,
        url=started.url,
    )
    where = started.url or f"Job {started.job_name}"
    return status, EventNote(Reason.STARTED, f"pipeline {ir.name} started: {where}", False)


def run_mirrored(
    before: PipelineRunStatus, state: RunState, now: float
) -> tuple[PipelineRunStatus, EventNote | None]:
    """The backend's state mirrored; an Event when the run just finished."""
    failed = state.phase == RunPhase.FAILED
    status = PipelineRunStatus(
        phase=state.phase,
        message=state.message,
        startedAt=state.started_at or before.startedAt or None,
        finishedAt=state.finished_at or None,
        duration=duration(state.started_at, state.finished_at, now) or None,
        mlflowRunId=state.mlflow_run_id or before.mlflowRunId or None,
        cost=state.cost or before.cost,
        conditions=_conditions(
            before.conditions,
            rfc3339(now),
            ("Started", True, Reason.STARTED, ""),
            (
                "Failed",
                failed,
                Reason.RUN_FAILED if failed else Reason.STARTED,
                state.message if failed else "",
            ),
        ),
    )
    if state.phase != before.phase and state.phase in FINISHED:
        return status, EventNote(Reason(state.phase.value), state.message, warning=failed)
    return status, None


def backend_unavailable(
    before: PipelineRunStatus, error: KubeforgeError
) -> tuple[PipelineRunStatus, EventNote | None]:
    """The backend could not be read (e.g. KFP unreachable): keep the phase, say why."""
    message = str(error)
    new = before.message != message
    event = EventNote(Reason.BACKEND_UNAVAILABLE, message, warning=True) if new else None
    return PipelineRunStatus(message=message), event


def merged(before: PipelineRunStatus, patch: PipelineRunStatus) -> PipelineRunStatus:
    """The status after ``patch`` is merged into ``before`` (what the API server then holds)."""
    changes = {
        f.name: getattr(patch, f.name)
        for f in dataclasses.fields(patch)
        if getattr(patch, f.name) is not None
    }
    return dataclasses.replace(before, **changes)


def duration(started_at: str | None, finished_at: str | None, now: float) -> str:
    """``3m12s``-style time from start to finish (or to ``now`` while running); "" unstarted."""
    if not started_at:
        return ""
    end = parse_rfc3339(finished_at) if finished_at else now
    seconds = max(0, int(end - parse_rfc3339(started_at)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def expired(finished_at: str | None, ttl_seconds: int | None, now: float) -> bool:
    """The run finished more than ``ttlSecondsAfterFinished`` ago."""
    if ttl_seconds is None or not finished_at:
        return False
    return now - parse_rfc3339(finished_at) >= ttl_seconds
