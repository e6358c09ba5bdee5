"""Status conditions for every controller: a condition keeps its time while its status holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def by_type(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The conditions of a ``status`` (None for none yet), keyed by their type."""
    return {c.get("type", ""): c for c in (status or {}).get("conditions", []) or []}


def condition(
    previous: Mapping[str, Mapping[str, Any]],
    kind: str,
    active: bool,
    reason: str,
    message: str,
    stamp: str,
) -> dict[str, str]:
    """Condition ``kind``; ``lastTransitionTime`` moves to ``stamp`` only when its status changes.

    Args:
        previous: The conditions before this reconcile, from :func:`by_type`.
        kind: Condition type.
        active: True or False.
        reason: One CamelCase word.
        message: For a person.
        stamp: Now, RFC 3339.
    """
    status = "True" if active else "False"
    before = previous.get(kind, {})
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": str(since or stamp),
    }
