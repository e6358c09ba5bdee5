"""Errors a user can act on."""

from __future__ import annotations


class KubeforgeError(Exception):
    """A problem the user can fix; the message names it and, where one exists, the parameter.

    Args:
        message: What is wrong, in words a user understands.
        parameter: The pipeline or CLI parameter that fixes it, if any.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        self.parameter = parameter
        hint = f" (fix with parameter '{parameter}')" if parameter else ""
        super().__init__(f"{message}{hint}")
