"""What a PipelineRun creates: its Job and IR ConfigMap, their names and labels, its KFP run name.

Pure ``build_*`` functions from the run object and its typed spec; no Kubernetes calls.
May import the controller's ``api/`` models only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kubeforge.operators.pipelineruns.api.models import PipelineRunSpec

RUN_LABEL = "kubeforge.io/pipelinerun"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "kubeforge"
IR_MOUNT = "/etc/kubeforge/pipeline"
IR_KEY = "pipeline.yaml"
SUMMARY_PATH = "/dev/termination-log"


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


def _owner(run: Mapping[str, Any]) -> list[dict[str, Any]]:
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


def _labels(run: Mapping[str, Any]) -> dict[str, str]:
    return {RUN_LABEL: run["metadata"]["name"], MANAGED_LABEL: MANAGER}


def build_ir_configmap(run: Mapping[str, Any], ir_text: str, digest: str) -> dict[str, Any]:
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
    run: Mapping[str, Any],
    spec: PipelineRunSpec,
    values: dict[str, Any],
    image: str,
    tracking_uri: str,
) -> dict[str, Any]:
    """The Kubernetes Job that runs the pipeline in the cluster with the local (kfp.local) runner.

    The pod reads the IR from the run's ConfigMap, tracks to ``tracking_uri`` and leaves its
    summary (MLflow run id, or the error) as its termination message for the operator to read.

    Args:
        run: The PipelineRun object (its metadata names and owns the Job).
        spec: Its parsed spec.
        values: The checked parameter values.
        image: The project image that runs ``kubeforge run``.
        tracking_uri: MLflow tracking URI for the pod ("" for none).
    """
    meta = run["metadata"]
    args = ["run", f"{IR_MOUNT}/{IR_KEY}", *parameter_args(values)]
    args += ["--experiment", spec.experiment, "--summary-file", SUMMARY_PATH]
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
                    "serviceAccountName": spec.serviceAccountName,
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
