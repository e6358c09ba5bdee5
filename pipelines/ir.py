"""Compiled KFP pipelines (IR YAML) as data: read one, list its parameters, check values.

Pure functions (no kfp import) and the one parameter type checker, shared by the CLI, the
operator and ``kubeforge submit``: JSON values (a PipelineRun's ``spec.parameters``) go through
:func:`check_parameters`, ``key=value`` strings (``--param``) through
:func:`parameters_from_strings`, which types them by the IR's declarations and then checks them
the same way; a pipeline given by name, as inline IR or from a ConfigMap is checked alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from kubeforge.components.common.constraints import constraint_error
from kubeforge.core.errors import KubeforgeError

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


@dataclass(frozen=True)
class Parameter:
    """One declared input parameter of a pipeline."""

    name: str
    type: str  # a KFP parameterType: STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT
    default: Any = None
    optional: bool = False


@dataclass(frozen=True)
class PipelineIR:
    """A compiled pipeline: its text, name, digest and declared parameters."""

    text: str
    name: str
    digest: str
    parameters: dict[str, Parameter]


def load_ir(text: str, source: str = "pipeline") -> PipelineIR:
    """Parse KFP IR YAML, refusing anything that is not a compiled pipeline.

    Args:
        text: The IR YAML, as written by ``kubeforge compile`` or the KFP compiler.
        source: Where the text came from, named in errors (e.g. ``spec.source.ir``).

    Raises:
        KubeforgeError: Not YAML, or not a KFP pipeline spec (no ``pipelineInfo``/``root``).
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeforgeError(f"{source} is not valid YAML: {exc}", source) from exc
    if not isinstance(doc, dict) or "pipelineInfo" not in doc or "root" not in doc:
        raise KubeforgeError(
            f"{source} is not a compiled KFP pipeline (no pipelineInfo/root); "
            "write it with `kubeforge compile`",
            source,
        )
    declared = doc["root"].get("inputDefinitions", {}).get("parameters", {}) or {}
    params = {
        name: Parameter(
            name,
            str(spec.get("parameterType", "STRING")),
            _typed_default(spec.get("parameterType", "STRING"), spec.get("defaultValue")),
            bool(spec.get("isOptional", "defaultValue" in spec)),
        )
        for name, spec in declared.items()
    }
    return PipelineIR(
        text=text,
        name=str(doc["pipelineInfo"].get("name", "pipeline")),
        digest=hashlib.sha256(text.encode()).hexdigest(),
        parameters=params,
    )


def _typed_default(kind: str, value: Any) -> Any:
    # The IR writes integer defaults as floats (30.0); give them back their declared type.
    if kind == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_parameters(
    ir: PipelineIR,
    values: dict[str, Any],
    field: str = "spec.parameters",
    require_all: bool = True,
) -> dict[str, Any]:
    """Values checked against the declared parameters (JSON types), with integers kept integral.

    Args:
        ir: The pipeline.
        values: Parameter values, as JSON gives them.
        field: The field the values came from, named in errors (``spec.parameters``).
        require_all: Refuse values that leave a required parameter out (False for defaults).

    Returns:
        The values, typed as the pipeline declares them.

    Raises:
        KubeforgeError: An undeclared parameter, a value of the wrong type or outside its range
            or choices (``components.common.constraints``), or a missing required parameter;
            the message and ``parameter`` name the field.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in ir.parameters:
            raise KubeforgeError(
                f"{field}.{key}: pipeline {ir.name!r} has no parameter {key!r}; "
                f"it declares: {', '.join(sorted(ir.parameters))}",
                f"{field}.{key}",
            )
        kind = ir.parameters[key].type
        allowed = _JSON_TYPES.get(kind, (object,))
        integral_float = (
            kind == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer()
        )
        if (
            isinstance(value, bool)
            and kind != "BOOLEAN"
            or not (isinstance(value, allowed) or integral_float)
        ):
            raise KubeforgeError(
                f"{field}.{key}: expects {kind.lower()}, got {type(value).__name__} {value!r}",
                f"{field}.{key}",
            )
        out[key] = int(value) if integral_float else value
        refused = constraint_error(key, out[key])
        if refused is not None:
            raise KubeforgeError(f"{field}.{key}: {refused}", f"{field}.{key}")
    missing = missing_parameters(ir, out)
    if missing and require_all:
        raise KubeforgeError(
            f"{field}: missing required parameter(s) {', '.join(missing)}", f"{field}.{missing[0]}"
        )
    return out


def missing_parameters(ir: PipelineIR, given: Iterable[str]) -> list[str]:
    """The required parameters (no default) that ``given`` leaves out, sorted."""
    names = set(given)
    return sorted(k for k, p in ir.parameters.items() if not p.optional and k not in names)


def parameters_from_strings(ir: PipelineIR, pairs: Iterable[str]) -> dict[str, Any]:
    """Typed values from ``key=value`` strings (``--param``), checked against the pipeline.

    Each value is read as the IR declares its parameter: integers, floats, booleans
    (``true``/``false``/``1``/``0``), JSON for lists and structs, the text itself for strings.

    Raises:
        KubeforgeError: A pair without ``=``, an undeclared parameter, a value not of the declared
            type, or a missing required parameter; ``parameter`` names it (``param`` for a pair
            without ``=``).
    """
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise KubeforgeError(f"--param {pair!r} is not key=value", "param")
        if key not in ir.parameters:
            raise KubeforgeError(
                f"the pipeline has no parameter {key!r}; "
                f"it declares: {', '.join(sorted(ir.parameters))}",
                key,
            )
        kind = ir.parameters[key].type
        try:
            values[key] = _from_string(kind, raw)
        except ValueError as exc:
            raise KubeforgeError(
                f"parameter {key!r} expects {kind.lower()}, got {raw!r}", key
            ) from exc
        refused = constraint_error(key, values[key])
        if refused is not None:
            raise KubeforgeError(refused, key)
    missing = missing_parameters(ir, values)
    if missing:
        raise KubeforgeError(f"missing required parameter(s) {missing}", missing[0])
    return check_parameters(ir, values, "--param")


def _from_string(kind: str, raw: str) -> Any:
    """``raw`` as a value of the KFP parameter type ``kind``; ValueError when it is not one."""
    if kind == "NUMBER_INTEGER":
        return int(raw)
    if kind == "NUMBER_DOUBLE":
        return float(raw)
    if kind == "BOOLEAN":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(raw)
        return raw.lower() in ("true", "1")
    if kind in ("LIST", "STRUCT"):
        value = json.loads(raw)  # json.JSONDecodeError is a ValueError
        if not isinstance(value, _JSON_TYPES[kind]):
            raise ValueError(raw)
        return value
    return raw


def task_order(ir: PipelineIR) -> list[str]:
    """The pipeline's top-level tasks, each after the tasks it depends on (ties by name)."""
    doc = yaml.safe_load(ir.text)
    tasks = doc["root"].get("dag", {}).get("tasks", {}) or {}
    after = {name: set(spec.get("dependentTasks", []) or []) for name, spec in tasks.items()}
    order: list[str] = []
    while after:
        ready = sorted(name for name, needs in after.items() if needs <= set(order))
        if not ready:  # a cycle cannot compile; keep the rest in name order all the same
            ready = sorted(after)
        order += ready
        for name in ready:
            del after[name]
    return order
