"""What a backend says about a run, in PipelineRun terms: a Job (and its pod) or a KFP run state.

Pure: the caller reads the Job, its pods or the KFP run and passes them in.
May import the controller's ``api/`` models only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from kubeforge.operators.pipelineruns.api.models import FINISHED, RunCost, RunPhase

KFP_PHASES = {
    "PENDING": RunPhase.PENDING,
    "RUNTIME_STATE_UNSPECIFIED": RunPhase.PENDING,
    "RUNNING": RunPhase.RUNNING,
    "PAUSED": RunPhase.RUNNING,
    "CANCELING": RunPhase.TERMINATING,
    "SUCCEEDED": RunPhase.SUCCEEDED,
    "SKIPPED": RunPhase.SUCCEEDED,
    "FAILED": RunPhase.FAILED,
    "CANCELED": RunPhase.FAILED,
}

# Job conditions that tell the outcome before the Job is Complete or Failed (Kubernetes 1.31+).
_OUTCOME_KNOWN = frozenset({"SuccessCriteriaMet", "FailureTarget"})


@dataclass(frozen=True)
class RunState:
    """What a backend says about a run, in PipelineRun terms ("" for a time it did not give)."""

    phase: RunPhase
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    mlflow_run_id: str = ""
    cost: RunCost | None = None


def run_cost(summary: dict[str, Any]) -> RunCost | None:
    """The cost a run's summary reports (``kubeforge run --summary-file``); None without one."""
    cost = summary.get("cost")
    if not isinstance(cost, dict):
        return None
    known = {f.name: f.type for f in fields(RunCost)}
    values: dict[str, Any] = {}
    for key, value in cost.items():
        if key in known and isinstance(value, int | float) and not isinstance(value, bool):
            values[key] = int(value) if "int" in str(known[key]) else float(value)
    return RunCost(**values)


def _summary(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The run summary a finished pod left as its termination message ({} when none)."""
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message", "")
            if message:
                try:
                    parsed = json.loads(message)
                except ValueError:
                    return {"error": message.strip().splitlines()[-1][:500]}
                return parsed if isinstance(parsed, dict) else {}
    return {}


def _not_started(pods: list[dict[str, Any]]) -> str | None:
    """Why the run's pods have not started (the scheduler's word, or ""); None once one has.

    The Job controller counts a pod that waits for a node as active: only the pods tell.
    """
    statuses = [pod.get("status") or {} for pod in pods]
    if not statuses or any(status.get("phase") != "Pending" for status in statuses):
        return None
    for status in statuses:
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return str(cond.get("message") or cond.get("reason") or "")
    return ""


def job_state(job: dict[str, Any], pods: list[dict[str, Any]]) -> RunState:
    """A Job's status (and its pod's termination message) as a PipelineRun state."""
    status = job.get("status", {}) or {}
    conditions = {c["type"]: c for c in status.get("conditions", []) or [] if c["status"] == "True"}
    started = status.get("startTime", "") or ""
    summary = _summary(pods)
    mlflow_run = str(summary.get("mlflow_run_id", ""))
    if "Complete" in conditions:
        finished = status.get("completionTime") or conditions["Complete"].get(
            "lastTransitionTime", ""
        )
        return RunState(
            RunPhase.SUCCEEDED, "the pipeline finished", started, finished, mlflow_run,
            run_cost(summary),
        )  # fmt: skip
    if "Failed" in conditions:
        cond = conditions["Failed"]
        detail = summary.get("error") or cond.get("message") or cond.get("reason", "")
        return RunState(
            RunPhase.FAILED, f"the pipeline failed: {detail}", started,
            cond.get("lastTransitionTime", ""), mlflow_run, run_cost(summary),
        )  # fmt: skip
    waiting = _not_started(pods)
    if waiting is not None and not _OUTCOME_KNOWN & conditions.keys():
        detail = f": {waiting}" if waiting else ""
        return RunState(RunPhase.PENDING, f"waiting for the Job's pod to start{detail}", started)
    # The Job controller states the outcome (SuccessCriteriaMet, FailureTarget) before the
    # terminal condition, which waits for its pods to be gone: the run is still running then.
    counts = ("active", "ready", "succeeded", "failed")
    if any(status.get(count) for count in counts) or _OUTCOME_KNOWN & conditions.keys():
        return RunState(RunPhase.RUNNING, "the pipeline is running", started, "", mlflow_run)
    return RunState(RunPhase.PENDING, "waiting for the Job's pod to start", started)


def kfp_state(state: str, error: str, created_at: str, finished_at: str) -> RunState:
    """A KFP v2beta1 run state as a PipelineRun state."""
    phase = KFP_PHASES.get(state, RunPhase.PENDING)
    message = f"Kubeflow Pipelines run is {state}" + (f": {error}" if error else "")
    return RunState(phase, message, created_at, finished_at if phase in FINISHED else "")
