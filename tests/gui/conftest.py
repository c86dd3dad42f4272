"""GUI test fixtures: a qasync loop on pytest-qt's QApplication and a started desktop session
(real job service, real hub on a free port, simulated tabs over the real protocol)."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import qasync

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.desktop.settings import DesktopSettings
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import QtWidgets
from novelgen_desktop.gui.style_editor import open_editors
from novelgen_desktop.paths import resolve_data_dir

T = TypeVar("T")


class _TestLoop(qasync.QEventLoop):  # type: ignore[misc]
    """A qasync loop that stays asyncio's running loop between ``run`` calls.

    qasync runs ready callbacks from Qt's event processing, also outside ``run`` (its own
    last pass after ``run_until_complete``, qtbot.waitUntil, pytest-qt's teardown). Without a
    running loop those callbacks die with "no running event loop", or bind an asyncio.Event
    to no loop for good (the job dispatcher's wake event: a later wait fails) — a flaky
    failure in any test with live sims. In the app the loop runs for its whole life."""

    def run_forever(self) -> Any:
        try:
            return super().run_forever()
        finally:
            asyncio.events._set_running_loop(self)


@pytest.fixture
def qloop(qapp: QtWidgets.QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """asyncio on the Qt event loop, as in the app (one loop for hub, engine and widgets)."""
    # As in the app (gui/app.py): closing the last window does not end Qt's loop — here it
    # would stop a run_until_complete halfway.
    qapp.setQuitOnLastWindowClosed(False)
    loop = _TestLoop(qapp)
    asyncio.set_event_loop(loop)
    asyncio.events._set_running_loop(loop)
    try:
        yield loop
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        loop.close()
        # The closed loop leaves Qt objects (timers, notifiers) in reference cycles; if the
        # garbage collector frees them later on a worker thread, Qt aborts ("Timers cannot
        # be stopped from another thread"). Free them here, on the GUI thread.
        gc.collect()


@pytest.fixture
def run(qloop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    """Run a coroutine to completion on the qasync loop (widgets keep painting meanwhile)."""

    def runner(awaitable: Awaitable[T]) -> T:
        return qloop.run_until_complete(awaitable)

    return runner


@pytest.fixture(autouse=True)
def collect_qt_garbage() -> Iterator[None]:
    """Free unreachable Qt objects on the GUI thread, before and after each test.

    Each test's closed qasync loop leaves its QObjects (``_SimpleTimer``, ``Signaller``, the
    executor's ``_QThreadWorker`` threads) in reference cycles. Left to the collector, they
    are destroyed on whichever thread allocates next — the store thread, the parser's
    executor — and Qt aborts ("Timers cannot be stopped from another thread")."""
    gc.collect()
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def close_style_editors() -> Iterator[None]:
    """No style bible editor outlives its test: one left open with unsaved text would make
    a later test's quit stop and ask about it."""
    yield
    for editor in open_editors():
        editor.editor.document().setModified(False)
        editor.close()
        editor.deleteLater()


@pytest.fixture
def bridge(session: DesktopSession) -> Iterator[EngineBridge]:
    """The engine bridge the views take (not ticking: tests tick it or call refresh)."""
    bridge = EngineBridge(session)
    yield bridge
    bridge.stop()


@pytest.fixture
def wait_until(qloop: asyncio.AbstractEventLoop) -> Callable[..., None]:
    """Run the loop (engine, hub, sims and widgets) until ``condition()`` holds.

    ``qtbot.waitUntil`` only processes Qt events; qasync runs asyncio's callbacks only while
    the loop runs, so the engine would stand still during it."""

    def waiter(condition: Callable[[], Any], timeout: float = 20.0) -> None:
        async def poll() -> None:
            async with asyncio.timeout(timeout):
                while True:
                    holds = condition()
                    if inspect.isawaitable(holds):  # an async check (reads the store)
                        holds = await holds
                    if holds:
                        return
                    await asyncio.sleep(0.02)

        qloop.run_until_complete(poll())

    return waiter


def make_settings(**changes: Any) -> DesktopSettings:
    base = DesktopSettings(hub_port=0, sim_latency=0.05, default_workers=2, notifications=False)
    return base.__class__(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


@pytest.fixture
def session(run: Callable[[Awaitable[Any]], Any]) -> Iterator[DesktopSession]:
    """A started session on a free port, no simulated tabs yet (tests start them)."""
    desktop = DesktopSession(resolve_data_dir(None), make_settings())
    run(desktop.start(port=0, simulate=False))
    try:
        yield desktop
    finally:
        run(desktop.stop())
