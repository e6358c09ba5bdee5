"""Ranges and choices of the stage parameters, checked before a pipeline's first task starts.

Light on purpose (no pandas, torch or kfp): the CLI, ``kubeforge submit`` and the operator check
a run's values through :func:`kubeforge.pipelines.ir.check_parameters`, which reads this table.
Names are the pipeline's parameter names; a component parameter the pipeline renames is listed
under both names, so a component called on its own is checked alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FORMATS = ("auto", "csv", "parquet", "jsonl", "images")
"""Values of ingest's ``data_format``."""
TARGETS = ("local", "kserve", "deployment")
"""Values of deploy's ``target`` (the pipeline's ``deploy_target``)."""
BACKENDS = ("local", "pytorchjob", "trainjob")
"""Values of train's ``backend`` (the pipeline's ``train_backend``)."""


@dataclass(frozen=True)
class Constraint:
    """What values a parameter accepts: a numeric range (each end open or closed) or choices.

    Attributes:
        low: Smallest accepted value, or None.
        high: Largest accepted value, or None.
        low_open: ``low`` itself is refused.
        high_open: ``high`` itself is refused.
        choices: The accepted strings; empty for any.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """The accepted values in words: ``in (0, 1]``, ``>= 1``, ``one of a, b``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        return f"{'<' if self.high_open else '<='} {_num(self.high or 0)}"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (already of the parameter's type) is accepted."""
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_SHARE = Constraint(0.0, 1.0, low_open=True, high_open=True)
_PROBABILITY = Constraint(0.0, 1.0)
_POSITIVE = Constraint(0.0, low_open=True)
_AT_LEAST_ONE = Constraint(1.0)
_NOT_NEGATIVE = Constraint(0.0)

CONSTRAINTS: dict[str, Constraint] = {
    # ingest
    "data_format": Constraint(choices=FORMATS),
    "val_fraction": _SHARE,
    "test_fraction": _SHARE,
    "image_size": _AT_LEAST_ONE,
    # label
    "gold_budget": Constraint(0.0, 1.0, low_open=True),
    "confidence_threshold": _PROBABILITY,
    "min_confidence": _PROBABILITY,
    "review_count": _NOT_NEGATIVE,
    # train
    "epochs": _AT_LEAST_ONE,
    "batch_size": _AT_LEAST_ONE,
    "learning_rate": _POSITIVE,
    "weight_decay": _NOT_NEGATIVE,
    "grad_accum_steps": _AT_LEAST_ONE,
    "nproc": _AT_LEAST_ONE,
    "workers": _NOT_NEGATIVE,
    "gpus_per_replica": _NOT_NEGATIVE,
    "backend": Constraint(choices=BACKENDS),
    "train_backend": Constraint(choices=BACKENDS),
    # distill
    "temperature": _POSITIVE,
    "alpha": _PROBABILITY,
    "distill_epochs": _AT_LEAST_ONE,
    "min_retention": Constraint(0.0, 1.0, low_open=True),
    # distill and deploy gates
    "gate_confidence": Constraint(0.5, 1.0, high_open=True),
    # deploy
    "min_accuracy": _PROBABILITY,
    "target": Constraint(choices=TARGETS),
    "deploy_target": Constraint(choices=TARGETS),
}


def constraint_error(name: str, value: Any) -> str | None:
    """Why ``value`` is refused for parameter ``name``; None when accepted or unconstrained."""
    rule = CONSTRAINTS.get(name)
    if rule is None or rule.accepts(value):
        return None
    return f"parameter {name!r} must be {rule.describe()}, got {value!r}"
