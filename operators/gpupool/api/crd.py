"""Generate the GPUNodePool CRD from the typed models (``python -m ...gpupool.api.crd``)."""

from __future__ import annotations

import sys
from typing import Any

from kubeforge.operators import schema
from kubeforge.operators.gpupool.api import models

GROUP = "kubeforge.io"
VERSION = "v1alpha1"
KIND = "GPUNodePool"
PLURAL = "gpunodepools"
NAMES = schema.CrdNames(GROUP, VERSION, KIND, PLURAL, "gpunodepool", ("gpool",), scope="Cluster")
RULES = schema.SchemaRules(models.REQUIRED, models.VALIDATIONS)


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    columns = [
        ("GPU", "string", ".spec.gpu.product"),
        ("Ready", "integer", ".status.readyNodes"),
        ("Desired", "integer", ".status.desiredNodes"),
        ("Allocated", "integer", ".status.gpusAllocated"),
        ("Allocatable", "integer", ".status.gpusAllocatable"),
        ("Pending Jobs", "integer", ".status.pendingJobs"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    return schema.build_crd(
        NAMES,
        "A pool of GPU nodes scaled for whole PyTorchJobs.",
        models.GPUNodePoolSpec,
        models.GPUNodePoolStatus,
        RULES,
        columns,
    )


def render() -> str:
    """The CRD as YAML, exactly as committed under manifests/crds/."""
    return schema.render(build_crd(), "kubeforge.operators.gpupool.api.crd")


if __name__ == "__main__":
    sys.stdout.write(render())
