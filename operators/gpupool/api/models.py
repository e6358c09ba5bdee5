"""Typed spec and status of ``GPUNodePool`` (kubeforge.io/v1alpha1): the one source of truth.

Every field carries its description (shown by ``kubectl explain``), its default and its
validation in the field metadata; :mod:`kubeforge.operators.gpupool.api.crd` turns these classes
into the CRD, and :func:`kubeforge.operators.schema.from_dict` reads a pool object into them, so
a default is written here and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kubeforge.operators.schema import Condition, spec_field


@dataclass
class Taint:
    """A Kubernetes taint."""

    key: str = spec_field("Taint key.", "")
    value: str = spec_field("Taint value.", "")
    effect: str = spec_field(
        "Taint effect.", "NoSchedule", enum=["NoSchedule", "PreferNoSchedule", "NoExecute"]
    )


@dataclass
class GpuSpec:
    """Which GPUs the pool's nodes carry."""

    resourceName: str = spec_field(  # noqa: N815 - Kubernetes field names are camelCase
        "Extended resource name of the GPU.", "nvidia.com/gpu", minLength=1
    )
    perNode: int = spec_field("GPUs each node of the pool advertises.", 8, minimum=1)  # noqa: N815
    product: str = spec_field(
        "GPU product label value (nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3.", ""
    )


@dataclass
class NodeTemplate:
    """Labels and taints the operator puts on the pool's nodes."""

    labels: dict[str, str] = spec_field("Labels every node of the pool carries.", {})
    taints: list[Taint] = spec_field(
        "Taints every node of the pool carries; the pool's jobs must tolerate them.", []
    )


@dataclass
class Scaling:
    """Bounds and pace of scaling up."""

    minNodes: int = spec_field("Fewest nodes the pool keeps.", 0, minimum=0)  # noqa: N815
    maxNodes: int = spec_field("Most nodes the pool may have.", 10, minimum=0)  # noqa: N815
    provisionTimeout: str = spec_field(  # noqa: N815
        "How long a requested node may take to show its GPUs before it counts as failed "
        "(a duration, e.g. 15m).",
        "15m",
        pattern=r"^([0-9]+(\.[0-9]+)?(s|m|h))+$",
    )
    maxInFlight: int = spec_field(  # noqa: N815
        "Most nodes requested but not yet GPU-ready at once.", 10, minimum=1
    )
    headroomNodes: int = spec_field(  # noqa: N815
        "Whole free nodes (ready and empty, or booting) kept beyond what the queued jobs use, "
        "so a new job of up to this many nodes starts without waiting for a boot; they count "
        "toward maxNodes. 0: none (the pool grows only for jobs that wait).",
        0,
        minimum=0,
    )


@dataclass
class ScaleDown:
    """When idle nodes are given back. Nodes running training pods are never evicted."""

    idleAfter: str = spec_field(  # noqa: N815
        "How long a node must run no pod of a running job before it is cordoned.",
        "10m",
        pattern=r"^([0-9]+(\.[0-9]+)?(s|m|h))+$",
    )
    minNodeAge: str = spec_field(  # noqa: N815
        "Nodes younger than this are never removed.",
        "10m",
        pattern=r"^([0-9]+(\.[0-9]+)?(s|m|h))+$",
    )
    policy: str = spec_field(
        "IdleAfter: every empty node waits out idleAfter, and none is removed while a job "
        "waits or a node boots. QueueAware: an empty node is kept only while a queued job "
        "would use it, or for the pool's observed boot time (never longer than idleAfter); "
        "it is then cordoned and removed in the same reconcile.",
        "IdleAfter",
        enum=["IdleAfter", "QueueAware"],
    )


@dataclass
class JobSelector:
    """Which PyTorchJobs the pool serves."""

    namespaces: list[str] = spec_field("Namespaces to watch; empty for all.", [])
    matchLabels: dict[str, str] = spec_field(  # noqa: N815
        "Labels a PyTorchJob must carry.", {}
    )
    nodeSelector: dict[str, str] = spec_field(  # noqa: N815
        "A job is served when its pods' nodeSelector contains these pairs.", {}
    )


@dataclass
class ClusterApiProvider:
    """Scale a Cluster API MachineDeployment."""

    namespace: str = spec_field("Namespace of the MachineDeployment.", "default", minLength=1)
    machineDeployment: str = spec_field(  # noqa: N815
        "Name of the MachineDeployment whose scale subresource is patched.", "", minLength=1
    )


@dataclass
class KwokProvider:
    """Create and delete simulated Node objects (tests and simulation)."""

    gpuDelay: str = spec_field(  # noqa: N815
        "Delay before a created node advertises its GPUs.",
        "0s",
        pattern=r"^([0-9]+(\.[0-9]+)?(s|m|h))+$",
    )


@dataclass
class Provider:
    """Who really adds and removes nodes: exactly one of the members."""

    clusterAPI: ClusterApiProvider | None = spec_field(  # noqa: N815
        "Cluster API: patch a MachineDeployment's scale, marking the exact Machine to delete.",
        None,
    )
    kwok: KwokProvider | None = spec_field("Simulated nodes created by the operator.", None)


@dataclass
class GPUNodePoolSpec:
    """Desired state of a GPU node pool."""

    gpu: GpuSpec = spec_field("The GPUs of the pool's nodes.", None)
    provider: Provider = spec_field("Who adds and removes the pool's nodes.", None)
    nodeTemplate: NodeTemplate = spec_field(  # noqa: N815
        "Labels and taints of the pool's nodes.", None
    )
    scaling: Scaling = spec_field("Node count bounds and scale-up pace.", None)
    scaleDown: ScaleDown = spec_field("When idle nodes are removed.", None)  # noqa: N815
    jobSelector: JobSelector = spec_field("Which PyTorchJobs the pool serves.", None)  # noqa: N815
    mode: str = spec_field(
        "Enforce acts on the plan; Observe only plans and reports.",
        "Enforce",
        enum=["Enforce", "Observe"],
    )


