from __future__ import annotations

import secrets
from typing import Any

import pytest

from kubeforge.operators.gpupool.clients.kwok import KwokProvider, ProviderError
from kubeforge.operators.gpupool.core.demand import node_state
from kubeforge.testing.builders import GPU

pytestmark = pytest.mark.cluster


@pytest.fixture
def provider(api_client: Any) -> Any:
    pool = f"pool-{secrets.token_hex(3)}"
    p = KwokProvider(
        api_client,
        pool,
        gpu_resource=GPU,
        gpus_per_node=8,
        gpu_delay_s=60,
        labels={"kubeforge.io/gpu": "h100"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        product="NVIDIA-H100",
    )
    yield p
    for node in p.nodes():
        p.remove(node.metadata.name)


def _states(provider: Any) -> list[Any]:
    nodes = provider._core().list_node(label_selector=f"kubeforge.io/pool={provider.pool}").items
    return [
        node_state(provider.api_client.sanitize_for_serialization(n), [], None, GPU) for n in nodes
    ]


def test_nodes_appear_then_their_gpus_after_the_delay(provider: Any) -> None:
    names = provider.add_nodes(2, now=1000.0)
    assert names == [f"{provider.pool}-0000", f"{provider.pool}-0001"]
    node = provider._core().read_node(names[0])
    assert node.metadata.labels["kubeforge.io/gpu"] == "h100"
    assert node.spec.taints[0].key == "nvidia.com/gpu"
    assert [s.gpu_ready for s in _states(provider)] == [False, False]

    assert provider.advertise_gpus(now=1030.0) == []  # injected clock: still within the delay
    assert sorted(provider.advertise_gpus(now=1061.0)) == names
    states = _states(provider)
    assert all(s.gpu_ready and s.allocatable_gpus == 8 for s in states)

    assert provider.add_nodes(1, now=1100.0) == [f"{provider.pool}-0002"]


def test_removes_exactly_its_own_nodes(provider: Any, api_client: Any) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    foreign = f"foreign-{secrets.token_hex(3)}"
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=foreign)))
    try:
        with pytest.raises(ProviderError, match="not created by kubeforge"):
            provider.remove(foreign)
        assert core.read_node(foreign).metadata.name == foreign
    finally:
        core.delete_node(foreign)
    (name,) = provider.add_nodes(1, now=0.0)
    provider.cordon(name)
    assert core.read_node(name).spec.unschedulable is True
    provider.remove(name)
    assert provider.nodes() == []
