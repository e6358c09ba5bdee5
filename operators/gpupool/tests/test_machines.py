"""Cluster API bookkeeping: a MachineDeployment's replicas and Machines as pool members."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge.operators.gpupool.core.machines import (
    DELETE_MACHINE,
    MARKED_AT_GENERATION,
    SCALED_UP_AT,
    interrupted_removal,
    machine_members,
)
from kubeforge.operators.gpupool.core.members import PoolMember
from kubeforge.testing import builders
from kubeforge.testing.builders import machine_deployment

T0 = "2026-11-23T10:00:00Z"
T0_S = 1795428000.0  # T0 in seconds since the epoch


def deployment(replicas: int, scaled_at: str = "") -> dict[str, Any]:
    md = machine_deployment("gpu-md").replicas(replicas).created(T0)
    if scaled_at:
        md.annotated(**{SCALED_UP_AT: scaled_at})
    return md.obj()


def machine(
    name: str, node: str = "", marked: bool = False, deleting: bool = False
) -> dict[str, Any]:
    built = builders.machine(name, machine_deployment("gpu-md")).created(T0)
    if node:
        built.node(node)
    if marked:
        built.annotated(**{DELETE_MACHINE: "yes"})
    if deleting:
        built.deleting(T0)
    return built.obj()


def names(members: list[PoolMember]) -> list[tuple[str, bool]]:
    return [(m.name, m.leaving) for m in members]


@pytest.mark.parametrize(
    ("replicas", "machines", "nodes", "expected"),
    [
        pytest.param(0, [], [], [], id="empty"),
        pytest.param(
            2,
            [],
            [],
            [("gpu-md/requested-0", False), ("gpu-md/requested-1", False)],
            id="replicas-without-machines-are-in-flight",
        ),
        pytest.param(
            2,
            [machine("m-a", "n-a"), machine("m-b")],
            ["n-a"],
            [("n-a", False), ("machine/m-b", False)],
            id="node-by-nodeRef-and-machine-without-node",
        ),
        pytest.param(
            1,
            [machine("m-a", "n-a"), machine("m-b", "n-b", marked=True)],
            ["n-a", "n-b"],
            [("n-a", False), ("n-b", True)],
            id="marked-machine-is-leaving-not-capacity",
        ),
        pytest.param(
            2,
            [machine("m-a", "n-a"), machine("m-b", "n-b", marked=True)],
            ["n-a", "n-b"],
            [("n-a", False), ("n-b", True), ("gpu-md/requested-0", False)],
            id="marked-before-decrement-leaves-a-replacement-in-flight",
        ),
        pytest.param(
            1,
            [machine("m-a", "n-a", deleting=True)],
            ["n-a"],
            [("n-a", True), ("gpu-md/requested-0", False)],
            id="deleting-machine-is-leaving",
        ),
        pytest.param(
            1,
            [machine("m-a", "gone")],
            [],
            [("machine/m-a", False)],
            id="nodeRef-to-a-missing-node-counts-as-no-node",
        ),
    ],
)
def test_machine_members(
    replicas: int, machines: list[Any], nodes: list[str], expected: list[tuple[str, bool]]
) -> None:
    members = machine_members(
        deployment(replicas), machines, {n: builders.node(n).obj() for n in nodes}
    )
    assert names(members) == expected


def test_requested_replicas_date_from_the_last_scale_up_else_the_deployment() -> None:
    (fresh,) = machine_members(deployment(1, scaled_at="42.500"), [], {})
    assert fresh.requested_at == 42.5
    (old,) = machine_members(deployment(1), [], {})
    assert old.requested_at == T0_S


def _marked_at(name: str, generation: str) -> dict[str, Any]:
    marks = {DELETE_MACHINE: "yes", MARKED_AT_GENERATION: generation}
    return builders.machine(name, machine_deployment("gpu-md")).annotated(**marks).obj()


@pytest.mark.parametrize(
    ("machines", "expected"),
    [
        pytest.param([machine("a")], "", id="nothing-marked"),
        pytest.param([_marked_at("a", "7")], "a", id="marked-at-current-generation"),
        pytest.param([_marked_at("a", "6")], "", id="decrement-done-generation-moved-on"),
        pytest.param([machine("a", marked=True)], "", id="marked-by-someone-else"),
        pytest.param([_marked_at("b", "6"), _marked_at("c", "7")], "c", id="second-of-two"),
    ],
)
def test_a_removal_interrupted_before_its_decrement_is_found(
    machines: list[Any], expected: str
) -> None:
    md = machine_deployment("gpu-md").replicas(2).generation(7).obj()
    assert interrupted_removal(md, machines) == expected
