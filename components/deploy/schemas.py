"""Request bodies of the KServe V1 and Open Inference Protocol (V2) routes, checked by pydantic.

Every number must be a finite JSON number (``NaN``, ``Infinity``, ``null``, ``1e400``, strings and
booleans are refused), and every refusal is one :class:`BadRequest` naming the field that is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]

# The element types the V2 protocol defines for numbers; BYTES and BOOL are no features.
NumericDatatype = Literal[
    "FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"
]

# Union branch tags that pydantic puts into error locations; they are no field names.
_TAGS = {"flat", "rows"}


class BadRequest(Exception):
    """A request the server refuses: the HTTP status and one line that names the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class V1Request(BaseModel):
    """KServe V1 ``:predict`` body: ``{"instances": [[x, ...], ...]}``."""

    model_config = ConfigDict(extra="ignore")

    instances: list[list[FiniteNumber]]


def _data_kind(value: Any) -> str:
    return "rows" if isinstance(value, list) and value and isinstance(value[0], list) else "flat"


# The V2 spec allows a tensor's data flat (row-major) or in its natural nested form.
TensorData = Annotated[
    Annotated[list[FiniteNumber], Tag("flat")] | Annotated[list[list[FiniteNumber]], Tag("rows")],
    Discriminator(_data_kind),
]


class V2Tensor(BaseModel):
    """One input tensor of a V2 ``infer`` request."""

    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[Annotated[int, Field(strict=True, ge=0)]]
    datatype: NumericDatatype
    data: TensorData
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(BaseModel):
    """An output a V2 client asks for by name."""

    model_config = ConfigDict(extra="ignore")

    name: str


class V2Request(BaseModel):
    """Open Inference Protocol (KServe V2) ``infer`` body."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2RequestedOutput] | None = None


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a JSON path: ``inputs[0].data[3]``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in _TAGS:
            path += f".{part}" if path else part
    return path


def explain(exc: ValidationError) -> BadRequest:
    """The first validation error as one line that names the field."""
    error = exc.errors(include_url=False)[0]
    kind, loc, msg = error["type"], error["loc"], error["msg"]
    if kind == "json_invalid":
        return BadRequest(f"the body is not valid JSON: {error['ctx']['error']}")
    if not loc:
        return BadRequest(f"the body must be a JSON object, not {_json_kind(error.get('input'))}")
    path = field_path(loc)
    if kind == "missing":
        return BadRequest(f"{path} is missing")
    if kind in ("float_type", "finite_number"):
        return BadRequest(f"{path} must be a finite number, not {_shown(error.get('input'))}")
    return BadRequest(f"{path}: {msg}")


def parse_v1(body: bytes) -> V1Request:
    """A checked V1 body, or :class:`BadRequest`."""
    try:
        return V1Request.model_validate_json(body)
    except ValidationError as exc:
        raise explain(exc) from None


def parse_v2(body: bytes) -> V2Request:
    """A checked V2 body, or :class:`BadRequest`."""
    try:
        return V2Request.model_validate_json(body)
    except ValidationError as exc:
        raise explain(exc) from None


def rows_matrix(rows: list[list[float]], n_features: int, field: str) -> np.ndarray:
    """Rows of numbers as a float32 matrix of ``n_features`` columns, or :class:`BadRequest`."""
    if not rows:
        raise BadRequest(f"{field} is empty: send at least one row of {n_features} numbers")
    for i, row in enumerate(rows):
        if len(row) != n_features:
            raise BadRequest(
                f"{field}[{i}] has {len(row)} numbers; the model takes rows of {n_features} numbers"
            )
    return finite_float32(np.asarray(rows, dtype=np.float64), field)


def v2_matrix(request: V2Request, n_features: int) -> np.ndarray:
    """The one input tensor of a V2 request as a float32 ``[N, n_features]`` matrix."""
    if len(request.inputs) != 1:
        raise BadRequest(
            f"inputs holds {len(request.inputs)} tensors; the model takes exactly one,"
            f" of shape [N, {n_features}]"
        )
    tensor = request.inputs[0]
    shape = tensor.shape
    if len(shape) != 2 or shape[1] != n_features:
        raise BadRequest(f"inputs[0].shape is {shape}; the model takes [N, {n_features}]")
    if shape[0] == 0:
        raise BadRequest(f"inputs[0].shape is {shape}: send at least one row")
    data = tensor.data
    if data and isinstance(data[0], list):
        if len(data) != shape[0]:
            raise BadRequest(
                f"inputs[0].data has {len(data)} rows; inputs[0].shape says {shape[0]}"
            )
        return rows_matrix(data, n_features, "inputs[0].data")
    if len(data) != shape[0] * shape[1]:
        raise BadRequest(
            f"inputs[0].data has {len(data)} numbers; inputs[0].shape {shape} needs"
            f" {shape[0] * shape[1]}"
        )
    flat = np.asarray(data, dtype=np.float64).reshape(shape[0], shape[1])
    return finite_float32(flat, "inputs[0].data")


def finite_float32(x: np.ndarray, field: str) -> np.ndarray:
    """``x`` as float32, refusing numbers that float32 cannot hold (they would become inf)."""
    limit = float(np.finfo(np.float32).max)
    too_big = np.abs(x) > limit
    if too_big.any():
        i, j = (int(v) for v in np.argwhere(too_big)[0])
        raise BadRequest(
            f"{field}[{i}][{j}] is {x[i, j]:g}, beyond the float32 range of +/-{limit:g}"
        )
    return x.astype(np.float32)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _json_kind(value)
