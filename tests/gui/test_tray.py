"""The tray: without one (offscreen) nothing is created and the app falls back to its window;
with one (Xvfb + trayer, in a subprocess) the icon shows, its tooltip follows the running
job, and its menu pauses, resumes and quits. Notifications come once per episode."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession, WorkerRow, WorkerState
from novelgen_desktop.engine.model import JobState
from novelgen_desktop.engine.service import JobView
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import QtCore, QtWidgets
from novelgen_desktop.gui.tray import TrayController, format_eta, progress_text
from novelgen_desktop.sim.worker import SimBehaviour
from novelgen_desktop.store.records import EventLogged

REPO = Path(__file__).resolve().parents[2]


def view(**changes: Any) -> JobView:
    base = JobView(
        job_id="lighthouse-1",
        name="lighthouse",
        state=JobState.RUNNING,
        total=3000,
        done=120,
        failed_terminal=0,
        percent=4.0,
        throughput_per_min=1.5,
        eta_seconds=4800.0,
        cooling_until=None,
        created_at=0.0,
        active=True,
        failures_seen=0,
    )
    return replace(base, **changes)


def test_texts() -> None:
    assert progress_text(view()) == "NovelGen — job lighthouse: 120/3000 (4 %), ETA 1 h 20 min"
    assert progress_text(view(state=JobState.PAUSED)) == (
        "NovelGen — job lighthouse (paused): 120/3000 (4 %)"
    )
    assert progress_text(None) == "NovelGen — no job running"
    assert format_eta(None) == "ETA unknown"
    assert format_eta(42.4) == "ETA 42 s"
    assert format_eta(5 * 60 + 10) == "ETA 5 min"
    assert format_eta(2 * 3600) == "ETA 2 h"


@pytest.fixture
def tray_parts(qtbot: Any, session: DesktopSession) -> Iterator[tuple[EngineBridge, Any]]:
    """A bridge and a window; everything is deleted here, on the GUI thread."""
    bridge = EngineBridge(session)
    window = QtWidgets.QMainWindow()
    qtbot.addWidget(window)
    made: list[TrayController] = []

    def make() -> TrayController:
        tray = TrayController(bridge, window)
        made.append(tray)
        return tray

    yield bridge, make
    for tray in made:
        tray.stop()
        tray.deleteLater()
    bridge.stop()
    bridge.deleteLater()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    gc.collect()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_without_a_tray_nothing_is_created_and_the_window_stays_in_charge(
    tray_parts: Any, session: DesktopSession, run: Any, tmp_path: Path
) -> None:
    bridge, make = tray_parts
    assert not QtWidgets.QSystemTrayIcon.isSystemTrayAvailable()  # offscreen
    tray = make()
    assert tray.available is False
    assert tray.icon is None and tray.menu is None
    assert tray.window_should_hide_on_close() is False
    notes: list[tuple[str, str]] = []
    tray.notified.connect(lambda title, message: notes.append((title, message)))
    session.settings = replace(session.settings, notifications=True)
    bridge.start_ticking(50)

    async def scenario() -> None:
        prompts = tmp_path / "p.txt"
        prompts.write_text("".join(f"panel {i}\n" for i in range(30)), encoding="utf-8")
        job_id = await session.create_job("trayless", session.preview_files([prompts]))
        session.start_simulated_workers(1, SimBehaviour(latency_median=0.05, latency_sigma=0))
        await until(lambda: tray.last_view is not None and tray.last_view.done >= 1)
        assert tray.tooltip.startswith("NovelGen — job trayless: ")

        # Pause all / resume all still reach the engine through the service.
        assert await tray.pause_all() == 1
        await until(lambda: session.service.active_job is None)
        assert (await session.service.view(job_id)).state is JobState.PAUSED
        assert await tray.resume_all() == 1
        assert (await session.service.view(job_id)).state is JobState.RUNNING
        await until(lambda: any(n[0] == "Job finished" for n in notes))

    run(scenario())
    finished = [n for n in notes if n[0] == "Job finished"]
    assert len(finished) == 1 and "trayless finished: 30/30 done" in finished[0][1]


def test_each_notification_comes_once_per_episode(
    tray_parts: Any, session: DesktopSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bridge, make = tray_parts
    tray = make()
    notes: list[str] = []
    tray.notified.connect(lambda title, message: notes.append(title))
    session.settings = replace(session.settings, notifications=True)

    tray.notify_memory_pause(91.0)
    tray.notify_memory_pause(93.0)  # the same episode
    assert notes == ["Dispatch paused: memory is short"]
    tray.notify_memory_resumed()
    tray.notify_memory_pause(92.0)  # a new one
    assert notes.count("Dispatch paused: memory is short") == 2

    notes.clear()
    cooling = view(cooling_until=time.time() + 600)
    tray.show_progress(cooling)
    tray.show_progress(cooling)
    assert notes == ["Every tab is cooling down"]
    tray.show_progress(view())  # an account is back
    tray.show_progress(cooling)
    assert notes == ["Every tab is cooling down"] * 2

    notes.clear()
    rows: list[WorkerRow] = []
    monkeypatch.setattr(session, "worker_rows", lambda: rows)

    def worker(worker_id: str, state: str) -> WorkerRow:
        return WorkerRow(
            worker_id, "acct", "extension", "7", state, None, None, None, 0, 0,
            None, None, None, None, None, False, True,
        )  # fmt: skip

    rows[:] = [worker("tab-1", WorkerState.LOGIN), worker("tab-2", WorkerState.IDLE)]
    tray._check_workers()
    tray._check_workers()
    assert notes == ["A tab needs you"]
    rows[:] = [worker("tab-1", WorkerState.LOGIN), worker("tab-2", WorkerState.LOGIN)]
    tray._check_workers()
    assert notes == ["A tab needs you"] * 2  # tab-2 is new news; tab-1 is not
    rows[:] = [worker("tab-1", WorkerState.IDLE), worker("tab-2", WorkerState.LOGIN)]
    tray._check_workers()
    rows[:] = [worker("tab-1", WorkerState.LOGIN), worker("tab-2", WorkerState.LOGIN)]
    tray._check_workers()
    assert notes == ["A tab needs you"] * 3  # tab-1 logged in, then out again

    notes.clear()
    trip = EventLogged(
        ts=1000.0,
        level="warning",
        kind="orchestration_failing",
        message="tab orchestration failing: 10 of 12 attempts in the last 10 min failed on 3 "
        "tabs (page_error 10); switched to the single-tab fallback (multi_tab off, flags v4); "
        "switch multi_tab on again once the cause is fixed",
        job_id="job-1",
    )
    tray._on_event(trip)
    assert notes == ["Tabs kept failing: down to one tab"]
    tray._on_event(replace(trip, ts=2000.0))  # a later trip, after multi_tab came back on
    assert notes == ["Tabs kept failing: down to one tab"] * 2

    notes.clear()
    session.settings = replace(session.settings, notifications=False)
    tray.notify_memory_resumed()
    tray.notify_memory_pause(95.0)
    assert notes == []  # the author turned them off


# --- a real tray ------------------------------------------------------------------------------

CHILD = r"""
import asyncio, json, os, sys, time
from pathlib import Path

