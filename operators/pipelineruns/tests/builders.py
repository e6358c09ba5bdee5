"""Builders of the objects the pipeline-run controller's tests use: Pipeline, PipelineRun, and the
pod a finished run leaves behind.

The one test-support module of this controller's tests (kept beside them until the shared
``kubeforge.testing.builders`` exists): tests import builders from here, not from each other.

    pipelinerun("digits-1", ns).pipeline("main").parameters(data_uri="x").obj()
    pipeline("digits", ns).source("main").parameters(epochs=3).obj()
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Self

API_VERSION = "kubeforge.io/v1alpha1"
# The compiled main pipeline, as committed (its golden compile test keeps it current).
MAIN_IR = Path(__file__).parents[3] / "pipelines" / "main" / "main.yaml"


class _ResourceBuilder:
    kind = ""

    def __init__(self, name: str, namespace: str) -> None:
        self._obj: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        }

    def uid(self, uid: str) -> Self:
        """Set ``metadata.uid`` (what the API server would; for tests without one)."""
        self._obj["metadata"]["uid"] = uid
        return self

    def status(self, **status: Any) -> Self:
        """Set ``status`` fields (camelCase, as stored)."""
        self._obj.setdefault("status", {}).update(status)
        return self

    def obj(self) -> dict[str, Any]:
        """The object, as ``kubectl apply`` takes it."""
        return copy.deepcopy(self._obj)

    def json(self) -> str:
        """The object as JSON (``kubectl apply -f -``)."""
        return json.dumps(self._obj)


class PipelineBuilder(_ResourceBuilder):
    """A ``Pipeline``."""

    kind = "Pipeline"

    def source(self, name: str = "", **source: Any) -> PipelineBuilder:
        """``spec.source``: a Kubeforge pipeline by ``name``, or ``ir=`` / ``configMap=``."""
        self._obj["spec"]["source"] = {**({"name": name} if name else {}), **source}
        return self

    def parameters(self, **values: Any) -> PipelineBuilder:
        """Default parameter values."""
        self._obj["spec"]["parameters"] = values
        return self


class PipelineRunBuilder(_ResourceBuilder):
    """A ``PipelineRun``."""

    kind = "PipelineRun"

    def pipeline(self, name: str = "", **source: Any) -> PipelineRunBuilder:
        """``spec.pipeline``, inline: a pipeline by ``name``, or ``ir=`` / ``configMap=`` /
        ``version=``."""
        self._obj["spec"]["pipeline"] = {**({"name": name} if name else {}), **source}
        return self

    def ref(self, pipeline: str) -> PipelineRunBuilder:
        """``spec.pipelineRef``: a Pipeline of the namespace."""
        self._obj["spec"]["pipelineRef"] = {"name": pipeline}
        return self

    def parameters(self, **values: Any) -> PipelineRunBuilder:
        """Parameter values of the run."""
        self._obj["spec"]["parameters"] = values
        return self

    def experiment(self, name: str) -> PipelineRunBuilder:
        self._obj["spec"]["experiment"] = name
        return self

    def service_account(self, name: str) -> PipelineRunBuilder:
        self._obj["spec"]["serviceAccountName"] = name
        return self

    def ttl(self, seconds: int) -> PipelineRunBuilder:
        self._obj["spec"]["ttlSecondsAfterFinished"] = seconds
        return self

    def spec(self, **fields: Any) -> PipelineRunBuilder:
        """Any spec fields as given (e.g. invalid ones the API server must refuse)."""
        self._obj["spec"].update(fields)
        return self


def pipeline(name: str, namespace: str = "default") -> PipelineBuilder:
    """A Pipeline builder."""
    return PipelineBuilder(name, namespace)


def pipelinerun(name: str, namespace: str = "default") -> PipelineRunBuilder:
    """A PipelineRun builder."""
    return PipelineRunBuilder(name, namespace)


def finished_pod(message: str) -> dict[str, Any]:
    """A run's pod whose container terminated with ``message`` (its summary, or its error)."""
    terminated = {"state": {"terminated": {"exitCode": 0, "message": message}}}
    return {"status": {"containerStatuses": [terminated]}}
