"""What a node provider reports: the pool's members, with or without a Node yet. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolMember:
    """One node the provider was asked for.

    Attributes:
        name: The Node's name once it exists; else the name of what stands for it (a Machine
            ``machine/<name>``, or ``<deployment>/requested-<i>`` for replicas with no Machine).
        requested_at: When it was requested, in seconds on the operator's clock.
        node: The Node object, or None while the node has not registered.
        machine: The Cluster API Machine behind it ("" for other providers).
        leaving: Already marked for removal (being deleted); not counted as capacity.
    """

    name: str
    requested_at: float
    node: Mapping[str, Any] | None = None
    machine: str = ""
    leaving: bool = False
