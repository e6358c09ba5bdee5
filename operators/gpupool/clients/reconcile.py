"""One level-based reconcile of a pool: read the cluster, plan, apply, report.

Each step is idempotent and derived from cluster objects: a provider reports what it has asked
for (Nodes, Machines, replicas), nodes are get-or-create, a removal targets one named member.
PyTorchJobs and training pods come from the caller's watches (the kopf indexes of the
handlers), or from a LIST when called without them (tests); the provider's own objects (the
pool's Nodes, a MachineDeployment and its Machines) are read per reconcile. A node's idle
start is kept on the Node (``kubeforge.io/idle-since``) so a restart does not reset it. Every
non-noop decision becomes an Event with its reasons; a
provider that cannot be read or refuses backs off (exponentially, on the reconciler's clock) and
says so in the ``Ready`` condition and a Warning Event. The time comes from the injected
:class:`~kubeforge.operators.clock.Clock` only; :meth:`Reconciler.reconcile` returns a
:class:`ReconcileResult` for the handler to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kubeforge.operators.clock import SYSTEM_CLOCK, Clock
from kubeforge.operators.events import post_event
from kubeforge.operators.gpupool.api.crd import GROUP, KIND, PLURAL, VERSION
from kubeforge.operators.gpupool.clients.capi import ClusterApiProvider
from kubeforge.operators.gpupool.clients.executor import Action, Applied, apply_plan
from kubeforge.operators.gpupool.clients.kwok import KwokProvider
from kubeforge.operators.gpupool.clients.provider import NodeProvider, ProviderError
from kubeforge.operators.gpupool.core.demand import (
    TERMINAL,
    TRAINING_POD_LABELS,
    TRAINJOB_GROUP,
    is_training_pod,
    job_demand,
    job_is_terminal,
    node_state,
    pod_gpus,
    pod_of,
    replica_groups,
)
from kubeforge.operators.gpupool.core.losses import GangLoss, LossTracker, placements
from kubeforge.operators.gpupool.core.members import PoolMember
from kubeforge.operators.gpupool.core.planner import BootTimes, NodeState, PoolPlan, Snapshot, plan
from kubeforge.operators.gpupool.core.pool_config import PoolConfig, pool_config
from kubeforge.operators.gpupool.core.provisioning import check_provisioning
from kubeforge.operators.gpupool.core.reasons import BLOCKED, DECISION_EVENTS, EventReason
from kubeforge.operators.gpupool.core.selection import serves
from kubeforge.operators.gpupool.core.status import Observation, build_status
from kubeforge.operators.gpupool.core.waits import job_wait_seconds
from kubeforge.operators.schema import to_dict

IDLE_SINCE = "kubeforge.io/idle-since"
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 300.0


@dataclass(frozen=True)
class ClusterReads:
    """The PyTorchJobs and TrainJobs, and their pods (labelled with their job), as plain dicts."""

    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]


def _node_of(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _unbound(pod: dict[str, Any]) -> dict[str, Any]:
    return {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": ""}}


def list_cluster(api_client: Any) -> ClusterReads:
    """LIST every PyTorchJob and TrainJob and their pods (used without watches).

    A kind whose CRD is not installed (no Trainer v2 in the cluster) lists as empty.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    serialize = api_client.sanitize_for_serialization
    jobs: list[dict[str, Any]] = []
    for group, version, plural, kind in (
        ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"),
        (TRAINJOB_GROUP, "v1alpha1", "trainjobs", "TrainJob"),
    ):
        try:
            items = custom.list_cluster_custom_object(group, version, plural)["items"]
        except ApiException as exc:
            if exc.status != 404:
                raise
            continue
        jobs += [{**item, "apiVersion": f"{group}/{version}", "kind": kind} for item in items]
    pods = {}
    for label in TRAINING_POD_LABELS:
        for pod in core.list_pod_for_all_namespaces(label_selector=label).items:
            pods[pod.metadata.uid] = serialize(pod)
    return ClusterReads(jobs, list(pods.values()))


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile of a pool found and did, for the handler's metrics and log.

    Attributes:
        pool: The pool's spec, as read for this reconcile.
        plan: The plan; None when the provider was backing off or could not be read.
        observation: What the status now reports; None while backing off (nothing was tried).
        actions: Changes applied to the pool (Enforce mode), for the scale metrics.
        job_waits: Seconds each job waited for all its GPU pods to be bound, for jobs whose
            pods this reconciler saw all bound for the first time.
        lost: Nodes found gone under running gangs in this reconcile.
        recovered: Gangs whose every rank runs again after such a loss.
    """

    pool: PoolConfig
    plan: PoolPlan | None = None
    observation: Observation | None = None
    actions: tuple[Action, ...] = ()
    job_waits: tuple[float, ...] = ()
    lost: tuple[GangLoss, ...] = ()
    recovered: tuple[GangLoss, ...] = ()


@dataclass
class Reconciler:
    """Reconciles GPUNodePools; remembers idle timers, provider backoff and measured waits."""

    api_client: Any
    clock: Clock = SYSTEM_CLOCK
    idle_since: dict[str, float] = field(default_factory=dict)
    backoff: dict[str, tuple[int, float]] = field(default_factory=dict)
    boot_times: dict[str, BootTimes] = field(default_factory=dict)
    losses: dict[str, LossTracker] = field(default_factory=dict)
    _waited: set[str] = field(default_factory=set)

    def provider(self, pool: PoolConfig) -> NodeProvider:
        """The pool's node provider."""
        if pool.provider_kind == "clusterAPI":
            return ClusterApiProvider(
                self.api_client,
                pool.name,
                pool.capi_namespace,
                pool.capi_deployment,
                labels=pool.labels,
                taints=pool.taints,
            )
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
        """The Node objects the kwok provider manages for the pool ``obj``."""
        provider = self.provider(pool_config(obj))
        assert isinstance(provider, KwokProvider), "only the kwok provider creates Nodes"
        return provider.nodes()

    def _jobs_and_pods(
        self, pool: PoolConfig, cluster: ClusterReads | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if cluster is None:
            cluster = list_cluster(self.api_client)
        return [j for j in cluster.jobs if serves(pool, j)], list(cluster.pods)

    def _remember_idle(self, name: str, since: float | None, persist: bool) -> None:
        """Keep a node's idle start in memory and, when acting, on the Node (restart-safe)."""
        if since is None:
            self.idle_since.pop(name, None)
        else:
            self.idle_since[name] = since
        if not persist:
            return
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        value = None if since is None else f"{since:.3f}"
        try:
            client.CoreV1Api(self.api_client).patch_node(
                name, {"metadata": {"annotations": {IDLE_SINCE: value}}}
            )
        except ApiException as exc:
            if exc.status != 404:  # a node that just went away has no timer to keep
                raise

    def _node_states(
        self,
        pool: PoolConfig,
        members: list[PoolMember],
        pods: list[dict[str, Any]],
        now: float,
        persist: bool = False,
    ) -> list[NodeState]:
        states = []
        by_node: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            by_node.setdefault(p.get("spec", {}).get("nodeName") or "", []).append(p)
        for member in members:
            if member.leaving:
                continue
            if member.node is None:
                states.append(NodeState(member.name, member.requested_at, gpu_ready=False))
                continue
            noted = (member.node.get("metadata", {}).get("annotations") or {}).get(IDLE_SINCE)
            remembered = self.idle_since.get(member.name, float(noted) if noted else None)
            on_node = by_node.get(member.name, [])
            state = node_state(dict(member.node), on_node, remembered, pool.gpu_resource)
            state = replace(state, created_at=member.requested_at)
            if state.busy:
                if remembered is not None or noted:
                    self._remember_idle(member.name, None, persist and bool(noted))
            elif not state.gpu_ready:
                # Still booting: its idle time starts once its GPUs appear, not before.
                state = replace(state, idle_since=None)
            elif state.idle_since is None:  # idle from now on
                self._remember_idle(member.name, now, persist)
                state = replace(state, idle_since=now)
            else:
                self.idle_since[member.name] = state.idle_since
            states.append(state)
        return states

    def reconcile(
        self, obj: dict[str, Any], cluster: ClusterReads | None = None
    ) -> ReconcileResult:
        """Plan for the pool and, in Enforce mode, apply the plan; then write status.

        Args:
            obj: The GPUNodePool.
            cluster: PyTorchJobs and training pods as the caller's watches hold them; None to
                LIST them from the API server.
        """
        now = self.clock.now()
        pool = pool_config(obj)
        failures, retry_at = self.backoff.get(pool.name, (0, 0.0))
        if failures and now < retry_at:
            return ReconcileResult(pool)
        provider = self.provider(pool)
        try:
            provider.prepare(now)
            members = provider.members()
        except ProviderError as exc:
            failed_obs = self._provider_failed(obj, pool, str(exc), now)
            return ReconcileResult(pool, observation=failed_obs)
        jobs, pods = self._jobs_and_pods(pool, cluster)
        tracker = self.losses.get(pool.name)
        if tracker is None:  # first reconcile of this process: open losses from the status
            tracker = LossTracker.resume((obj.get("status") or {}).get("nodeLosses") or [])
            self.losses[pool.name] = tracker
        gone = tracker.gone(m.name for m in members)
        if gone:  # pods left bound to a vanished node run nowhere: count them as unbound
            pods = [_unbound(p) if _node_of(p) in gone else p for p in pods]
        lost, recovered = tracker.observe(
            self._gangs(jobs, pods, pool.gpu_resource), (m.name for m in members), now
        )
        demands = []
        waits: list[float] = []
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            by_namespace.setdefault(p["metadata"].get("namespace", ""), []).append(p)
        for job in jobs:
            ns = job["metadata"]["namespace"]
            mine = by_namespace.get(ns, [])
            demands.append(job_demand(job, mine, pool.gpu_resource))
            wait = job_wait_seconds(job, mine, pool.gpu_resource, now)
            uid = job["metadata"].get("uid", f"{ns}/{job['metadata']['name']}")
            if wait is not None and uid not in self._waited:
                self._waited.add(uid)
                waits.append(wait)
        states = self._node_states(pool, members, pods, now, persist=pool.enforce)
        check = check_provisioning(states, pool.provision_timeout_s, now)
        boots = self.boot_times.setdefault(pool.name, BootTimes())
        boots.observe(check.healthy, now)
        policy = replace(pool.policy, break_even_s=boots.estimate_s)
        decision = plan(Snapshot(check.healthy, tuple(demands)), policy, now)
        failure_reason = check.reason(pool.provision_timeout_s, now)
        applied = Applied(())  # Observe mode: plan and report only
        if pool.enforce:
            failed = tuple(n.name for n in check.failed)
            applied = apply_plan(
                decision, provider, now, failed, lambda n: self._still_empty(n, pool.gpu_resource)
            )
            for name in failed + decision.nodes_to_remove:
                self.idle_since.pop(name, None)
        if applied.error:
            obs = self._provider_failed(obj, pool, applied.error, now)
            return ReconcileResult(pool, decision, obs, applied.actions, tuple(waits))
        self.backoff.pop(pool.name, None)
        if applied.actions or decision.nodes_to_drain:
            members = provider.members()  # report what the pool looks like after acting
            states = self._node_states(pool, members, pods, now, persist=pool.enforce)
        obs = Observation(
            generation=int(obj["metadata"].get("generation", 0)),
            members=members,
            nodes=states,
            failed=check.failed,
            failure_reason=failure_reason,
            plan=decision,
            scaled_up=applied.scaled_up,
            scaled_down=applied.scaled_down,
            losses=(*tracker.open.values(), *recovered),
        )
        self._post_events(obj, pool, decision, failure_reason, jobs)
        self._post_losses(obj, jobs, lost, recovered, decision, now)
        self._write_status(obj, obs, pool, now)
        return ReconcileResult(
            pool, decision, obs, applied.actions, tuple(waits), tuple(lost), tuple(recovered)
        )

    @staticmethod
    def _gangs(jobs: list[dict[str, Any]], pods: list[dict[str, Any]], resource: str) -> Any:
        by_job: dict[str, list[dict[str, Any]]] = {}
        shapes = []
        for job in jobs:
            if job_is_terminal(job):
                continue
            meta = job["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            # A rank that succeeded is done (bound for good); a failed one is replaced.
            mine = [
                p
                for p in pods
                if p["metadata"].get("namespace") == meta["namespace"]
                and pod_of(job, p) is not None
                and pod_gpus(p.get("spec", {}), resource)
                and p.get("status", {}).get("phase") != "Failed"
            ]
            if mine and all(p.get("status", {}).get("phase") == "Succeeded" for p in mine):
                continue  # every rank finished: nothing runs that a loss could stall
            groups = replica_groups(job, resource)
            shapes.append((key, sum(n * g for _, n, g in groups), sum(n for _, n, _ in groups)))
            by_job[key] = mine
        return placements(shapes, by_job)

    def _post_losses(
        self,
        obj: dict[str, Any],
        jobs: list[dict[str, Any]],
        lost: list[GangLoss],
        recovered: list[GangLoss],
        decision: PoolPlan,
        now: float,
    ) -> None:
        by_key = {f"{j['metadata']['namespace']}/{j['metadata']['name']}": j for j in jobs}
        for loss in lost:
            asked = decision.add_nodes if decision.decision.value == "scale_up" else 0
            message = (
                f"node(s) {', '.join(loss.nodes)} under running job {loss.job} ({loss.gpus} GPUs) "
                f"are gone; the whole gang is replanned ({asked} node(s) asked for now)"
            )
            self._post(obj, EventReason.NODE_LOST, message, "Warning")
            if loss.job in by_key:
                self._post(by_key[loss.job], EventReason.NODE_LOST, message, "Warning")
        for loss in recovered:
            message = (
                f"job {loss.job} runs on a full set of nodes again after "
                f"{loss.recovery_s or 0:.0f}s; {loss.gpu_minutes_lost(now):.1f} GPU-minutes stalled"
            )
            self._post(obj, EventReason.GANG_RECOVERED, message, "Normal")

    def _still_empty(self, node: str, resource: str) -> bool:
        """No unfinished training or GPU pod is bound to ``node`` (read after its cordon).

        DaemonSet pods (log shippers, device plugins) run on every node and do not count.
        """
        from kubernetes import client

        pods = client.CoreV1Api(self.api_client).list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}"
        )
        for pod in map(self.api_client.sanitize_for_serialization, pods.items):
            if pod.get("status", {}).get("phase") in TERMINAL:
                continue
            if is_training_pod(pod) or pod_gpus(pod.get("spec", {}), resource):
                return False
        return True

    def _provider_failed(
        self, obj: dict[str, Any], pool: PoolConfig, error: str, now: float
    ) -> Observation:
        failures = self.backoff.get(pool.name, (0, 0.0))[0] + 1
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (failures - 1))
        self.backoff[pool.name] = (failures, now + delay)
        message = f"{error}; retrying in {delay:.0f}s (attempt {failures})"
        self._post(obj, EventReason.PROVIDER_UNAVAILABLE, error, "Warning")
        obs = Observation(
            generation=int(obj["metadata"].get("generation", 0)),
            members=(),
            nodes=(),
            provider_error=message,
        )
        self._write_status(obj, obs, pool, now)
        return obs

    def _post_events(
        self,
        obj: dict[str, Any],
        pool: PoolConfig,
        decision: PoolPlan,
        failure_reason: str,
        jobs: list[dict[str, Any]],
    ) -> None:
        prefix = "" if pool.enforce else "Observe mode, not applied: "
        reasons = "; ".join(decision.reasons)
        if decision.decision in DECISION_EVENTS:
            self._post(obj, DECISION_EVENTS[decision.decision], prefix + reasons, "Normal")
        if failure_reason:
            self._post(obj, EventReason.PROVISION_TIMEOUT, prefix + failure_reason, "Warning")
        by_key = {f"{j['metadata']['namespace']}/{j['metadata']['name']}": j for j in jobs}
        for verdict in decision.jobs:
            if verdict.placement not in BLOCKED:
                continue
            reason = BLOCKED[verdict.placement]
            message = f"pool {pool.name}: {verdict.reason}"
            self._post(obj, reason, f"{verdict.job}: {verdict.reason}", "Warning")
            if verdict.job in by_key:
                self._post(by_key[verdict.job], reason, message, "Warning")

    def _post(self, obj: dict[str, Any], reason: EventReason, message: str, type_: str) -> None:
        involved = dict(obj)
        involved.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        involved.setdefault("kind", KIND)
        post_event(self.api_client, involved, reason.value, message, type_, clock=self.clock)

    def _write_status(
        self, obj: dict[str, Any], obs: Observation, pool: PoolConfig, now: float
    ) -> None:
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api_client)
        name = obj["metadata"]["name"]
        previous = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name).get("status", {})
        status = build_status(obs, previous or {}, pool.gpu_resource, now)
        custom.patch_cluster_custom_object_status(
            GROUP, VERSION, PLURAL, name, {"status": to_dict(status)}
        )
