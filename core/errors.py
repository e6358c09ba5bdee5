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


def user_frame(exc: BaseException) -> str:
    """``file:line`` of the deepest traceback frame outside Kubeforge, the stdlib and packages.

    That is where a user's own code (a labelling function, say) raised; "" when none of the
    frames is the user's.
    """
    import sysconfig
    import traceback

    libraries = tuple(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))
    found = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        path = frame.f_code.co_filename
        if module.startswith("kubeforge.") or path.startswith(("<", *libraries)):
            continue
        found = f"{path}:{line}"
    return found


def describe_failure(exc: BaseException) -> str:
    """One line for any exception: a Kubeforge error's message, else the type, cause and place.

    A :class:`KubeforgeError` already names the problem and the parameter; any other exception
    becomes ``TypeError: <message> (raised at lfs.py:12)`` with the user's own file and line
    when one of the frames is theirs.
    """
    if isinstance(exc, KubeforgeError):
        return str(exc)
    text = str(exc).strip().splitlines()
    where = user_frame(exc)
    place = f" (raised at {where})" if where else ""
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}{place}"