REQUIRED: dict[type, list[str]] = {
    GPUNodePoolSpec: ["gpu", "provider"],
    ClusterApiProvider: ["machineDeployment"],
}

VALIDATIONS: dict[type, list[dict[str, str]]] = {
    Scaling: [
        {"rule": "self.minNodes <= self.maxNodes", "message": "minNodes must not exceed maxNodes"},
        {
            "rule": "self.headroomNodes <= self.maxNodes",
            "message": "headroomNodes must not exceed maxNodes",
        },
    ],
    Provider: [
        {
            "rule": "has(self.clusterAPI) != has(self.kwok)",
            "message": "set exactly one provider: clusterAPI or kwok",
        }
    ],
}


@dataclass
class NodeCounts:
    """The pool's nodes by state."""

    requested: int = spec_field("Asked of the provider; no Node has registered yet.", 0)
    registering: int = spec_field("Node registered; its GPUs are not advertised yet.", 0)
    gpuReady: int = spec_field(  # noqa: N815
        "Schedulable nodes whose GPUs are allocatable.", 0
    )
    cordoned: int = spec_field("Cordoned (unschedulable) nodes, removed once idle.", 0)
    draining: int = spec_field("Nodes whose removal was asked for and is under way.", 0)
    failed: int = spec_field(
        "Nodes not GPU-ready within provisionTimeout; removed and not waited for.", 0
    )


@dataclass
class GpuCounts:
    """The pool's GPUs by state."""

    capacity: int = spec_field("GPUs the pool's registered nodes carry.", 0)
    allocatable: int = spec_field("GPUs allocatable on GPU-ready nodes.", 0)
    allocated: int = spec_field("GPUs requested by pods bound to the pool's nodes.", 0)
    idle: int = spec_field("Allocatable GPUs no pod requests.", 0)


class Placement(enum.StrEnum):
    """Where a job's pending pods go, as the pool's plan sees it (``status.jobs[].placement``)."""

    FITS = "fits"  # on free GPUs of GPU-ready nodes
    WAITING = "waiting"  # on nodes in flight, or behind a scale-up
    NEEDS_NODES = "needs_nodes"  # the plan adds nodes for it
    CAPACITY_UNAVAILABLE = "capacity_unavailable"  # would take the pool above maxNodes
    UNSCHEDULABLE = "unschedulable"  # a pod asks for more GPUs than a node has


@dataclass
class JobStatus:
    """One job's pending GPU demand and where the pool's plan places it."""

    job: str = spec_field("The PyTorchJob, namespace/name.", "")
    gpus: int = spec_field("GPUs of the job's pods not bound to a node yet.", 0)
    placement: str = spec_field(
        "fits, waiting (for nodes in flight), needs_nodes, capacity_unavailable or unschedulable.",
        "",
        enum=[p.value for p in Placement],
    )
    reason: str = spec_field("Why, for a person.", "")


@dataclass
class NodeLoss:
    """A node lost under a running gang, and how long the gang took to run again."""

    job: str = spec_field("The job (namespace/name) whose running gang lost a node.", "")
    nodes: list[str] = spec_field("The node(s) that disappeared.", [])
    gpus: int = spec_field("GPUs of the whole gang.", 0)
    lostAt: str | None = spec_field(  # noqa: N815
        "When the operator saw the node gone.", None, format="date-time"
    )
    recoveredAt: str | None = spec_field(  # noqa: N815
        "When every rank of the gang was bound again; unset until then.", None, format="date-time"
    )
    recoverySeconds: float | None = spec_field(  # noqa: N815
        "Seconds from the loss to recovery.", None
    )
    gpuMinutesLost: float = spec_field(  # noqa: N815
        "The gang's GPUs times the minutes it was stalled (to recovery, or so far).", 0.0
    )


@dataclass
class GPUNodePoolStatus:
    """Observed state of a GPU node pool, written by the operator."""

    observedGeneration: int = spec_field("Spec generation the status describes.", 0)  # noqa: N815
    desiredNodes: int = spec_field("Node count the last plan asked for.", 0)  # noqa: N815
    readyNodes: int = spec_field("Nodes whose GPUs are allocatable.", 0)  # noqa: N815
    gpusAllocatable: int = spec_field("GPUs allocatable on ready nodes.", 0)  # noqa: N815
    gpusAllocated: int = spec_field("GPUs requested by bound pods.", 0)  # noqa: N815
    pendingJobs: int = spec_field("Jobs with GPUs still waiting for nodes.", 0)  # noqa: N815
    nodes: NodeCounts = spec_field("The pool's nodes by state.", None)
    gpus: GpuCounts = spec_field("The pool's GPUs by state.", None)
    jobs: list[JobStatus] = spec_field(
        "Pending demand per job, with its placement and the reason.", []
    )
    lastScaleUpTime: str | None = spec_field(  # noqa: N815
        "When the operator last asked for more nodes.", None, format="date-time"
    )
    lastScaleDownTime: str | None = spec_field(  # noqa: N815
        "When the operator last removed a node.", None, format="date-time"
    )
    nodeLosses: list[NodeLoss] = spec_field(  # noqa: N815
        "The last nodes lost under running gangs, with their recovery.", []
    )
    conditions: list[Condition] = spec_field(
        "Current conditions of the pool: Ready, ScalingUp, ScalingDown, CapacityUnavailable.", []
    )
