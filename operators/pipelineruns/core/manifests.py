"""Pure decisions of the pipeline-run controller: what to create, and what a backend's state means.

Manifests come from ``build_*`` functions; a backend's state becomes a :class:`RunState`.
No Kubernetes calls, no clock (``now`` is passed in).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

RUN_LABEL = "kubeforge.io/pipelinerun"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "kubeforge"
IR_MOUNT = "/etc/kubeforge/pipeline"
IR_KEY = "pipeline.yaml"
SUMMARY_PATH = "/dev/termination-log"
FINAL = ("Succeeded", "Failed")

KFP_PHASES = {
    "PENDING": "Pending",
    "RUNTIME_STATE_UNSPECIFIED": "Pending",
    "RUNNING": "Running",
    "PAUSED": "Running",
    "CANCELING": "Terminating",
    "SUCCEEDED": "Succeeded",
    "SKIPPED": "Succeeded",
    "FAILED": "Failed",
    "CANCELED": "Failed",
}


@dataclass(frozen=True)
class RunState:
    """What a backend says about a run, in PipelineRun terms."""

    phase: str
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    mlflow_run_id: str = ""


def resource_name(run_name: str, suffix: str = "") -> str:
    """A DNS-1123 name for an object the run owns (Job, ConfigMap), at most 63 characters."""
    base = re.sub(r"[^a-z0-9-]", "-", run_name.lower()).strip("-")
    return f"{base[: 63 - len(suffix)]}{suffix}".strip("-")


def kfp_display_name(namespace: str, name: str, uid: str) -> str:
    """The KFP run's display name: unique per PipelineRun object, so a retry adopts the run."""
    return f"{namespace}.{name}.{uid[:8]}"


def parameter_args(values: dict[str, Any]) -> list[str]:
    """``kubeforge run`` arguments for typed parameter values (``-p key=value``)."""
    args: list[str] = []
    for key in sorted(values):
        value = values[key]
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = str(value)
        args += ["-p", f"{key}={text}"]
    return args


def _owner(run: dict[str, Any]) -> list[dict[str, Any]]:
    meta = run["metadata"]
    return [
        {
            "apiVersion": run.get("apiVersion", "kubeforge.io/v1alpha1"),
            "kind": run.get("kind", "PipelineRun"),
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _labels(run: dict[str, Any]) -> dict[str, str]:
    return {RUN_LABEL: run["metadata"]["name"], MANAGED_LABEL: MANAGER}


def build_ir_configmap(run: dict[str, Any], ir_text: str, digest: str) -> dict[str, Any]:
    """The ConfigMap holding the exact IR the run executes (kept with the run, for the record)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": resource_name(run["metadata"]["name"], "-ir"),
            "namespace": run["metadata"]["namespace"],
            "labels": _labels(run),
            "annotations": {"kubeforge.io/ir-digest": digest},
            "ownerReferences": _owner(run),
        },
        "data": {IR_KEY: ir_text},
    }


def build_job(
    run: dict[str, Any],
    values: dict[str, Any],
    image: str,
    tracking_uri: str,
) -> dict[str, Any]:
    """The Kubernetes Job that runs the pipeline in the cluster with the local (kfp.local) runner.

    The pod reads the IR from the run's ConfigMap, tracks to ``tracking_uri`` and leaves its
    summary (MLflow run id, or the error) as its termination message for the operator to read.
    """
    spec = run["spec"]
    meta = run["metadata"]
    args = ["run", f"{IR_MOUNT}/{IR_KEY}", *parameter_args(values)]
    args += ["--experiment", spec.get("experiment", "kubeforge"), "--summary-file", SUMMARY_PATH]
    env = [
        {"name": "KUBEFORGE_HOME", "value": "/tmp/kubeforge"},
        {"name": "KUBEFORGE_PIPELINERUN", "value": f"{meta['namespace']}/{meta['name']}"},
    ]
    if tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": resource_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": _labels(run),
            "ownerReferences": _owner(run),
        },
        "spec": {
            "backoffLimit": 0,  # a pipeline run is tried once; a new PipelineRun retries
            "template": {
                "metadata": {"labels": _labels(run)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": spec.get("serviceAccountName", "default"),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "pipeline",
                            "image": image,
                            "command": ["kubeforge"],
                            "args": args,
                            "env": env,
                            "terminationMessagePath": SUMMARY_PATH,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "pipeline", "mountPath": IR_MOUNT, "readOnly": True},
                                {"name": "work", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "pipeline",
                            "configMap": {"name": resource_name(meta["name"], "-ir")},
                        },
                        {"name": "work", "emptyDir": {}},
                    ],
                },
            },
        },
    }


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
        return RunState("Succeeded", "the pipeline finished", started, finished, mlflow_run)
    if "Failed" in conditions:
        cond = conditions["Failed"]
        detail = summary.get("error") or cond.get("message") or cond.get("reason", "")
        return RunState(
            "Failed", f"the pipeline failed: {detail}", started, cond.get("lastTransitionTime", ""),
            mlflow_run,
        )  # fmt: skip
    if status.get("active") or status.get("ready"):
        return RunState("Running", "the pipeline is running", started, "", mlflow_run)
    return RunState("Pending", "waiting for the Job's pod to start", started)


def kfp_state(state: str, error: str, created_at: str, finished_at: str) -> RunState:
    """A KFP v2beta1 run state as a PipelineRun state."""
    phase = KFP_PHASES.get(state, "Pending")
    message = f"Kubeflow Pipelines run is {state}" + (f": {error}" if error else "")
    return RunState(phase, message, created_at, finished_at if phase in FINAL else "")


def parse_time(stamp: str) -> dt.datetime | None:
    """An RFC 3339 time from the API server, or None."""
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def duration(started_at: str, finished_at: str, now: dt.datetime) -> str:
    """``3m12s``-style time from start to finish (or to ``now`` while running)."""
    start = parse_time(started_at)
    if start is None:
        return ""
    end = parse_time(finished_at) or now
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def expired(finished_at: str, ttl_seconds: int | None, now: dt.datetime) -> bool:
    """The run finished more than ``ttlSecondsAfterFinished`` ago."""
    end = parse_time(finished_at)
    return (
        ttl_seconds is not None and end is not None and (now - end).total_seconds() >= ttl_seconds
    )
