"""Fixtures of the pipeline-run controller's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeforge.operators.pipelineruns.api.crd import CRDS
from kubeforge.testing.fixtures import Kubectl, wait_for_crd

CRD_DIR = Path(__file__).parents[3] / "manifests" / "crds"


@pytest.fixture
def pipeline_crds(kubectl: Kubectl, api_client: Any) -> None:
    """The Pipeline and PipelineRun CRDs, applied from manifests/crds and established."""
    for plural in sorted(CRDS):
        kubectl("apply", "--server-side", "-f", str(CRD_DIR / f"kubeforge.io_{plural}.yaml"))
        wait_for_crd(api_client, f"{plural}.kubeforge.io")
