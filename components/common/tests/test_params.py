# No `from __future__ import annotations`: KFP reads the component's annotations as types.
from dataclasses import dataclass

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input

from kubeforge.components.common.params import (
    StageParams,
    parse_columns,
    parse_hidden,
    parse_selector,
    parse_tolerations,
)
from kubeforge.core.config import IMAGE
from kubeforge.core.errors import KubeforgeError


@pytest.mark.parametrize(
    ("text", "parameter"), [("", "hidden"), ("64,x", "hidden"), ("0", "hidden")], ids=str
)
def test_bad_hidden_sizes(text: str, parameter: str) -> None:
    with pytest.raises(KubeforgeError) as excinfo:
        parse_hidden(text)
    assert excinfo.value.parameter == parameter


def test_node_selector_parsing() -> None:
    assert parse_selector("pool=a100, zone=z1") == {"pool": "a100", "zone": "z1"}
    with pytest.raises(KubeforgeError):
        parse_selector("novalue")


def test_tolerations_are_parsed_from_taints_written_as_kubectl_taint_does() -> None:
    assert parse_tolerations("") == []
    assert parse_tolerations("nvidia.com/gpu=present:NoSchedule, spot:NoExecute,dedicated") == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
        {"key": "dedicated", "operator": "Exists"},
    ]
    for bad, words in (("gpu:Never", "effect must be one of"), ("=x:NoSchedule", "has no key")):
        with pytest.raises(KubeforgeError, match=words) as excinfo:
            parse_tolerations(bad)
        assert excinfo.value.parameter == "tolerations"


def test_column_list_parsing() -> None:
    assert parse_columns(" a, b,,") == ("a", "b")
    assert parse_columns("") == ()


@dsl.component(base_image=IMAGE, install_kfp_package=False)  # type: ignore[untyped-decorator]
def _sizes(
    data: Input[Dataset], size: int = 3, name: str = "x", mlflow_tracking_uri: str = ""
) -> None:
    pass


@dataclass(frozen=True)
class _SizesParams(StageParams):
    component = "kubeforge.components.common.tests.test_params:_sizes"

    size: int
    name: str


@dataclass(frozen=True)
class _NoName(StageParams):
    component = _SizesParams.component

    size: int


@dataclass(frozen=True)
class _WrongType(StageParams):
    component = _SizesParams.component

    size: float
    name: str


def test_params_take_their_defaults_from_the_component_signature() -> None:
    assert _SizesParams.defaults() == _SizesParams(size=3, name="x")
    assert _SizesParams.defaults(size=5).size == 5
    with pytest.raises(TypeError, match="no field"):
        _SizesParams.defaults(sise=5)


@pytest.mark.parametrize("params", [_NoName, _WrongType], ids=["missing", "type"])
def test_params_that_differ_from_their_component_are_refused(params: type[StageParams]) -> None:
    with pytest.raises(TypeError, match=r"differ|says"):
        params.defaults()
