"""Jobs → Feature flags…: the flags in force, kill switches, instant rollback (also one typed in
another process), and the experiments' figures for a job."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.flags.document import FlagSetting, Variant
from novelgen_desktop.flags.registry import FLAGS
from novelgen_desktop.flags.report import wilson
from novelgen_desktop.flags.service import open_flags
from novelgen_desktop.flags.text import setting_text
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.flags_view import (
    NO_EXPERIMENT,
    FlagColumn,
    FlagsWindow,
    ReportColumn,
)
from novelgen_desktop.gui.main_window import MainWindow
from novelgen_desktop.gui.qt import Qt, QtWidgets

EXPERIMENT = FlagSetting(
    variants=(Variant("control", 50, False), Variant("fresh", 50, True)), salt="gui-test"
)


@pytest.fixture
def window(bridge: EngineBridge, qtbot: Any) -> Iterator[FlagsWindow]:
    flags = FlagsWindow(bridge)
    qtbot.addWidget(flags)
    flags.show()
    yield flags
    flags.close()


def value_item(window: FlagsWindow, name: str) -> QtWidgets.QTableWidgetItem:
    item = window.table.item(window.row_of(name), FlagColumn.VALUE)
    assert item is not None
    return item


def report_row(window: FlagsWindow, row: int) -> list[str]:
    cells = []
    for column in ReportColumn:
        item = window.report_table.item(row, column)
        cells.append("" if item is None else item.text())
    return cells


def test_the_table_shows_every_flag_with_its_value_and_source(
    window: FlagsWindow, session: DesktopSession
) -> None:
    assert window.table.rowCount() == len(FLAGS)
    current = session.flags.current
    for flag in FLAGS:
        assert window.cell_text(flag.name, FlagColumn.NAME) == flag.name
        assert window.cell_text(flag.name, FlagColumn.VALUE) == setting_text(
            current.setting(flag.name)
        )
        assert window.cell_text(flag.name, FlagColumn.SOURCE) == "default"
        assert window.cell_text(flag.name, FlagColumn.OWNER) == flag.owner
        assert (window.cell_text(flag.name, FlagColumn.KILL_SWITCH) == "✓") == flag.kill_switch
        name_item = window.table.item(window.row_of(flag.name), FlagColumn.NAME)
        assert name_item is not None and flag.description in name_item.toolTip()
        checkable = bool(value_item(window, flag.name).flags() & Qt.ItemFlag.ItemIsUserCheckable)
        assert checkable == flag.kill_switch
    assert window.cell_text("multi_tab", FlagColumn.VALUE) == "on"
    assert value_item(window, "multi_tab").checkState() == Qt.CheckState.Checked
    assert window.cell_text("fresh_chat", FlagColumn.VALUE) == "off"
    assert window.header.text() == f"Flag set v{current.version}"
    assert window.problems.isHidden()
    # Only the first recorded set: nothing to roll back to, no rollback to release.
    assert not window.rollback_button.isEnabled()
    assert window.release_button.isHidden()

    # An experiment set elsewhere (the service the terminal also writes through) shows live.
    session.flags.set_local("fresh_chat", EXPERIMENT)
    assert window.cell_text("fresh_chat", FlagColumn.VALUE) == (
        "experiment: control=off (50 %), fresh=on (50 %)"
    )
    assert window.cell_text("fresh_chat", FlagColumn.SOURCE) == "local file"
    assert window.header.text() == f"Flag set v{session.flags.current.version}"


def test_unticking_a_kill_switch_writes_the_local_file(
    window: FlagsWindow, session: DesktopSession, qtbot: Any
) -> None:
    value_item(window, "multi_tab").setCheckState(Qt.CheckState.Unchecked)
    qtbot.waitUntil(lambda: not session.flags.current.enabled("multi_tab"), timeout=2000)
    current = session.flags.current
    assert current.value("multi_tab") is False
    assert current.source("multi_tab") == "local file"
    written = json.loads(session.flags.files.local.read_text(encoding="utf-8"))
    assert written["flags"]["multi_tab"] is False
    assert window.cell_text("multi_tab", FlagColumn.VALUE) == "off"
    assert window.cell_text("multi_tab", FlagColumn.SOURCE) == "local file"
    assert value_item(window, "multi_tab").checkState() == Qt.CheckState.Unchecked
    assert f"v{current.version}: multi_tab on → off" in window.status.text()
    assert window.rollback_button.isEnabled()  # the first set is there to go back to


def test_an_override_decides_and_the_window_says_so(
    window: FlagsWindow, session: DesktopSession, qtbot: Any
) -> None:
    service = session.flags
    service.overrides = {"multi_tab": FlagSetting(value=True)}
    service.override_sources = {"multi_tab": "environment NOVELGEN_FLAG_MULTI_TAB"}
    service.refresh("override", force=True)
    assert window.cell_text("multi_tab", FlagColumn.SOURCE) == (
        "environment NOVELGEN_FLAG_MULTI_TAB"
    )
    value_item(window, "multi_tab").setCheckState(Qt.CheckState.Unchecked)
    qtbot.waitUntil(lambda: "decides it" in window.status.text(), timeout=2000)
    # The file says off (other processes follow it); this process keeps its override …
    written = json.loads(service.files.local.read_text(encoding="utf-8"))
    assert written["flags"]["multi_tab"] is False
    assert service.current.value("multi_tab") is True
    # … and the checkbox does not pretend otherwise.
    assert value_item(window, "multi_tab").checkState() == Qt.CheckState.Checked
    assert window.cell_text("multi_tab", FlagColumn.VALUE) == "on"
    assert "environment NOVELGEN_FLAG_MULTI_TAB" in window.status.text()


def test_roll_back_restores_the_previous_set_and_release_ends_it(
    window: FlagsWindow, session: DesktopSession, qtbot: Any
) -> None:
    first = session.flags.current.version
    window.set_switch("multi_tab", False)
    changed = session.flags.current.version
    assert window.rollback_button.isEnabled()

    qtbot.mouseClick(window.rollback_button, Qt.MouseButton.LeftButton)
    current = session.flags.current
    assert current.pinned_to == first
    assert current.value("multi_tab") is True
    assert window.cell_text("multi_tab", FlagColumn.VALUE) == "on"
    assert window.cell_text("multi_tab", FlagColumn.SOURCE) == f"rollback to v{first}"
    assert value_item(window, "multi_tab").checkState() == Qt.CheckState.Checked
    assert window.header.text() == f"Flag set v{current.version} — rolled back to v{first}"
    assert re.fullmatch(
        rf"v{current.version}: rollback to v{first} \(multi_tab off → on\) in \d+ ms — .*",
        window.status.text(),
    )
    assert current.version == changed + 1
    assert not window.release_button.isHidden()
    reasons = [window.history.item(row, 2).text() for row in range(window.history.rowCount())]
    assert reasons[0] == f"rollback to v{first} (current)"
    assert reasons[-1].endswith("(restored)")

    qtbot.mouseClick(window.release_button, Qt.MouseButton.LeftButton)
    current = session.flags.current
    assert current.pinned_to is None
    assert current.value("multi_tab") is False  # the local file decides again
    assert window.header.text() == f"Flag set v{current.version}"
    assert window.release_button.isHidden()
    assert window.cell_text("multi_tab", FlagColumn.SOURCE) == "local file"
    assert "rollback released" in window.status.text()


def test_a_version_chosen_in_the_history_can_be_restored(
    window: FlagsWindow, session: DesktopSession, qtbot: Any
) -> None:
    first = session.flags.current.version
    window.set_switch("multi_tab", False)
    window.set_switch("memory_governor", False)
    assert not window.restore_button.isEnabled()  # nothing chosen
    window.select_version(session.flags.current.version)
    assert not window.restore_button.isEnabled()  # the current one: nothing to restore
    window.select_version(first)
    assert window.restore_button.isEnabled()
    qtbot.mouseClick(window.restore_button, Qt.MouseButton.LeftButton)
    current = session.flags.current
    assert current.pinned_to == first
    assert current.enabled("multi_tab") and current.enabled("memory_governor")
    assert "multi_tab off → on; memory_governor off → on" in window.status.text()
    assert window.cell_text("memory_governor", FlagColumn.VALUE) == "on"


def test_a_rollback_typed_in_another_process_shows_within_a_second(
    window: FlagsWindow, session: DesktopSession, wait_until: Any
) -> None:
    first = session.flags.current.version
    window.set_switch("multi_tab", False)
    assert window.cell_text("multi_tab", FlagColumn.VALUE) == "off"
    other = open_flags(session.paths.root)  # as `novelgen flags rollback` in a terminal
    try:
        version = other.rollback()
    finally:
        other.close()
    # The session's poll (every 0.2 s while it is started) picks it up; the window follows.
    wait_until(lambda: window.cell_text("multi_tab", FlagColumn.VALUE) == "on", timeout=1.5)
    assert window.header.text() == f"Flag set v{version.version} — rolled back to v{first}"
    assert window.cell_text("multi_tab", FlagColumn.SOURCE) == f"rollback to v{first}"
    assert not window.release_button.isHidden()
    assert f"rollback to v{first}" in window.status.text()


def test_closing_the_window_stops_following_the_set(
    window: FlagsWindow, session: DesktopSession
) -> None:
    assert window.following
    window.close()
    assert not window.following
    before = window.header.text()
    session.flags.set_local("multi_tab", FlagSetting(value=False))
    assert window.header.text() == before  # no longer told
    window.show()  # shown again: catches up and follows again
    assert window.following
    assert window.header.text() == f"Flag set v{session.flags.current.version}"
    assert window.cell_text("multi_tab", FlagColumn.VALUE) == "off"


def make_job(session: DesktopSession, run: Any, folder: Path, name: str, count: int) -> str:
    prompts = folder / f"{name}.txt"
    prompts.write_text("".join(f"{name} panel {i}\n" for i in range(count)), encoding="utf-8")
    job_id: str = run(session.create_job(name, session.preview_files([prompts])))
    return job_id


def add_attempts(database: Path, job_id: str, rows: list[tuple[int, str, float, str]]) -> None:
    """Attempts (task index, outcome, latency, fresh_chat variant) of ``job_id``'s tasks."""
    with sqlite3.connect(database, timeout=10) as conn:
        tasks = [r[0] for r in conn.execute("SELECT id FROM tasks WHERE job_id = ?", (job_id,))]
        numbers: dict[int, int] = {}
        for index, outcome, latency, variant in rows:
            task = tasks[index]
            numbers[task] = numbers.get(task, 0) + 1
            conn.execute(
                "INSERT INTO attempts (task_id, attempt, started_at, ended_at, outcome, variants) "
                "VALUES (?,?,?,?,?,?)",
                (
                    task,
                    numbers[task],
                    1000.0,
                    1000.0 + latency,
                    outcome,
                    json.dumps({"fresh_chat": variant}),
                ),
            )


