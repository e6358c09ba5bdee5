"""Typed dataclass models → CustomResourceDefinitions: one source of truth for every Kubeforge CRD.

A model field made with :func:`spec_field` carries its description (what ``kubectl explain``
shows) and its validation keywords; :func:`build_crd` turns spec and status models into a CRD.
The same models are the parser and the writer: :func:`from_dict` builds them from an object the
API server returns (applying the field defaults, so defaults live only in the models and the CRD
generated from them) and :func:`to_dict` serialises a status model.

Shared by every controller's ``api/`` package; imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

Rules = Mapping[type, list[dict[str, str]]]


def spec_field(description: str, default: Any = None, **schema: Any) -> Any:
    """A dataclass field with its OpenAPI description and extra schema keywords."""
    meta = {"description": description, "schema": schema}
    if isinstance(default, list | dict):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


def _optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); any other type -> (type, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _value(tp: Any, raw: Any, where: str) -> Any:
    tp, optional = _optional(tp)
    if raw is None:
        if optional:
            return None
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # absent: all defaulted
            return from_dict(tp, {}, where)
        raise ValueError(f"{where}: a value is required")
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if origin is dict:
        value = typing.get_args(tp)[1]
        return {k: _value(value, v, f"{where}.{k}") for k, v in raw.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, raw, where)
    if tp is Any:
        return raw
    if tp in (int, float) and not isinstance(raw, bool):
        with contextlib.suppress(TypeError, ValueError):
            return tp(raw)
    elif tp is str:
        return str(raw)
    elif tp is bool and isinstance(raw, bool):
        return raw
    raise ValueError(f"{where}: expected {getattr(tp, '__name__', tp)}, not {raw!r}")


def from_dict(cls: type[T], obj: Mapping[str, Any] | None, where: str = "") -> T:
    """A models dataclass from a resource's dict (e.g. its ``spec``), defaults applied.

    A field missing (or null) in ``obj`` takes the model's default; a missing nested object
    that is not optional is built from its own defaults, as if it were ``{}``; ``X | None``
    stays None. Keys the model does not know are ignored (the API server prunes them anyway).

    Raises:
        ValueError: A value has the wrong type; the message names the field.
    """
    hints = typing.get_type_hints(cls)
    obj = obj or {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        here = f"{where}.{f.name}" if where else f.name
        raw = obj.get(f.name)
        if raw is None:
            if f.default is not dataclasses.MISSING and f.default is not None:
                continue  # the field's own default
            if f.default_factory is not dataclasses.MISSING:
                continue
        values[f.name] = _value(hints[f.name], raw, here)
    return cls(**values)


def to_dict(model: Any) -> dict[str, Any]:
    """A models dataclass as the dict the API server stores; fields that are None are left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if value is not None:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass
class Condition:
    """A status condition."""

    type: str = spec_field("Condition type.", "")
    status: str = spec_field(
        "True, False or Unknown.", "Unknown", enum=["True", "False", "Unknown"]
    )
    reason: str = spec_field("One-word reason in CamelCase.", "")
    message: str = spec_field("What happened, for a person.", "")
    lastTransitionTime: str = spec_field(  # noqa: N815 - Kubernetes field names are camelCase
        "When the status last changed.", "", format="date-time"
    )


@dataclass(frozen=True)
class SchemaRules:
    """Per-model ``required`` lists and CEL ``x-kubernetes-validations``."""

    required: Mapping[type, list[str]] = dataclasses.field(default_factory=dict)
    validations: Rules = dataclasses.field(default_factory=dict)


def _schema_for(tp: Any, rules: SchemaRules) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _schema_for(args[0], rules)
    if origin is list:
        return {"type": "array", "items": _schema_for(typing.get_args(tp)[0], rules)}
    if origin is dict:
        value = typing.get_args(tp)[1]
        if value is Any:  # free-form values (e.g. pipeline parameters): kept as given
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": _schema_for(value, rules)}
    if dataclasses.is_dataclass(tp):
        return object_schema(tp, rules)
    return {
        str: {"type": "string"},
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
    }[tp]


def object_schema(cls: Any, rules: SchemaRules) -> dict[str, Any]:
    """OpenAPI v3 schema of a models dataclass, with descriptions, defaults and CEL rules."""
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        prop = _schema_for(hints[f.name], rules)
        prop["description"] = f.metadata["description"]
        prop.update(f.metadata["schema"])
        if f.default not in (dataclasses.MISSING, None, ""):  # "" means "no default"
            prop["default"] = f.default
        props[f.name] = prop
    schema: dict[str, Any] = {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "properties": props,
    }
    if cls in rules.required:
        schema["required"] = rules.required[cls]
    if cls in rules.validations:
        schema["x-kubernetes-validations"] = rules.validations[cls]
    return schema


@dataclass(frozen=True)
class CrdNames:
    """Group, version and names of a custom resource."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    scope: str = "Namespaced"


def build_crd(
    names: CrdNames,
    description: str,
    spec: type,
    status: type,
    rules: SchemaRules,
    columns: Sequence[tuple[str, str, str]],
    object_rules: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """The CustomResourceDefinition manifest: status subresource, printer columns, schema.

    ``object_rules`` are CEL rules on the whole object (e.g. transition rules comparing the
    spec with ``oldSelf`` once the status says a run started).
    """
    root: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": {
            "apiVersion": {"type": "string", "description": "API version."},
            "kind": {"type": "string", "description": "Kind."},
            "metadata": {"type": "object"},
            "spec": object_schema(spec, rules),
            "status": object_schema(status, rules),
        },
        "required": ["spec"],
    }
    if object_rules:
        root["x-kubernetes-validations"] = list(object_rules)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names.plural}.{names.group}"},
        "spec": {
            "group": names.group,
            "scope": names.scope,
            "names": {
                "kind": names.kind,
                "listKind": f"{names.kind}List",
                "plural": names.plural,
                "singular": names.singular,
                "shortNames": list(names.short_names),
            },
            "versions": [
                {
                    "name": names.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p} for n, t, p in columns
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render(crd: dict[str, Any], module: str) -> str:
    """A CRD as YAML, exactly as committed under manifests/crds/."""
    return f"# Generated by `python -m {module}`; do not edit.\n" + yaml.safe_dump(
        crd, sort_keys=False
    )
