"""What one reconcile of a PipelineRun does next, and what a reconcile returns.

Level-based: the step follows from the status alone (a run with no ``backend`` has not started,
whatever happened before), so a restarted operator picks up where the last one stopped.
Pure: ``now`` is passed in. May import the controller's ``api/`` and ``core/`` modules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kubeforge.operators.pipelineruns.api.models import (
    FINISHED,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineStatus,
)
from kubeforge.operators.pipelineruns.core.status import EventNote, expired


class RunStep(enum.StrEnum):
    """The one thing a reconcile of a PipelineRun does."""

    START = "start"  # no backend yet: resolve, check, start (or fail saying why)
    MIRROR = "mirror"  # started, not finished: copy the backend's state into status
    KEEP = "keep"  # finished: nothing left to mirror
    DELETE = "delete"  # finished longer than ttlSecondsAfterFinished ago: delete the run


def next_step(status: PipelineRunStatus, spec: PipelineRunSpec, now: float) -> RunStep:
    """The step for a run in ``status``."""
    finished = status.phase in FINISHED
    if finished and expired(status.finishedAt, spec.ttlSecondsAfterFinished, now):
        return RunStep.DELETE
    if not status.backend:
        return RunStep.START
    return RunStep.KEEP if finished else RunStep.MIRROR


@dataclass(frozen=True)
class RunResult:
    """What a reconcile of a PipelineRun did.

    Attributes:
        step: The step it took.
        status: The run's status afterwards (what the API server holds once the patch is in).
        event: The Event it posted, if any.
    """

    step: RunStep
    status: PipelineRunStatus
    event: EventNote | None = None


@dataclass(frozen=True)
class PipelineResult:
    """What a reconcile of a Pipeline did: the status it wrote and the Event it posted."""

    status: PipelineStatus
    event: EventNote | None = None