from novelgen_desktop.gui.qt import QtWidgets
import qasync

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.desktop.settings import DesktopSettings
from novelgen_desktop.engine.model import JobState
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.tray import TrayController
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.sim.worker import SimBehaviour

app = QtWidgets.QApplication([])
loop = qasync.QEventLoop(app)
asyncio.set_event_loop(loop)
result = {}


async def until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time; so far: " + json.dumps(result))
        await asyncio.sleep(0.02)


async def main():
    # trayer claims the tray selection a moment after it starts.
    await until(QtWidgets.QSystemTrayIcon.isSystemTrayAvailable, 15.0)
    result["system_tray_available"] = True
    settings = DesktopSettings(hub_port=0, notifications=True, minimize_to_tray=True)
    session = DesktopSession(resolve_data_dir(None), settings)
    await session.start(port=0, simulate=False)
    bridge = EngineBridge(session)
    window = QtWidgets.QMainWindow()
    window.setWindowTitle("NovelGen test window")
    window.show()
    tray = TrayController(bridge, window)
    try:
        result["available"] = tray.available
        await until(lambda: tray.icon.isVisible() and not tray.icon.geometry().isEmpty())
        geometry = tray.icon.geometry()
        result["geometry"] = [geometry.width(), geometry.height()]
        result["icon_null"] = tray.icon.icon().isNull()
        result["hide_on_close"] = tray.window_should_hide_on_close()

        prompts = Path(os.environ["TRAY_TMP"]) / "prompts.txt"
        prompts.write_text("".join(f"panel {i}\n" for i in range(40)), encoding="utf-8")
        job_id = await session.create_job("tray", session.preview_files([prompts]))
        session.start_simulated_workers(1, SimBehaviour(latency_median=0.1, latency_sigma=0.0))
        bridge.start_ticking(50)
        await until(lambda: tray.last_view is not None and tray.last_view.done >= 2)
        await until(lambda: "/40 (" in tray.icon.toolTip())
        result["tooltip"] = tray.icon.toolTip()
        if os.environ.get("TRAY_SCREENSHOT"):
            app.primaryScreen().grabWindow(0).save(os.environ["TRAY_SCREENSHOT"])

        tray.pause_action.trigger()
        await bridge.settle()
        await until(lambda: session.service.active_job is None)
        result["after_pause"] = (await session.service.view(job_id)).state.value
        paused_at = (await session.service.view(job_id)).done
        await until(lambda: "(paused)" in tray.icon.toolTip() or "no job" in tray.icon.toolTip())
        tray.resume_action.trigger()
        await bridge.settle()
        result["after_resume"] = (await session.service.view(job_id)).state.value
        await until(lambda: tray.last_view is not None and tray.last_view.done > paused_at)
        result["progress_after_resume"] = True

        window.hide()
        tray.show_action.trigger()
        result["window_shown"] = window.isVisible()

        notes = []
        tray.notified.connect(lambda title, message: notes.append(title))
        tray.notify_memory_pause(91.0)
        tray.notify_memory_pause(92.0)
        result["notes"] = notes

        quits = []
        tray.quit_requested.connect(lambda: quits.append(True))
        tray.quit_action.trigger()
        result["quit_requested"] = len(quits)
    finally:
        tray.stop()
        bridge.stop()
        await session.stop()


