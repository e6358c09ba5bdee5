"""A pipeline's parameters built from its components' declared inputs, not written again.

KFP traces a pipeline function through its signature (``inspect.signature``), so the signature
can be assembled: every stage parameter of every component becomes a pipeline parameter of the
same name, type and default, unless the pipeline renames it. Parameters of the same name in
several components (``seed``, ``namespace``, the MLflow ones) are one pipeline parameter; they
must then agree on type and default, or the pipeline must rename one of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# component -> {its parameter: the pipeline parameter feeding it}, for each stage of a pipeline
Renames = Mapping[Any, Mapping[str, str]]
# a component -> its arguments from the pipeline parameters
StageInputs = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class PipelineInput:
    """One pipeline parameter and the component parameters it feeds."""

    name: str
    annotation: Any
    default: Any
    feeds: tuple[tuple[str, str, str], ...]  # (component, its parameter, its description)

    def description(self) -> str:
        """What it is, in the words of the components it feeds (``train.hidden: ...``)."""
        groups: dict[str, list[str]] = {}
        for component, param, text in self.feeds:
            who = component if param == self.name else f"{component}.{param}"
            groups.setdefault(text, []).append(who)
        return " ".join(f"{', '.join(who)}: {text}" for text, who in groups.items())


def pipeline_inputs(stages: Renames) -> dict[str, PipelineInput]:
    """The pipeline parameters of ``stages``, in stage order.

    Raises:
        ValueError: A rename of a parameter the component lacks, or one pipeline parameter
            feeding component parameters of different types or defaults.
    """
    out: dict[str, PipelineInput] = {}
    for component, renames in stages.items():
        declared = _parameters(component)
        unknown = sorted(set(renames) - set(declared))
        if unknown:
            raise ValueError(f"{component.name} has no parameter(s) {unknown} to rename")
        for param in declared.values():
            name = renames.get(param.name, param.name)
            spec = component.component_spec.inputs[param.name]
            feed = (component.name, param.name, " ".join((spec.description or "").split()))
            if name not in out:
                out[name] = PipelineInput(name, param.annotation, param.default, (feed,))
                continue
            known = out[name]
            if (known.annotation, known.default) != (param.annotation, param.default):
                raise ValueError(
                    f"pipeline parameter {name!r} feeds {known.feeds[0][0]} "
                    f"({known.annotation.__name__} = {known.default!r}) and {component.name} "
                    f"({param.annotation.__name__} = {param.default!r}); rename one of them"
                )
            out[name] = PipelineInput(name, known.annotation, known.default, (*known.feeds, feed))
    return out


def pipeline_function(
    stages: Renames, dag: Callable[[StageInputs], None], name: str, summary: str
) -> Callable[..., None]:
    """A function for ``@dsl.pipeline``: its parameters come from ``stages``, its body is ``dag``.

    ``dag`` receives ``inputs``: ``inputs(component)`` gives that component's arguments from
    the pipeline parameters (as ``component(**inputs(component), artifact=...)``).
    """
    inputs = pipeline_inputs(stages)
    # KFP calls the function positionally; parameters without a default must come first.
    ordered = sorted(inputs.values(), key=lambda i: i.default is not inspect.Parameter.empty)
    signature = inspect.Signature(
        [
            inspect.Parameter(
                i.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=i.default,
                annotation=i.annotation,
            )
            for i in ordered
        ]
    )

    def pipeline(*args: Any, **kwargs: Any) -> None:
        values = signature.bind(*args, **kwargs).arguments

        def stage_inputs(component: Any) -> dict[str, Any]:
            renames = stages[component]
            return {p: values[renames.get(p, p)] for p in _parameters(component)}

        dag(stage_inputs)

    pipeline.__signature__ = signature  # type: ignore[attr-defined]
    pipeline.__name__ = pipeline.__qualname__ = name
    args = "\n".join(f"    {i.name}: {i.description()}" for i in ordered)
    pipeline.__doc__ = f"{summary}\n\nArgs:\n{args}\n"
    return pipeline


def _parameters(component: Any) -> dict[str, inspect.Parameter]:
    """A component's parameters (not its artifacts), from the function KFP wrapped."""
    return {
        p.name: p
        for p in inspect.signature(component.python_func).parameters.values()
        if p.annotation in (str, int, float, bool)
    }
