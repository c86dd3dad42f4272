"""The one place where the engine's callbacks become Qt signals.

Views never subscribe to the engine themselves: they connect to this bridge, which turns the
job service's change and event callbacks into queued signals, runs the author's actions as
asyncio tasks on the shared qasync loop (reporting failures as one ``failed`` signal instead
of tracebacks), and ticks at a fixed rate so every live view repaints on the same beat —
many small updates per second from ten busy workers must not become many repaints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.gui.qt import QtCore
from novelgen_desktop.store.records import EventLogged

log = logging.getLogger(__name__)
T = TypeVar("T")

TICK_MS = 500
"""The views' refresh beat: twice a second is live enough for tables and charts and costs
little with 10,000 rows (only changed cells repaint)."""


class EngineBridge(QtCore.QObject):
    """Signals for the views, actions for the engine."""

    jobs_changed = QtCore.Signal()  # a job was submitted, started, stopped or changed state
    event_logged = QtCore.Signal(object)  # an EventLogged, as it happens
    tick = QtCore.Signal()  # the fixed refresh beat
    job_selected = QtCore.Signal(str)  # the job the author looks at ("" for none)
    failed = QtCore.Signal(str, str)  # (what was being done, the error, in words)
    info = QtCore.Signal(str)  # a short confirmation for the status bar

    def __init__(self, session: DesktopSession, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.selected_job: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.tick.emit)
        session.service.on_change(self._on_change)
        session.service.on_event(self._on_event)

    def start_ticking(self, interval_ms: int = TICK_MS) -> None:
        self._timer.start(interval_ms)

    def stop(self) -> None:
        """Detach from the engine (the window is closing for good)."""
        self._timer.stop()
        self.session.service.remove_on_change(self._on_change)
        self.session.service.remove_on_event(self._on_event)

    def _on_change(self) -> None:
        self.jobs_changed.emit()

    def _on_event(self, event: EventLogged) -> None:
        self.event_logged.emit(event)

    def select_job(self, job_id: str | None) -> None:
        if job_id == self.selected_job:
            return
        self.selected_job = job_id
        self.job_selected.emit(job_id or "")

    def spawn(
        self,
        what: str,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], None] | None = None,
    ) -> asyncio.Task[T]:
        """Run an engine action without blocking the window. ``what`` names it for the error
        message ("pause job", "move tasks to the top"); a NovelGenError (bad input, a job that
        cannot do this now) becomes ``failed(what, message)``, anything else is logged too."""
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def finished(done: asyncio.Task[T]) -> None:
            self._tasks.discard(done)
            if done.cancelled():
                return
            error = done.exception()
            if error is None:
                if on_done is not None:
                    try:
                        on_done(done.result())
                    except RuntimeError as exc:
                        # The view that asked is gone (the window closed while its read was
                        # in flight): nothing is left to update.
                        if "already deleted" not in str(exc):
                            raise
                        log.debug("%s: its view was deleted before the result came", what)
                return
            if isinstance(error, NovelGenError):
                self.failed.emit(what, str(error))
            else:
                log.error("%s failed", what, exc_info=error)
                self.failed.emit(what, f"{type(error).__name__}: {error}")

        task.add_done_callback(finished)
        return task

    async def settle(self) -> None:
        """Wait for every action started so far (tests, and quitting)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


__all__ = ["TICK_MS", "EngineBridge"]
