"""A local run a person can follow: one live line per stage, the kfp logs in a folder.

kfp.local prints every task's log (executor JSON, tracebacks) on stdout. While a pipeline runs,
:class:`RunConsole` takes stdout and stderr: every line goes to ``<run dir>/pipeline.log`` and to
the task's own ``<run dir>/<task>.log``; the markers kfp prints when a task starts and ends move
that task's line (state, elapsed time, then its key figure). With ``verbose`` the logs stream
on as well. On a terminal the lines are live (rich); elsewhere each is printed once, when its
stage ends, so a CI log or a test reads the same lines.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")

# A stage's key figure from its MLflow metrics: ``figure(stage) -> text`` ("" when none).
Figure = Callable[[str], str]


@dataclass
class StageLine:
    """One stage's line: its state, when it started and ended, its key figure."""

    name: str
    state: str = "waiting"  # waiting, running, done, failed
    started: float = 0.0
    ended: float = 0.0
    figure: str = ""

    def elapsed(self, now: float) -> float:
        """Seconds the stage ran (so far)."""
        if not self.started:
            return 0.0
        return (self.ended or now) - self.started

    def text(self, now: float) -> str:
        """The plain line: ``✓ ingest      3.1 s  1797 rows kept ...``."""
        mark = {"waiting": "·", "running": "…", "done": "✓", "failed": "✗"}[self.state]
        elapsed = f"{self.elapsed(now):6.1f} s" if self.started else " " * 8
        return f"{mark} {self.name:<9} {elapsed}  {self.figure}".rstrip()


@dataclass
class RunConsole:
    """Takes a run's output, keeps its logs, shows one line per stage.

    Args:
        run_dir: Where the logs go (``.kubeforge/runs/<run>/``); created.
        stages: The pipeline's tasks in run order.
        figure: Gives a finished stage's key figure.
        verbose: Stream the kfp logs too.
        out: Where the lines go (the real stdout).
        live: Live lines (rich) instead of one printed line per finished stage; None for
            "when ``out`` is a terminal".
    """

    run_dir: Path
    stages: list[str]
    figure: Figure
    verbose: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    live: bool | None = None
    lines: dict[str, StageLine] = field(init=False)
    current: str = field(init=False, default="")
    _pending: str = field(init=False, default="")
    _log: Any = field(init=False, default=None)
    _task_logs: dict[str, Any] = field(init=False, default_factory=dict)
    _live: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lines = {name: StageLine(name) for name in self.stages}
        if self.live is None:
            self.live = bool(getattr(self.out, "isatty", lambda: False)())

    def log_path(self, stage: str = "") -> Path:
        """The pipeline's log, or one stage's."""
        return self.run_dir / f"{stage or 'pipeline'}.log"

    def failed_stage(self) -> str:
        """The stage that failed (or was running when the run stopped); "" when none."""
        for line in self.lines.values():
            if line.state == "failed":
                return line.name
        return self.current

    @contextlib.contextmanager
    def capture(self) -> Iterator[RunConsole]:
        """Take stdout and stderr for the run; show the stage lines."""
        self._log = self.log_path().open("a", encoding="utf-8")
        sink = _LineSink(self._line)
        try:
            with (
                self._display(),
                contextlib.redirect_stdout(sink),
                contextlib.redirect_stderr(sink),
            ):
                yield self
        finally:
            sink.flush_pending()
            if self.current and self.lines[self.current].state == "running":
                self._finish(self.current, ok=False)
            for handle in (*self._task_logs.values(), self._log):
                handle.close()

    @contextlib.contextmanager
    def _display(self) -> Iterator[None]:
        if not self.live:
            yield
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out)
        with Live(
            _Render(self),
            console=console,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
        ) as live:
            self._live = live
            yield

    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw)
        self._log.write(line + "\n")
        self._log.flush()
        if self.verbose:
            self.out.write(line + "\n")
            self.out.flush()
        started = _STARTED.search(line)
        if started:
            self._start(started.group(1))
        if self.current:
            handle = self._task_logs.get(self.current)
            if handle is None:
                handle = self._task_logs[self.current] = self.log_path(self.current).open(
                    "a", encoding="utf-8"
                )
            handle.write(line + "\n")
            handle.flush()
        finished = _FINISHED.search(line)
        if finished:
            self._finish(finished.group(1), ok=finished.group(2) == "SUCCESS")

    def _start(self, stage: str) -> None:
        line = self.lines.setdefault(stage, StageLine(stage))
        line.state, line.started = "running", time.monotonic()
        self.current = stage

    def _finish(self, stage: str, ok: bool) -> None:
        line = self.lines.setdefault(stage, StageLine(stage))
        line.state, line.ended = ("done" if ok else "failed"), time.monotonic()
        if ok:
            with contextlib.suppress(Exception):  # a figure is a courtesy, never a failure
                line.figure = self.figure(stage)
        else:
            line.figure = f"see {self.log_path(stage)}"
        self.current = ""
        if not self.live:
            self.out.write(line.text(time.monotonic()) + "\n")
            self.out.flush()


class _Render:
    """Rich renderable of the stage lines, recomputed at each refresh (elapsed time moves)."""

    def __init__(self, console: RunConsole) -> None:
        self.console = console

    def __rich__(self) -> Any:
        from rich.text import Text

        now = time.monotonic()
        styles = {"waiting": "dim", "running": "yellow", "done": "green", "failed": "red"}
        text = Text()
        for i, line in enumerate(self.console.lines.values()):
            text.append(("\n" if i else "") + line.text(now), style=styles[line.state])
        return text


class _LineSink(io.TextIOBase):
    """A text stream that hands every complete line to ``on_line``."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *complete, self._pending = self._pending.split("\n")
        for line in complete:
            self._on_line(line.rstrip("\r"))
        return len(text)

    def flush_pending(self) -> None:
        if self._pending:
            self._on_line(self._pending)
            self._pending = ""

    def isatty(self) -> bool:
        return False