def test_the_experiments_tab_compares_a_jobs_variants(
    bridge: EngineBridge, session: DesktopSession, run: Any, qtbot: Any, tmp_path: Path
) -> None:
    plain = make_job(session, run, tmp_path, "plain", 3)
    split = make_job(session, run, tmp_path, "split", 4)
    add_attempts(
        session.paths.database,
        split,
        [
            (0, "done", 2.0, "control"),
            (1, "failed", 1.0, "control"),
            (1, "done", 4.0, "control"),
            (2, "done", 1.0, "fresh"),
            (3, "refused", 0.5, "fresh"),
            (3, "recalled", 0.5, "fresh"),
        ],
    )
    bridge.select_job(split)  # the job on screen is the one shown first
    window = FlagsWindow(bridge)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentIndex(1)
    run(bridge.settle())
    window.reports.wait()
    assert window.selected_job() == split
    assert window.job_combo.count() == 2
    assert window.showing_report
    assert window.report_table.rowCount() == 2
    control, fresh = report_row(window, 0), report_row(window, 1)
    interval = wilson(2, 3)
    assert interval is not None
    low, high = interval
    assert control == [
        "fresh_chat",
        "control",
        "2",
        "3",
        "66.7 %",
        f"{100 * low:.1f} %–{100 * high:.1f} %",
        "3.00 s",
        "4.00 s",
        "1",
        "0",
        "0",
    ]
    assert fresh[ReportColumn.SUCCESS] == "50.0 %"
    assert fresh[ReportColumn.REFUSALS] == "1"
    assert fresh[ReportColumn.OTHER] == "1"  # called back: not the variant's doing
    assert fresh[ReportColumn.RETRIES] == "1"
    assert window.report_summary.text() == f"6 attempt(s) of job {split}"

    # A job whose attempts ran under no experiment: the empty state says so.
    window.select_job(plain)
    window.reports.wait()
    assert not window.showing_report
    assert window.empty_state.text() == NO_EXPERIMENT
    assert window.report_summary.text() == f"0 attempt(s) of job {plain}"

    # Refresh reads again: attempts recorded since show up.
    add_attempts(session.paths.database, plain, [(0, "done", 1.5, "fresh")])
    qtbot.mouseClick(window.refresh_button, Qt.MouseButton.LeftButton)
    run(bridge.settle())
    window.reports.wait()
    assert window.selected_job() == plain
    assert window.showing_report
    assert report_row(window, 0)[:5] == ["fresh_chat", "fresh", "1", "1", "100.0 %"]
    window.close()


