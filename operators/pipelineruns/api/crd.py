"""Generate the Pipeline and PipelineRun CRDs from the models (``make crds`` runs this module).

``python -m kubeforge.operators.pipelineruns.api.crd <plural>`` prints one. May import the
models beside it and :mod:`kubeforge.operators.schema`.
"""

from __future__ import annotations

import sys
from typing import Any

from kubeforge.operators import schema
from kubeforge.operators.pipelineruns.api import models

GROUP = "kubeforge.io"
VERSION = "v1alpha1"
PIPELINE = schema.CrdNames(GROUP, VERSION, "Pipeline", "pipelines", "pipeline", ("kfpl",))
RUN = schema.CrdNames(GROUP, VERSION, "PipelineRun", "pipelineruns", "pipelinerun", ("kfrun",))
RULES = schema.SchemaRules(models.REQUIRED, models.VALIDATIONS)
MODULE = "kubeforge.operators.pipelineruns.api.crd"


def build_pipeline_crd() -> dict[str, Any]:
    """The Pipeline CustomResourceDefinition."""
    columns = [
        ("Source", "string", ".spec.source.name"),
        ("Phase", "string", ".status.phase"),
        ("Digest", "string", ".status.digest"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    return schema.build_crd(
        PIPELINE,
        "A pipeline PipelineRuns can run: a Kubeforge pipeline by name, or compiled KFP IR.",
        models.PipelineSpec,
        models.PipelineStatus,
        RULES,
        columns,
    )


def build_run_crd() -> dict[str, Any]:
    """The PipelineRun CustomResourceDefinition."""
    columns = [
        ("Pipeline", "string", ".status.pipelineName"),
        ("Phase", "string", ".status.phase"),
        ("Started", "date", ".status.startedAt"),
        ("Duration", "string", ".status.duration"),
        ("MLflow Run", "string", ".status.mlflowRunId"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    return schema.build_crd(
        RUN,
        "One run of a pipeline, on Kubeflow Pipelines or as a Kubernetes Job.",
        models.PipelineRunSpec,
        models.PipelineRunStatus,
        RULES,
        columns,
        object_rules=[models.RUN_IMMUTABLE],
    )


CRDS = {"pipelines": build_pipeline_crd, "pipelineruns": build_run_crd}


def render(plural: str) -> str:
    """One CRD as YAML, exactly as committed under manifests/crds/."""
    return schema.render(CRDS[plural](), f"{MODULE} {plural}")


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1]))