try:
    loop.run_until_complete(asyncio.wait_for(main(), 90))
finally:
    loop.close()  # ends qasync's executor threads, as the app does on quitting
print("RESULT " + json.dumps(result), flush=True)
"""


def _display_number(read_fd: int, timeout: float = 15.0) -> str:
    """Xvfb writes the display it chose (``-displayfd``) once it accepts connections."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, "Xvfb did not start"
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            chunk = os.read(read_fd, 64)
            assert chunk, "Xvfb exited before choosing a display"
            data += chunk
    return data.decode().strip()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_a_real_tray_under_xvfb_and_trayer(tmp_path: Path) -> None:
    for program, package in (("Xvfb", "xvfb"), ("trayer", "trayer")):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (apt-get install {package}); no tray host")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    processes = [xvfb]
    try:
        display = _display_number(read_fd)
        env = {
            **os.environ,
            "DISPLAY": f":{display}",
            "QT_QPA_PLATFORM": "xcb",
            "TRAY_TMP": str(tmp_path),
        }
        trayer = subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(trayer)
        child = subprocess.run(
            [sys.executable, "-c", CHILD],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        os.close(read_fd)
        for process in reversed(processes):
            _stop(process)
    lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
    assert child.returncode == 0 and lines, f"tray child failed:\n{child.stderr[-4000:]}"
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["system_tray_available"] and result["available"]
    assert result["geometry"][0] > 0 and result["geometry"][1] > 0  # embedded in the tray
    assert result["icon_null"] is False
    assert result["hide_on_close"] is True
    assert result["tooltip"].startswith("NovelGen — job tray: ")
    assert "/40 (" in result["tooltip"] and "ETA" in result["tooltip"]
    assert result["after_pause"] == "paused"
    assert result["after_resume"] == "running"
    assert result["progress_after_resume"] is True
    assert result["window_shown"] is True
    assert result["notes"] == ["Dispatch paused: memory is short"]
    assert result["quit_requested"] == 1
