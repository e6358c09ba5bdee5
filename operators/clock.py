"""The one clock type of every controller: time is injected, never read where it is used.

Time is a ``float`` of seconds since the Unix epoch (what :func:`time.time` returns): the pool
planner, its simulator, node annotations and metrics all count seconds. Kubernetes timestamps
(RFC 3339 strings) are converted at the edges with :func:`rfc3339` and :func:`parse_rfc3339`.
Only :class:`SystemClock` reads the wall clock; tests pass a :class:`ManualClock`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Tells the time, in seconds since the Unix epoch."""

    def now(self) -> float:
        """The current time."""
        ...


class SystemClock:
    """The wall clock (the operator process)."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()


@dataclass
class ManualClock:
    """A clock that moves only when told to (tests, simulations): nothing ever sleeps."""

    at: float = 0.0

    def now(self) -> float:
        """The time it was set to."""
        return self.at

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        self.at += seconds
        return self.at


SYSTEM_CLOCK = SystemClock()


def rfc3339(seconds: float) -> str:
    """Seconds since the epoch as a Kubernetes timestamp, whole seconds, UTC (``...Z``)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str | None) -> float:
    """A Kubernetes timestamp as seconds since the epoch (0 when unset)."""
    if not value:
        return 0.0
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
