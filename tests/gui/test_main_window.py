"""The main window as the author uses it: drop a script, watch a run, close, quit, start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.main_window import MainWindow
from novelgen_desktop.gui.qt import QtCore, QtWidgets
from novelgen_desktop.gui.style_editor import TEMPLATE, open_editors
from novelgen_desktop.sim.worker import SimBehaviour
from novelgen_desktop.store.database import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def window(session: DesktopSession, wait_until: Any) -> Iterator[MainWindow]:
    bridge = EngineBridge(session)
    main = MainWindow(bridge)
    main.show()
    bridge.start_ticking(100)
    yield main
    # Quit the way the author does (not qtbot's close: that would start a quit mid-teardown).
    if not main.quitting:
        quit_seen: list[bool] = []
        main.quit_finished.connect(lambda: quit_seen.append(True))
        main.request_quit()
        wait_until(lambda: quit_seen, timeout=60)
    main.deleteLater()


def file_mime(*paths: Path) -> QtCore.QMimeData:
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def script(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "pages.md"
    lines = ["# Chapter One", ""]
    for page in range(1, count // 4 + 1):
        lines += [f"## Page {page}", ""]
        lines += [f"- panel {panel} of page {page}, the keeper climbs" for panel in range(1, 5)]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_a_drop_on_the_window_previews_the_files_then_creates_the_job(
    qtbot: Any,
    window: MainWindow,
    session: DesktopSession,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    stray = tmp_path / "cover.png"
    stray.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    window.handle_drop(file_mime(script(tmp_path, 8), stray))
    wait_until(window.last_import.done, timeout=10)
    dialog = window.last_import.result()
    assert len(dialog.import_result.specs) == 8
    assert any("cover.png" in line for line in dialog.problem_lines())  # said, not lost
    assert run(session.service.list_jobs()) == []  # nothing before Create
    dialog.create_job()
    wait_until(lambda: window.bridge.selected_job is not None, timeout=10)
    (job,) = run(session.service.list_jobs())
    assert window.bridge.selected_job == job.job_id and job.total == 8
    assert window.tabs.currentWidget() is window.tasks_view


def test_a_simulated_run_fills_the_tables_and_charts(
    qtbot: Any,
    window: MainWindow,
    session: DesktopSession,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    job_id = run(session.create_job("run", session.preview_files([script(tmp_path, 24)])))
    window.bridge.select_job(job_id)
    session.start_simulated_workers(2, SimBehaviour(latency_median=0.02, image_size=64))

    async def finished() -> bool:
        return (await session.service.view(job_id)).state is JobState.FINISHED

    wait_until(finished, timeout=30)
    tasks = window.tasks_view.model
    wait_until(
        lambda: (
            tasks.rowCount() == 24
            and all(tasks.row_at(i).state is TaskState.DONE for i in range(24))
        ),
        timeout=10,
    )
    workers = window.workers_view.model
    wait_until(lambda: workers.rowCount() == 2, timeout=10)
    assert sum(workers.row(i).done for i in range(2)) == 24
    charts = window.charts_view
    window.tabs.setCurrentWidget(charts)
    cumulative = charts.recorder.throughput.cumulative
    wait_until(lambda: len(cumulative) > 0 and cumulative.values()[-1] == 24.0)
    assert len(charts.recorder.memory.system_percent) > 0
    wait_until(lambda: charts.curve_points(charts.done_curve) > 0)  # drawn at its next beat
    assert charts.curve_points(charts.throughput_curve) > 0
    window.tabs.setCurrentWidget(window.gallery_view)
    wait_until(lambda: window.gallery_view.model.rowCount() == 24)


def test_closing_the_window_mid_job_without_a_tray_drains_and_quits(
    qtbot: Any,
    window: MainWindow,
    session: DesktopSession,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    assert not window.tray.available  # offscreen: no tray, so closing means quitting
    job_id = run(session.create_job("drain", session.preview_files([script(tmp_path, 40)])))
    session.start_simulated_workers(2, SimBehaviour(latency_median=0.2, latency_sigma=0.0))

    async def two_done() -> bool:
        return (await session.service.view(job_id)).done >= 2

    wait_until(two_done, timeout=20)
    quit_seen: list[bool] = []
    window.quit_finished.connect(lambda: quit_seen.append(True))
    window.close()
    wait_until(lambda: quit_seen, timeout=30)
    assert not session.started and not window.isVisible()
    with Store(session.paths.database) as store:
        states = store.count_by_state(job_id)
        job = store.find_job(job_id, exact=True)
    assert states[TaskState.LEASED] == 0  # every lease ended: landed or given back
    assert job.state is JobState.RUNNING  # quitting is not pausing: it resumes next start
    snapshots = sorted(session.paths.snapshots_dir(job_id).glob("*"))
    assert snapshots, "quitting writes a snapshot"
    done = states[TaskState.DONE]
    assert done >= 2
    out = Path(job.out_dir)
    assert len([p for p in out.rglob("*.png")]) == done  # no image lost, none extra


@pytest.mark.qt_log_ignore("This plugin does not support raise", extend=True)
def test_the_style_menu_opens_the_editor_and_quitting_asks_about_unsaved_text(
    window: MainWindow, session: DesktopSession, wait_until: Any, tmp_path: Path
) -> None:
    [style_menu] = [a.menu() for a in window.menuBar().actions() if a.text() == "&Style"]
    assert isinstance(style_menu, QtWidgets.QMenu)
    [new_bible] = [a for a in style_menu.actions() if a.text() == "&New style bible…"]
    new_bible.trigger()
    [editor] = open_editors()
    assert editor.isVisible() and editor.parentWidget() is window
    assert editor.text() == TEMPLATE
    assert window.unsaved_editors() == []
    editor.editor.appendPlainText("# the look of chapter 3, not saved yet")
    assert window.unsaved_editors() == [editor]

    quit_seen: list[bool] = []
    window.quit_finished.connect(lambda: quit_seen.append(True))
    window.request_quit()  # asks first: Cancel keeps everything running
    assert not window.quitting and session.started
    assert editor.save_box is not None and editor.save_box.isVisible()
    editor.save_box.button(QtWidgets.QMessageBox.StandardButton.Cancel).click()
    assert not window.quitting and editor.isVisible() and editor.modified

    target = tmp_path / "look.toml"
    editor.path = target  # as if it had been saved there before: Save writes it
    window.request_quit()
    assert editor.save_box is not None
    editor.save_box.button(QtWidgets.QMessageBox.StandardButton.Save).click()
    assert target.read_text(encoding="utf-8").endswith("# the look of chapter 3, not saved yet")
    wait_until(lambda: quit_seen, timeout=60)
    assert window.quitting and not session.started


def test_novelgen_with_no_command_opens_the_window_and_quits_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "desktop-settings.json").write_text(json.dumps({"hub_port": 0}), encoding="utf-8")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "NOVELGEN_DATA_DIR": str(data)}
    process = subprocess.Popen(
        [sys.executable, "-m", "novelgen_desktop"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        seen = ""
        while "desktop hub listening" not in seen:
            line = process.stderr.readline()
            assert line or process.poll() is None, f"exited early: {seen}"
            seen += line
            assert time.monotonic() < deadline, seen
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
