from __future__ import annotations

from typing import Any

import pytest

from kubeforge.core.errors import KubeforgeError
from kubeforge.pipelines.ir import check_parameters, load_ir, parameters_from_strings

IR = """
pipelineInfo: {name: p}
root:
  inputDefinitions:
    parameters:
      data_uri: {parameterType: STRING}
      epochs: {parameterType: NUMBER_INTEGER, defaultValue: 30.0, isOptional: true}
      rate: {parameterType: NUMBER_DOUBLE, defaultValue: 0.5, isOptional: true}
      quantize: {parameterType: BOOLEAN, defaultValue: false, isOptional: true}
      layers: {parameterType: LIST, defaultValue: [], isOptional: true}
"""


def test_strings_are_typed_as_the_pipeline_declares() -> None:
    ir = load_ir(IR)
    values = parameters_from_strings(
        ir,
        ["data_uri=s3://b/k=v.csv", "epochs=3", "rate=1", "quantize=TRUE", "layers=[1, 2]"],
    )
    assert values == {
        "data_uri": "s3://b/k=v.csv",
        "epochs": 3,
        "rate": 1.0,
        "quantize": True,
        "layers": [1, 2],
    }
    # The typed values are what the JSON checker (PipelineRun spec.parameters) accepts.
    assert check_parameters(ir, values) == values


@pytest.mark.parametrize(
    ("pairs", "message", "parameter"),
    [
        (["data_uri"], "--param 'data_uri' is not key=value", "param"),
        (["data_uri=x", "epochz=3"], "the pipeline has no parameter 'epochz'", "epochz"),
        (["data_uri=x", "epochs=many"], "parameter 'epochs' expects number_integer", "epochs"),
        (["data_uri=x", "epochs=2.5"], "parameter 'epochs' expects number_integer", "epochs"),
        (["data_uri=x", "quantize=yes"], "parameter 'quantize' expects boolean", "quantize"),
        (["data_uri=x", "layers={}"], "parameter 'layers' expects list", "layers"),
        (["epochs=3"], "missing required parameter(s) ['data_uri']", "data_uri"),
    ],
    ids=["no-equals", "unknown", "not-int", "float-for-int", "not-bool", "not-list", "missing"],
)
def test_bad_strings_name_the_parameter(pairs: list[str], message: str, parameter: Any) -> None:
    with pytest.raises(KubeforgeError) as caught:
        parameters_from_strings(load_ir(IR), pairs)
    assert message in str(caught.value)
    assert caught.value.parameter == parameter
