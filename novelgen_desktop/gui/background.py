"""Work off the UI thread for windows that do not need the engine (the style bible editor).

Checking a style bible reads and hashes every reference image, and reading a script of
10,000 panels takes a second: neither may freeze the window while the author types.
:class:`LatestCall` runs one function at a time on a thread of its own and hands the result
back on the UI thread. Only the latest request matters — a check of the text as it was three
keystrokes ago is worthless — so a request made while one runs replaces any request still
waiting, and the caller tells stale results apart by its own generation number.

The worker thread never touches a Qt object: a timer on the UI thread polls the future while
something runs (Qt objects destroyed from another thread abort the process).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from novelgen_desktop.gui.qt import QtCore

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_MS = 15


class LatestCall(QtCore.QObject, Generic[T]):
    """Run ``func`` calls one at a time off the UI thread; deliver each result (or the
    exception it raised) to its callback on the UI thread."""

    def __init__(self, name: str, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._running: tuple[concurrent.futures.Future[T], Callable[[T], None]] | None = None
        self._waiting: tuple[Callable[[], T], Callable[[T], None]] | None = None
        self._failed: Callable[[BaseException], None] | None = None
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.destroyed.connect(lambda *_args: self._executor.shutdown(wait=False))

    @property
    def busy(self) -> bool:
        """A call is running or waiting."""
        return self._running is not None or self._waiting is not None

    def on_failure(self, handler: Callable[[BaseException], None]) -> None:
        """Where an exception raised by a call goes (logged when nobody asked)."""
        self._failed = handler

    def submit(self, func: Callable[[], T], done: Callable[[T], None]) -> None:
        """Run ``func`` after the call in progress (replacing any call still waiting)."""
        self._waiting = (func, done)
        if self._running is None:
            self._start_next()

    def shutdown(self) -> None:
        """Forget what waits and stop polling (the window is closing)."""
        self._waiting = None
        self._running = None
        self._timer.stop()
        self._executor.shutdown(wait=False)

    def _start_next(self) -> None:
        if self._waiting is None:
            self._timer.stop()
            return
        func, done = self._waiting
        self._waiting = None
        self._running = (self._executor.submit(func), done)
        self._timer.start()

    def _poll(self) -> None:
        if self._running is None:
            self._timer.stop()
            return
        future, done = self._running
        if not future.done():
            return
        self._running = None
        try:
            error = future.exception()
            if error is None:
                done(future.result())
            elif self._failed is not None:
                self._failed(error)
            else:
                log.error("background call failed", exc_info=error)
        finally:
            self._start_next()

    def wait(self, timeout: float = 30.0) -> None:
        """Block until nothing runs or waits, delivering results (tests, saving)."""
        deadline = QtCore.QDeadlineTimer(int(timeout * 1000))
        while self.busy and not deadline.hasExpired():
            if self._running is not None:
                concurrent.futures.wait([self._running[0]], timeout=0.05)
            self._poll()


__all__ = ["LatestCall"]
