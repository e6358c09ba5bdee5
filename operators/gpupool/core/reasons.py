"""Why the pool changed, as enums: the reasons of its Events, conditions and scale metrics. Pure.

The values are what users and dashboards see (Event ``reason``, condition ``reason``, the
``reason`` label of ``kubeforge_pool_scale_events_total``), so they never change spelling.
"""

from __future__ import annotations

import enum

from kubeforge.operators.gpupool.api.models import Placement
from kubeforge.operators.gpupool.core.planner import Decision


class EventReason(enum.StrEnum):
    """Reasons of the Events posted on a pool (and on a job that cannot be placed)."""

    SCALE_UP = "ScaleUp"
    CORDON = "Cordon"
    SCALE_DOWN = "ScaleDown"
    PROVISION_TIMEOUT = "ProvisionTimeout"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    UNSCHEDULABLE = "Unschedulable"
    CAPACITY_UNAVAILABLE = "CapacityUnavailable"
    NODE_LOST = "NodeLost"
    GANG_RECOVERED = "GangRecovered"


# The Event a decision posts; a noop posts none.
DECISION_EVENTS = {
    Decision.SCALE_UP: EventReason.SCALE_UP,
    Decision.DRAIN: EventReason.CORDON,
    Decision.SCALE_DOWN: EventReason.SCALE_DOWN,
}

# Placements that leave a job waiting with nothing under way for it, and their Warning Event.
BLOCKED = {
    Placement.UNSCHEDULABLE: EventReason.UNSCHEDULABLE,
    Placement.CAPACITY_UNAVAILABLE: EventReason.CAPACITY_UNAVAILABLE,
}


class ConditionReason(enum.StrEnum):
    """Reasons of the pool's status conditions."""

    RECONCILED = "Reconciled"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    PROVISION_TIMEOUT = "ProvisionTimeout"
    SCALING = "Scaling"
    IDLE = "Idle"
    JOBS_DO_NOT_FIT = "JobsDoNotFit"
    ALL_JOBS_FIT = "AllJobsFit"


class Direction(enum.StrEnum):
    """Which way the pool's node count moved."""

    UP = "up"
    DOWN = "down"


class ScaleReason(enum.StrEnum):
    """Why nodes were added or removed."""

    GANG_DEMAND = "gang_demand"  # whole jobs need them
    MIN_NODES = "min_nodes"  # the pool is below minNodes
    IDLE = "idle"  # idle longer than idleAfter, cordoned, removed
    PROVISION_TIMEOUT = "provision_timeout"  # not GPU-ready within provisionTimeout
