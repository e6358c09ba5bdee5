"""Durations as Kubernetes writes them (``1h30m``, ``90s``), in seconds. Pure."""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0 seconds.

    Raises:
        ValueError: ``text`` is not a sequence of ``<number><s|m|h>``.
    """
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
