"""The project's pipelines by name."""

from __future__ import annotations

import functools
import importlib
import tempfile
from pathlib import Path
from typing import Any

from kubeforge.core.errors import KubeforgeError
from kubeforge.pipelines.ir import PipelineIR, load_ir

PIPELINES = {"main": "kubeforge.pipelines.main.pipeline:main_pipeline"}


def get_pipeline(name: str) -> Any:
    """The KFP pipeline function registered as ``name``."""
    if name not in PIPELINES:
        raise KubeforgeError(
            f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}", "pipeline"
        )
    module, _, attr = PIPELINES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def compile_pipeline(name: str, path: str) -> None:
    """Compile a pipeline to KFP IR YAML at ``path``."""
    from kfp import compiler

    compiler.Compiler().compile(get_pipeline(name), package_path=path)


@functools.cache
def compiled_text(name: str) -> str:
    """IR YAML of pipeline ``name``, compiled once per process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        compile_pipeline(name, str(path))
        return path.read_text()


def pipeline_ir(name: str) -> PipelineIR:
    """The compiled IR of pipeline ``name``: its text, digest and declared parameters."""
    return load_ir(compiled_text(name), name)
