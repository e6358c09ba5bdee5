"""The modules every controller shares: models as parser, settings, clock."""

from __future__ import annotations

import pytest

from kubeforge.operators.clock import ManualClock, parse_rfc3339, rfc3339
from kubeforge.operators.gpupool.api.models import GPUNodePoolSpec, GPUNodePoolStatus, Taint
from kubeforge.operators.schema import from_dict, to_dict
from kubeforge.operators.settings import OperatorSettings, SettingsError


def test_a_spec_is_built_with_the_model_defaults_where_fields_are_missing() -> None:
    spec = from_dict(
        GPUNodePoolSpec,
        {
            "gpu": {"perNode": 4},
            "provider": {"kwok": {}},
            "scaling": {"maxNodes": 3},
            "nodeTemplate": {"taints": [{"key": "gpu"}]},
        },
    )
    assert spec.gpu.perNode == 4 and spec.gpu.resourceName == "nvidia.com/gpu"
    assert (spec.scaling.maxNodes, spec.scaling.minNodes) == (3, 0)
    assert spec.scaleDown.idleAfter == "10m"  # a missing object: all its defaults
    assert spec.provider.kwok is not None and spec.provider.clusterAPI is None
    assert spec.nodeTemplate.taints == [Taint("gpu", "", "NoSchedule")]
    assert spec.mode == "Enforce"


def test_a_wrong_type_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"scaling\.maxNodes"):
        from_dict(GPUNodePoolSpec, {"scaling": {"maxNodes": "many"}})


def test_a_status_round_trips_and_leaves_unset_times_out() -> None:
    status = from_dict(GPUNodePoolStatus, {"desiredNodes": 2, "jobs": [{"job": "ml/a"}]})
    out = to_dict(status)
    assert out["desiredNodes"] == 2 and out["jobs"][0]["job"] == "ml/a"
    assert "lastScaleUpTime" not in out
    assert to_dict(from_dict(GPUNodePoolStatus, out)) == out


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUBEFORGE_PEERING_LIFETIME": "2"}, "must be at least 5 s, not 2"),
        ({"KUBEFORGE_PEERING_LIFETIME": "soon"}, "must be whole seconds"),
        ({"KUBEFORGE_METRICS_PORT": "http"}, "KUBEFORGE_METRICS_PORT must be a number"),
    ],
    ids=["short-lifetime", "lifetime-not-seconds", "port-not-a-number"],
)
def test_bad_settings_are_refused_with_the_variable_named(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        OperatorSettings.from_env(env)


def test_settings_come_from_the_environment_or_their_defaults() -> None:
    settings = OperatorSettings.from_env(
        {"KUBEFORGE_RECONCILE_INTERVAL": "1", "KUBEFORGE_PEERING_LIFETIME": "10"}
    )
    assert settings.pool_interval_s == 1.0 and settings.peering_lifetime_s == 10
    assert settings.run_interval_s == 10.0 and settings.metrics_port == 8080


def test_the_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0 and clock.advance(5) == 105.0 == clock.now()
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert parse_rfc3339(rfc3339(1_700_000_000.7)) == 1_700_000_000.0