def test_no_jobs_yet_is_an_empty_state(bridge: EngineBridge, run: Any, qtbot: Any) -> None:
    window = FlagsWindow(bridge)
    qtbot.addWidget(window)
    run(bridge.settle())
    window.reports.wait()
    assert window.job_combo.count() == 0
    assert not window.showing_report
    assert window.empty_state.text().startswith("No jobs yet")


@pytest.fixture
def main_window(session: DesktopSession, wait_until: Any) -> Iterator[MainWindow]:
    bridge = EngineBridge(session)
    main = MainWindow(bridge)
    main.show()
    yield main
    if not main.quitting:
        quit_seen: list[bool] = []
        main.quit_finished.connect(lambda: quit_seen.append(True))
        main.request_quit()
        wait_until(lambda: quit_seen, timeout=60)
    main.deleteLater()


def test_the_jobs_menu_opens_the_flags_window(main_window: MainWindow, qtbot: Any) -> None:
    menus = {
        action.text(): action.menu()
        for action in main_window.menuBar().actions()
        if isinstance(action.menu(), QtWidgets.QMenu)
    }
    menu = menus["&Jobs"]
    assert isinstance(menu, QtWidgets.QMenu)
    (action,) = [a for a in menu.actions() if a.text() == "Feature &flags…"]
    action.trigger()
    window = main_window.findChild(FlagsWindow)
    assert isinstance(window, FlagsWindow)
    qtbot.waitUntil(window.isVisible)
    assert window.following
    window.close()
    action.trigger()  # opened again: the same window, following again
    assert main_window.findChild(FlagsWindow) is window
    qtbot.waitUntil(window.isVisible)
    assert window.following
    window.close()
