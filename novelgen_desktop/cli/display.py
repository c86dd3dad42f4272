"""Live progress for a terminal, and plain periodic lines when output is not a terminal.

CI logs and redirected output get one line every few seconds instead of a redraw storm.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.runner import RunStatus

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def status_line(status: RunStatus) -> str:
    p = status.progress
    counts = status.counts
    parts = [
        f"{p.done}/{p.total} done ({p.percent:.1f}%)",
        f"{p.throughput_per_min:.1f} img/min",
        f"ETA {format_duration(p.eta_seconds)}",
        f"workers {status.workers_busy}/{status.workers_total} busy",
    ]
    bad = counts[TaskState.DEAD] + counts[TaskState.REFUSED]
    if bad:
        parts.append(f"{counts[TaskState.DEAD]} dead, {counts[TaskState.REFUSED]} refused")
    if p.cooling_until is not None:
        until = time.strftime("%H:%M:%S", time.localtime(p.cooling_until))
        parts.append(f"all accounts cooling down until {until}")
    if status.paused:
        parts.append("PAUSED")
    return " · ".join(parts)


class ProgressDisplay:
    def __init__(self, stream: TextIO | None = None, *, line_interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.line_interval = line_interval
        self._last_line = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.interactive:
            # Imported here: rich costs ~0.15 s of start-up, which a resume does not need
            # when its output goes to a log.
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import BarColumn, Progress, TextColumn  # noqa: PLC0415

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[line]}"),
                console=Console(file=self.stream),
                refresh_per_second=4,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("images", total=None, line="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def update(self, status: RunStatus) -> None:
        self.show(status.progress.done, status.progress.total, status_line(status))

    def show(self, done: int, total: int, line: str) -> None:
        """Draw ``line`` (a bar of ``done``/``total`` on a terminal); also for progress that
        arrives from a hub as ``job_progress`` rather than from a runner in this process."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total, completed=done, line=line)
            return
        now = time.monotonic()
        if now - self._last_line >= self.line_interval:
            self._last_line = now
            print(line, file=self.stream, flush=True)
