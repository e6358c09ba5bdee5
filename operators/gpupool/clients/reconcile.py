"""One level-based reconcile of a pool: read the cluster, plan, apply, write status.

Each step is idempotent: nodes are get-or-create by deterministic name, a cordon is a patch, a
removal targets one named node the provider created. Reading is a LIST per reconcile for now;
the kopf layer (not built yet) is meant to feed the same snapshot from watches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from kubeforge.operators.gpupool.api.crd import GROUP, PLURAL, VERSION
from kubeforge.operators.gpupool.clients.kwok import KwokProvider
from kubeforge.operators.gpupool.core.config import PoolConfig, pool_config
from kubeforge.operators.gpupool.core.demand import JOB_NAME_LABEL, job_demand, node_state
from kubeforge.operators.gpupool.core.planner import Decision, PoolPlan, Snapshot, plan
from kubeforge.operators.gpupool.core.selection import serves


@dataclass
class Reconciler:
    """Reconciles one GPUNodePool with the kwok provider; ``idle_since`` survives between calls."""

    api_client: Any
    idle_since: dict[str, float] = field(default_factory=dict)
    last_snapshot: Snapshot | None = None

    def provider(self, pool: PoolConfig) -> KwokProvider:
        """The pool's node provider."""
        return KwokProvider(
            self.api_client,
            pool.name,
            gpu_resource=pool.gpu_resource,
            gpus_per_node=pool.policy.gpus_per_node,
            gpu_delay_s=pool.gpu_delay_s,
            labels=pool.labels,
            taints=pool.taints,
            product=pool.product,
        )

    def provider_nodes(self, obj: dict[str, Any]) -> list[Any]:
        """The Node objects the provider manages for the pool ``obj``."""
        return self.provider(pool_config(obj)).nodes()

    def snapshot(self, pool: PoolConfig, provider: KwokProvider, now: float) -> Snapshot:
        """The pool's nodes and the pending demand of the jobs it serves."""
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api_client)
        core = client.CoreV1Api(self.api_client)
        serialize = self.api_client.sanitize_for_serialization
        jobs = custom.list_cluster_custom_object("kubeflow.org", "v1", "pytorchjobs")["items"]
        pods = [
            serialize(p)
            for p in core.list_pod_for_all_namespaces(label_selector=JOB_NAME_LABEL).items
        ]
        demands = []
        for job in jobs:
            if not serves(pool, job):
                continue
            ns = job["metadata"]["namespace"]
            mine = [p for p in pods if p["metadata"].get("namespace") == ns]
            demands.append(job_demand(job, mine, pool.gpu_resource))
        nodes = []
        for node in provider.nodes():
            raw = serialize(node)
            name = raw["metadata"]["name"]
            on_node = [p for p in pods if p.get("spec", {}).get("nodeName") == name]
            state = node_state(raw, on_node, self.idle_since.get(name), pool.gpu_resource)
            if state.busy:
                self.idle_since.pop(name, None)
            elif state.idle_since is None:  # idle from now on
                self.idle_since[name] = now
                state = replace(state, idle_since=now)
            nodes.append(state)
        return Snapshot(tuple(nodes), tuple(demands))

    def reconcile(self, obj: dict[str, Any], now: float) -> PoolPlan:
        """Plan for the pool and, in Enforce mode, apply the plan; then write status."""
        pool = pool_config(obj)
        provider = self.provider(pool)
        provider.advertise_gpus(now)
        snap = self.snapshot(pool, provider, now)
        self.last_snapshot = snap
        decision = plan(snap, pool.policy, now)
        if pool.mode == "Enforce":
            if decision.decision is Decision.SCALE_UP:
                provider.add_nodes(decision.add_nodes, now)
            for name in decision.nodes_to_drain:
                provider.cordon(name)
            for name in decision.nodes_to_remove:
                provider.remove(name)
                self.idle_since.pop(name, None)
        self.write_status(obj, snap, decision)
        return decision

    def write_status(self, obj: dict[str, Any], snap: Snapshot, decision: PoolPlan) -> None:
        """Patch the pool's status subresource with counts and conditions."""
        from kubernetes import client

        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        blocked = [
            v for v in decision.jobs if v.placement in ("capacity_unavailable", "unschedulable")
        ]
        conditions = [
            _condition(
                "ScalingUp", decision.decision is Decision.SCALE_UP, "Scaling", decision, stamp
            ),
            _condition(
                "ScalingDown",
                decision.decision in (Decision.DRAIN, Decision.SCALE_DOWN),
                "Scaling",
                decision,
                stamp,
            ),
            {
                "type": "CapacityUnavailable",
                "status": "True" if blocked else "False",
                "reason": "JobsDoNotFit" if blocked else "AllJobsFit",
                "message": "; ".join(f"{v.job}: {v.reason}" for v in blocked) or "every job fits",
                "lastTransitionTime": stamp,
            },
        ]
        ready = [n for n in snap.nodes if n.gpu_ready]
        status = {
            "observedGeneration": obj["metadata"].get("generation", 0),
            "desiredNodes": decision.desired_nodes,
            "readyNodes": len(ready),
            "gpusAllocatable": sum(n.allocatable_gpus for n in ready),
            "gpusAllocated": sum(n.allocated_gpus for n in ready),
            "pendingJobs": sum(1 for j in snap.jobs if j.unbound_pod_gpus),
            "conditions": conditions,
        }
        client.CustomObjectsApi(self.api_client).patch_cluster_custom_object_status(
            GROUP, VERSION, PLURAL, obj["metadata"]["name"], {"status": status}
        )


def _condition(
    kind: str, active: bool, reason: str, decision: PoolPlan, stamp: str
) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True" if active else "False",
        "reason": reason if active else "Idle",
        "message": "; ".join(decision.reasons) if active else "",
        "lastTransitionTime": stamp,
    }
