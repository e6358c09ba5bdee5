"""Nodes lost under running gangs: detection and the cost of recovery. Pure bookkeeping.

A gang runs when every GPU pod of its job is bound. When a node the pool had under such a gang
disappears (spot loss, hardware), the gang is stalled: its surviving ranks cannot go on without
the lost one. The pods left bound to the vanished node count as unbound from then on (so the
planner asks for the missing capacity of the whole gang in one plan, before the pod garbage
collector has even deleted them), and the loss is recorded until every rank runs again: time to
recovery and GPU-minutes stalled (the gang's GPUs x that time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kubeforge.operators.clock import parse_rfc3339, rfc3339

HISTORY = 10  # losses kept in the pool's status


@dataclass(frozen=True)
class GangLoss:
    """One node loss under a running gang."""

    job: str
    nodes: tuple[str, ...]
    gpus: int
    lost_at: float
    recovered_at: float | None = None

    @property
    def recovery_s(self) -> float | None:
        """Seconds from the loss until every rank ran again; None while it has not."""
        return None if self.recovered_at is None else self.recovered_at - self.lost_at

    def gpu_minutes_lost(self, now: float) -> float:
        """The gang's GPUs x minutes stalled, until recovery (or ``now``)."""
        end = self.recovered_at if self.recovered_at is not None else now
        return self.gpus * (end - self.lost_at) / 60.0


@dataclass(frozen=True)
class GangPlacement:
    """Where a job's GPU pods are: bound nodes, and whether all of them are bound."""

    job: str
    gpus: int
    nodes: frozenset[str]
    all_bound: bool


def placements(
    jobs: Iterable[tuple[str, int, int]], pods: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[GangPlacement]:
    """``(job key, GPUs of the gang, GPU pods wanted)`` and each job's bound GPU pods."""
    out = []
    for key, gpus, wanted in jobs:
        bound = [p for p in pods.get(key, []) if (p.get("spec") or {}).get("nodeName")]
        nodes = frozenset(str(p["spec"]["nodeName"]) for p in bound)
        out.append(GangPlacement(key, gpus, nodes, bool(wanted) and len(bound) >= wanted))
    return out


@dataclass
class LossTracker:
    """Remembers, per pool, the gangs running on its nodes and the losses not yet recovered."""

    running: dict[str, tuple[int, frozenset[str]]] = field(default_factory=dict)
    seen_nodes: frozenset[str] = frozenset()
    open: dict[str, GangLoss] = field(default_factory=dict)
    vanished: set[str] = field(default_factory=set)  # until a node of the name is back

    @classmethod
    def resume(cls, history: Iterable[Mapping[str, Any]]) -> LossTracker:
        """A tracker for a restarted operator, from the pool's ``status.nodeLosses``.

        Losses not recovered yet stay open (their recovery is recorded when every rank runs
        again, as if the operator had not restarted) and their nodes count as vanished. What
        ran on which node is not in the status: a loss while no operator ran is not seen.
        """
        tracker = cls()
        for entry in history:
            if entry.get("recoveredAt") or not entry.get("job") or not entry.get("lostAt"):
                continue
            nodes = tuple(str(n) for n in entry.get("nodes") or ())
            loss = GangLoss(
                str(entry["job"]),
                nodes,
                int(entry.get("gpus") or 0),
                parse_rfc3339(entry["lostAt"]),
            )
            tracker.open[loss.job] = loss
            tracker.vanished.update(nodes)
        return tracker

    def gone(self, pool_nodes: Iterable[str]) -> frozenset[str]:
        """Nodes the pool had and no longer has (pods may stay bound to them for a while)."""
        current = frozenset(pool_nodes)
        return (self.seen_nodes - current) | frozenset(self.vanished - current)

    def observe(
        self, gangs: Iterable[GangPlacement], pool_nodes: Iterable[str], now: float
    ) -> tuple[list[GangLoss], list[GangLoss]]:
        """New losses and recoveries since the last call.

        ``gangs`` are placed with pods on vanished nodes already left out (not bound).
        """
        current = frozenset(pool_nodes)
        vanished = self.seen_nodes - current
        lost, recovered = [], []
        by_job = {g.job: g for g in gangs}
        for job, (gpus, nodes) in self.running.items():
            if job not in self.open and nodes & vanished:
                loss = GangLoss(job, tuple(sorted(nodes & vanished)), gpus, now)
                self.open[job] = loss
                lost.append(loss)
        for job, loss in list(self.open.items()):
            gang = by_job.get(job)
            if gang is None:  # the job is gone or finished: nothing left to recover
                del self.open[job]
            elif gang.all_bound:
                recovered.append(replace(loss, recovered_at=now))
                del self.open[job]
        self.running = {g.job: (g.gpus, g.nodes & current) for g in by_job.values() if g.all_bound}
        self.vanished = (self.vanished | vanished) - current
        if len(self.vanished) > 10_000:  # a bound on memory; the oldest matter least
            self.vanished = set(sorted(self.vanished)[-10_000:])
        self.seen_nodes = current
        return lost, recovered


def merge_history(
    previous: Iterable[Mapping[str, Any]], updates: Iterable[GangLoss], now: float
) -> list[dict[str, Any]]:
    """The status list of losses: earlier entries, updated or added by job and loss time."""
    entries = {(e.get("job"), e.get("lostAt")): dict(e) for e in previous}
    for loss in updates:
        entries[(loss.job, rfc3339(loss.lost_at))] = {
            "job": loss.job,
            "nodes": list(loss.nodes),
            "gpus": loss.gpus,
            "lostAt": rfc3339(loss.lost_at),
            "recoveredAt": None if loss.recovered_at is None else rfc3339(loss.recovered_at),
            "recoverySeconds": loss.recovery_s,
            "gpuMinutesLost": round(loss.gpu_minutes_lost(now), 2),
        }
    ordered = sorted(entries.values(), key=lambda e: str(e.get("lostAt")))
    return ordered[-HISTORY:]
