"""Typed spec and status of ``Pipeline`` and ``PipelineRun`` (kubeforge.io/v1alpha1).

The single source of truth of both CRDs (:mod:`kubeforge.operators.pipelineruns.api.crd`) and
the parser of the objects the operator reads (:func:`kubeforge.operators.schema.from_dict`):
spec defaults live here and nowhere else. A status field left None is not written, so a status
model doubles as the merge patch a reconcile sends.

May import :mod:`kubeforge.operators.schema` and the pipeline registry; nothing of the
controller's other layers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from kubeforge.operators.schema import Condition, spec_field
from kubeforge.pipelines.registry import PIPELINES


def _observed_generation() -> Any:
    """``status.observedGeneration``: 0 by default in the CRD, None (not written) in a patch."""
    description = "Spec generation this status describes."
    return field(default=None, metadata={"description": description, "schema": {"default": 0}})


class PipelinePhase(enum.StrEnum):
    """``status.phase`` of a Pipeline."""

    READY = "Ready"
    FAILED = "Failed"


class RunPhase(enum.StrEnum):
    """``status.phase`` of a PipelineRun."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"


FINISHED = (RunPhase.SUCCEEDED, RunPhase.FAILED)


class Backend(enum.StrEnum):
    """``status.backend``: where a started PipelineRun executes."""

    KFP = "kfp"
    JOB = "job"


@dataclass
class ConfigMapSource:
    """Compiled KFP IR YAML kept in a ConfigMap of the same namespace."""

    name: str = spec_field("Name of the ConfigMap.", "", minLength=1)
    key: str = spec_field("Key whose value is the IR YAML.", "pipeline.yaml", minLength=1)


@dataclass
class PipelineSource:
    """What runs: exactly one of a Kubeforge pipeline by name, inline IR, or IR in a ConfigMap."""

    name: str = spec_field(
        "One of Kubeforge's own pipelines, by name (compiled by the operator).",
        "",
        enum=sorted(PIPELINES),
    )
    version: str = spec_field(
        "Kubeforge version the named pipeline must come from; empty for the operator's own.", ""
    )
    ir: str = spec_field(
        "Compiled KFP IR YAML, inline (the output of `kubeforge compile`).", "", minLength=1
    )
    configMap: ConfigMapSource | None = spec_field(  # noqa: N815 - Kubernetes field names
        "Compiled KFP IR YAML read from a ConfigMap.", None
    )


@dataclass
class PipelineSpec:
    """A pipeline that PipelineRuns reference by name."""

    source: PipelineSource = spec_field("The pipeline.", None)
    parameters: dict[str, Any] = spec_field(
        "Default parameter values; a run's own values override them.", {}
    )
    description: str = spec_field("What the pipeline is for.", "")


@dataclass
class DeclaredParameter:
    """An input parameter the pipeline declares."""

    name: str = spec_field("Parameter name.", "")
    type: str = spec_field("KFP parameter type, e.g. STRING or NUMBER_INTEGER.", "")
    required: bool = spec_field("True when the pipeline has no default for it.", False)


@dataclass
class PipelineStatus:
    """What the operator found when it read the pipeline."""

    observedGeneration: int | None = _observed_generation()  # noqa: N815
    phase: str | None = spec_field("Ready or Failed.", None, enum=[p.value for p in PipelinePhase])
    pipelineName: str | None = spec_field("Name inside the compiled IR.", None)  # noqa: N815
    digest: str | None = spec_field("sha256 of the compiled IR.", None)
    parameters: list[DeclaredParameter] | None = spec_field(
        "Parameters the pipeline declares.", None
    )
    message: str | None = spec_field("Why the pipeline cannot be used, when it cannot.", None)
    conditions: list[Condition] | None = spec_field("Current conditions (Ready).", None)


@dataclass
class PipelineRef:
    """A Pipeline in the run's namespace."""

    name: str = spec_field("Name of the Pipeline.", "", minLength=1)


