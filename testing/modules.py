"""Upstream Go modules the tests read from the Go module cache: CRDs, kwok's Stages.

The versions are the ones ``hack/controlplane/crds/go.mod`` pins; ``go mod download`` fetches
them once into the module cache.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from kubeforge.testing.controlplane import ControlPlaneError, repo_root

_TRAINING_OPERATOR = "github.com/kubeflow/training-operator"
_CLUSTER_API = "sigs.k8s.io/cluster-api"
CLUSTER_API_CRDS = ("machinedeployments", "machines")


def go_module_dir(module: str) -> Path:
    """Download a Go module pinned by ``hack/controlplane/crds/go.mod`` into the module cache.

    The version is the one that go.mod requires; returns the module's directory.
    """
    moddir = repo_root() / "hack" / "controlplane" / "crds"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    proc = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=moddir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"go mod download {module} failed: {proc.stderr}")
    return Path(json.loads(proc.stdout)["Dir"])


def training_operator_module_dir() -> Path:
    """Download the pinned Kubeflow training-operator module into the Go module cache."""
    return go_module_dir(_TRAINING_OPERATOR)


def cluster_api_crd_paths() -> list[Path]:
    """Paths of the real Cluster API MachineDeployment and Machine CRDs in the module cache."""
    bases = go_module_dir(_CLUSTER_API) / "config" / "crd" / "bases"
    paths = [bases / f"cluster.x-k8s.io_{plural}.yaml" for plural in CLUSTER_API_CRDS]
    for path in paths:
        if not path.is_file():
            raise ControlPlaneError(f"Cluster API CRD not found at {path}")
    return paths


def pytorchjob_crd_path() -> Path:
    """Path of the real PyTorchJob CRD manifest in the Go module cache."""
    path = (
        training_operator_module_dir()
        / "manifests"
        / "base"
        / "crds"
        / "kubeflow.org_pytorchjobs.yaml"
    )
    if not path.is_file():
        raise ControlPlaneError(f"PyTorchJob CRD not found at {path}")
    return path
