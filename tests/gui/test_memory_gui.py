"""The memory governor in the window: its holds are shaded on the memory chart, the status bar
says the state, the tray notifies once per episode, new thresholds apply at once, and "Free
memory now" runs the cleanup strategies and reports them in the log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from novelgen_desktop.desktop.metrics import MetricsRecorder
from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.engine.model import MemoryLevel
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.charts import ChartsView
from novelgen_desktop.gui.main_window import MainWindow
from novelgen_desktop.memory.readings import MemoryReading
from novelgen_desktop.store.records import EventLogged

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def feed(session: DesktopSession, *percents: float) -> None:
    """Synthetic readings one second apart, ending now."""
    monitor = session.monitor
    assert monitor is not None
    now = time.time()
    for i, pct in enumerate(percents):
        monitor.observe(MemoryReading(ts=now - len(percents) + i + 1, system_percent=pct))


@pytest.fixture
def quiet_monitor(session: DesktopSession, run: Callable[..., Any]) -> DesktopSession:
    """The session's monitor stopped: only the synthetic readings of the test count."""
    assert session.monitor is not None
    run(session.monitor.stop())
    return session


def test_holds_are_shaded_on_the_memory_chart(
    qtbot: Any, quiet_monitor: DesktopSession, bridge: EngineBridge
) -> None:
    session = quiet_monitor
    recorder = MetricsRecorder.for_session(session, interval=3600)
    view = ChartsView(bridge, recorder, refresh_ms=3600_000)
    qtbot.addWidget(view)
    try:
        feed(session, 50, 85, 85, 50, 50, 50, 50, 50, 90)
        view.refresh(force=True)
        assert len(view.held_regions) == 2
        first, second = (region.getRegion() for region in view.held_regions)
        assert first[1] - first[0] == pytest.approx(2.0)  # 85 % at t, released 2 s later
        assert second[1] >= second[0]  # the one still going ends now
        feed(session, 40)
        view.refresh(force=True)
        assert len(view.held_regions) == 2
    finally:
        view.close()


def test_status_bar_tray_and_settings_follow_the_governor(
    qtbot: Any, quiet_monitor: DesktopSession, bridge: EngineBridge
) -> None:
    session = quiet_monitor
    session.settings = replace(session.settings, notifications=True)
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    notes: list[str] = []
    window.tray.notified.connect(lambda title, _message: notes.append(title))
    feed(session, 83)
    window._update_status()
    assert "memory pressure (83 %)" in window._status.text()
    assert notes == ["Dispatch paused: memory is short"]
    feed(session, 84, 86)
    assert notes == ["Dispatch paused: memory is short"]  # one episode, one notification
    monitor = session.monitor
    assert monitor is not None
    session.apply_memory_settings(
        replace(session.settings, memory_resume_percent=85.0, memory_pause_percent=88.0)
    )
    assert monitor.governor.settings.resume_percent == 85.0
    feed(session, 84.5)
    assert monitor.state is MemoryLevel.RECOVERING
    window._update_status()
    assert "memory recovering" in window._status.text()
    window.close()


def test_free_memory_now_runs_the_strategies_and_logs_them(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    wait_until: Callable[..., None],
) -> None:
    events: list[EventLogged] = []
    session.service.on_event(events.append)
    messages: list[str] = []
    bridge.info.connect(messages.append)
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    window.free_memory()
    wait_until(lambda: any(m.startswith("memory freed") for m in messages), timeout=20)
    done = {e.data["strategy"] for e in events if e.kind == "memory_cleanup" and e.data}
    assert {"checkpoint_wal", "collect_garbage", "prune_snapshots"} <= done
    window.close()


def test_workers_table_says_a_tab_is_held_for_memory(
    quiet_monitor: DesktopSession, wait_until: Callable[..., None]
) -> None:
    from novelgen_desktop.desktop.session import WorkerState
    from novelgen_desktop.gui.workers_view import state_text

    session = quiet_monitor
    session.start_simulated_workers(2)
    wait_until(lambda: sum(r.connected for r in session.worker_rows()) == 2, timeout=20)
    feed(session, 85)
    rows = session.worker_rows()
    assert {r.state for r in rows} == {WorkerState.MEMORY}
    assert state_text(rows[0]) == "held for memory: system memory 85.0 % ≥ 80 %"
    feed(session, 40)
    monitor = session.monitor
    assert monitor is not None
    monitor.observe(MemoryReading(ts=time.time() + 10, system_percent=40))
    assert {r.state for r in session.worker_rows()} == {WorkerState.IDLE}