@dataclass
class PipelineRunSpec:
    """One run of a pipeline; immutable once started (create a new PipelineRun instead)."""

    pipelineRef: PipelineRef | None = spec_field(  # noqa: N815
        "The Pipeline to run (one of pipelineRef or pipeline).", None
    )
    pipeline: PipelineSource | None = spec_field(
        "The pipeline to run, given inline (one of pipelineRef or pipeline).", None
    )
    parameters: dict[str, Any] = spec_field(
        "Parameter values, checked against what the pipeline declares.", {}
    )
    experiment: str = spec_field(
        "Experiment of the run (MLflow, and the Kubeflow Pipelines UI).", "kubeforge", minLength=1
    )
    serviceAccountName: str = spec_field(  # noqa: N815
        "Service account the run's pods use.", "default", minLength=1
    )
    ttlSecondsAfterFinished: int | None = spec_field(  # noqa: N815
        "Delete the PipelineRun (and its Job or KFP run record) this long after it finished.",
        None,
        minimum=0,
    )


@dataclass
class RunCost:
    """What a finished run cost, as its summary reports it: labels spent and compute."""

    goldRows: int | None = spec_field(  # noqa: N815
        "Rows whose true labels the label stage used (the gold set).", None
    )
    humanLabelledRows: int | None = spec_field(  # noqa: N815
        "Rows labelled by people (a Label Studio export merged in).", None
    )
    cpuSeconds: float | None = spec_field(  # noqa: N815
        "CPU seconds of all stages (each task's process and its children).", None
    )
    gpuSeconds: float | None = spec_field(  # noqa: N815
        "GPU seconds of the stages that used a GPU in their own process.", None
    )
    wallSeconds: float | None = spec_field(  # noqa: N815
        "Wall-clock seconds of the pipeline.", None
    )
    gpuHoursHeld: float | None = spec_field(  # noqa: N815
        "GPU-hours the training PyTorchJob or TrainJob held on the cluster: GPUs requested x time"
        " from binding to a node until the containers ended (cluster training only).",
        None,
    )


@dataclass
class PipelineRunStatus:
    """Where the run is, mirrored from its backend."""

    observedGeneration: int | None = _observed_generation()  # noqa: N815
    phase: str | None = spec_field(
        "Pending, Running, Succeeded, Failed or Terminating.",
        None,
        enum=[p.value for p in RunPhase],
    )
    backend: str | None = spec_field(
        "Where the run executes: kfp (Kubeflow Pipelines) or job (a Kubernetes Job); set once "
        "the run started, after which the spec cannot change.",
        None,
        enum=[b.value for b in Backend],
    )
    pipelineName: str | None = spec_field("Name inside the compiled IR.", None)  # noqa: N815
    digest: str | None = spec_field("sha256 of the compiled IR the run uses.", None)
    jobName: str | None = spec_field(  # noqa: N815
        "The Kubernetes Job of the run (job backend).", None
    )
    kfpRunId: str | None = spec_field(  # noqa: N815
        "The Kubeflow Pipelines run id (kfp backend).", None
    )
    url: str | None = spec_field("Where to watch the run (the Kubeflow UI).", None)
    mlflowRunId: str | None = spec_field("The run's MLflow run.", None)  # noqa: N815
    startedAt: str | None = spec_field(  # noqa: N815
        "When the run started.", None, format="date-time"
    )
    finishedAt: str | None = spec_field(  # noqa: N815
        "When the run finished.", None, format="date-time"
    )
    duration: str | None = spec_field("How long the run took (or has taken), e.g. 3m12s.", None)
    message: str | None = spec_field("The last thing that happened, for a person.", None)
    cost: RunCost | None = spec_field(
        "What the run cost (labels spent, CPU/GPU seconds, wall time), once it finished.", None
    )
    conditions: list[Condition] | None = spec_field("Current conditions (Started, Failed).", None)


REQUIRED: dict[type, list[str]] = {
    PipelineSpec: ["source"],
    PipelineRef: ["name"],
    ConfigMapSource: ["name"],
}

VALIDATIONS: dict[type, list[dict[str, str]]] = {
    PipelineSource: [
        {
            "rule": "[has(self.name), has(self.ir), has(self.configMap)].filter(x, x).size() == 1",
            "message": "set exactly one of name, ir, configMap",
        },
        {"rule": "!has(self.version) || has(self.name)", "message": "version needs name"},
    ],
    PipelineRunSpec: [
        {
            "rule": "has(self.pipelineRef) != has(self.pipeline)",
            "message": "set exactly one of pipelineRef or pipeline",
        }
    ],
}

RUN_IMMUTABLE = {
    "rule": "!has(oldSelf.status) || !has(oldSelf.status.backend) || self.spec == oldSelf.spec",
    "message": "the spec of a started PipelineRun cannot change: create a new PipelineRun",
}
