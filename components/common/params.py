"""A stage's parameters as one frozen dataclass, and the parsers of parameter strings.

Each parameter is written once: the component signature (``component.py``, what KFP reads) is
the one place with its default and its documentation; a stage's :class:`StageParams` subclass
names the same fields with their types; the stage logs ``asdict(params)`` to MLflow.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from kubeforge.core.errors import KubeforgeError

# Every component takes these besides its stage parameters: where its MLflow run goes.
TRACKING_PARAMETERS = ("mlflow_tracking_uri", "mlflow_parent_run_id")


def component_parameters(component: str) -> dict[str, inspect.Parameter]:
    """The stage parameters a KFP component declares: not its artifacts, not its tracking.

    Args:
        component: ``module:function`` of the ``@dsl.component``.
    """
    module, _, name = component.partition(":")
    func = getattr(importlib.import_module(module), name).python_func
    return {
        p.name: p
        for p in inspect.signature(func).parameters.values()
        if p.annotation in (str, int, float, bool) and p.name not in TRACKING_PARAMETERS
    }


@dataclass(frozen=True)
class StageParams:
    """Base of a stage's parameters: one field per parameter of the stage's component."""

    component: ClassVar[str]  # "module:function" of the component declaring defaults and docs

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> Self:
        """The parameters out of a component's arguments (its ``locals()``; the rest is left)."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls)})

    @classmethod
    def defaults(cls, **changes: Any) -> Self:
        """The component's defaults with ``changes``, for calls outside a pipeline (tests).

        Raises:
            TypeError: The fields and the component's parameters differ, or ``changes`` names
                no field, or a parameter without a default is not given.
        """
        declared = cls.check_component()
        unknown = sorted(set(changes) - set(declared))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
        values = {
            name: p.default for name, p in declared.items() if p.default is not p.empty
        } | changes
        missing = sorted(set(declared) - set(values))
        if missing:
            raise TypeError(f"{cls.__name__} needs {missing}: they have no default")
        return cls.from_arguments(values)

    @classmethod
    def check_component(cls) -> dict[str, inspect.Parameter]:
        """The component's parameters, checked to be exactly this class's fields, typed alike.

        Raises:
            TypeError: A parameter missing on either side, or typed differently.
        """
        declared = component_parameters(cls.component)
        typed = {f.name: f.type for f in fields(cls)}
        if set(declared) != set(typed):
            raise TypeError(
                f"{cls.__name__} fields {sorted(typed)} differ from the parameters of "
                f"{cls.component}: {sorted(declared)}"
            )
        for name, p in declared.items():
            if typed[name] not in (p.annotation, p.annotation.__name__):
                raise TypeError(
                    f"{cls.__name__}.{name} is {typed[name]}, {cls.component} says "
                    f"{p.annotation.__name__}"
                )
        return declared


def parse_hidden(hidden: str) -> list[int]:
    """``"256,256"`` -> ``[256, 256]``."""
    try:
        sizes = [int(s) for s in hidden.split(",") if s.strip()]
    except ValueError as exc:
        raise KubeforgeError(
            f"hidden must be comma-separated integers, got {hidden!r}", "hidden"
        ) from exc
    if not sizes or min(sizes) <= 0:
        raise KubeforgeError(f"hidden must list positive widths, got {hidden!r}", "hidden")
    return sizes


def parse_selector(text: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}``."""
    out = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise KubeforgeError(f"node_selector entry {pair!r} is not key=value", "node_selector")
        out[key] = value
    return out


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_tolerations(text: str) -> list[dict[str, str]]:
    """Tolerations from taints written as ``kubectl taint`` does, comma-separated.

    ``key=value:Effect`` tolerates exactly that taint; ``key:Effect`` any value of the key with
    that effect; ``key=value`` or ``key`` every effect. ``""`` -> ``[]``.
    """
    out = []
    for entry in filter(None, (p.strip() for p in text.split(","))):
        taint, sep, effect = entry.partition(":")
        if sep and effect not in TAINT_EFFECTS:
            raise KubeforgeError(
                f"tolerations entry {entry!r}: the effect must be one of "
                f"{', '.join(TAINT_EFFECTS)}, not {effect!r}",
                "tolerations",
            )
        key, eq, value = taint.partition("=")
        if not key:
            raise KubeforgeError(f"tolerations entry {entry!r} has no key", "tolerations")
        toleration = {"key": key, "operator": "Equal" if eq else "Exists"}
        if eq:
            toleration["value"] = value
        if sep:
            toleration["effect"] = effect
        out.append(toleration)
    return out


def parse_columns(text: str) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``."""
    return tuple(c.strip() for c in text.split(",") if c.strip())
