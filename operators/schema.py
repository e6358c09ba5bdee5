"""Typed dataclass models → CustomResourceDefinitions: one source of truth for every Kubeforge CRD.

A model field made with :func:`spec_field` carries its description (what ``kubectl explain``
shows) and its validation keywords; :func:`build_crd` turns spec and status models into a CRD.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

Rules = Mapping[type, list[dict[str, str]]]


def spec_field(description: str, default: Any = None, **schema: Any) -> Any:
    """A dataclass field with its OpenAPI description and extra schema keywords."""
    meta = {"description": description, "schema": schema}
    if isinstance(default, list | dict):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


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
    return {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"}}[tp]


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
