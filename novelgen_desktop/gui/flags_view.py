"""Jobs → Feature flags…: every flag in force, instant rollback, and the experiments' figures.

The window is what ``novelgen flags show/set/rollback/release/history/report`` are in a
terminal, on the session's live :class:`FlagService`:

* **Flags** — one row per registered flag: its value (on/off, or an experiment's variants
  with their shares), where that value comes from, whether it is a kill switch, and the
  subsystem that reads it (the description is the row's tooltip). A kill switch is a
  checkbox: toggling it writes the local flag file, which every NovelGen process on this
  data folder follows within a fraction of a second. **Roll back** restores the set before
  the current one (**Release** ends a rollback); any version of the history can be restored.
* **Experiments** — for one job, how each variant of each experiment did on its recorded
  attempts (the figures of ``novelgen flags report``), read off the UI thread through a
  short-lived read-only connection to the database.

The window follows the set live (``FlagService.subscribe``, while it is shown): a rollback
typed in a terminal shows here as soon as the session's poll sees it.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from novelgen_desktop.engine.service import JobView
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import FlagSetting
from novelgen_desktop.flags.flagset import FlagSet
from novelgen_desktop.flags.history import FlagVersion
from novelgen_desktop.flags.registry import FLAGS, FlagDefinition, FlagKind
from novelgen_desktop.flags.report import ExperimentReport, VariantStats, experiment_report
from novelgen_desktop.flags.text import differences, setting_text, value_text
from novelgen_desktop.gui.background import LatestCall
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets

_WARNING_STYLE = "color: #c92a2a;"
_NOTE_STYLE = "color: #5c677d;"
_NUMBER_ALIGNMENT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
HISTORY_LIMIT = 50
NAME_ROLE = int(Qt.ItemDataRole.UserRole) + 1
"""The flag name of a row of the flags table; the version number of a history row."""


class FlagColumn(enum.IntEnum):
    NAME = 0
    VALUE = 1
    SOURCE = 2
    KILL_SWITCH = 3
    OWNER = 4


FLAG_HEADERS = ("Flag", "Value", "Source", "Kill switch", "Owner")


class ReportColumn(enum.IntEnum):
    FLAG = 0
    VARIANT = 1
    TASKS = 2
    ATTEMPTS = 3
    SUCCESS = 4
    INTERVAL = 5
    MEAN = 6
    P95 = 7
    RETRIES = 8
    REFUSALS = 9
    OTHER = 10


REPORT_HEADERS = (
    "Flag",
    "Variant",
    "Tasks",
    "Attempts",
    "Success",
    "95 % interval",
    "Mean",
    "p95",
    "Retries",
    "Refusals",
    "Other",
)
REPORT_NOTE = (
    "Success = done / finished attempts, with its 95 % (Wilson) interval: overlapping "
    "intervals mean the difference may be chance. Mean and p95: latency of successful "
    "attempts. Other: called back, cancelled, interrupted or unfinished (not counted "
    "against the variant)."
)
NO_EXPERIMENT = (
    "No attempt of this job ran under an experiment: no flag was split into variants while it "
    "ran. Start one with  novelgen flags set fresh_chat --variant control=off:50 "
    "--variant fresh=on:50  and the attempts after it are compared here."
)


def is_override(source: str) -> bool:
    """Set by this process's environment or command line, above the shared files."""
    return source.startswith("environment") or source == "--flag"


def read_report(database: Path, job_id: str) -> ExperimentReport | None:
    """The experiment report of ``job_id`` (None without a database), through a read-only
    connection of its own: it runs on a worker thread, beside the store's writer."""
    if not database.exists():
        return None
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    with contextlib.closing(conn):
        return experiment_report(conn, job_id)


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def report_cells(row: VariantStats) -> tuple[str, ...]:
    """One variant's figures as the table shows them (the terminal report's wording)."""
    interval = (
        "-"
        if row.success_low is None
        else f"{percent_text(row.success_low)}–{percent_text(row.success_high)}"
    )
    return (
        row.flag,
        row.variant,
        f"{row.tasks:,}",
        f"{row.attempts:,}",
        percent_text(row.success_rate),
        interval,
        seconds_text(row.latency_mean),
        seconds_text(row.latency_p95),
        f"{row.retries:,}",
        f"{row.refused:,}",
        f"{row.not_counted:,}",
    )


def _item(text: str, tooltip: str = "") -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if tooltip:
        item.setToolTip(tooltip)
    return item


def _cell(table: QtWidgets.QTableWidget, row: int, column: int) -> QtWidgets.QTableWidgetItem:
    """The item at (row, column), made on first use: updated in place afterwards, so a
    refresh keeps the selection and never deletes an item the view is handling."""
    item = table.item(row, column)
    if item is None:
        item = _item("")
        table.setItem(row, column, item)
    return item


def _flag_tooltip(flag: FlagDefinition) -> str:
    kind = "kill switch, " if flag.kill_switch else ""
    return (
        f"{flag.description}\n\n{kind}default {value_text(flag.default)}, read by "
        f"{flag.owner}, decided per {flag.unit.value}"
    )


class FlagsWindow(QtWidgets.QDialog):
    """The feature flags of this data folder: see, switch, roll back, compare."""

    def __init__(self, bridge: EngineBridge, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self.flags = bridge.session.flags
        self._filling = False
        self._unsubscribe: Callable[[], None] | None = None
        self._report_generation = 0
        self.setWindowTitle("Feature flags — NovelGen Desktop")
        self.resize(920, 640)

        self.tabs = QtWidgets.QTabWidget(self)
        self.tabs.addTab(self._build_flags_page(), "Flags")
        self.tabs.addTab(self._build_experiments_page(), "Experiments")
        self.status = QtWidgets.QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

        self.reports: LatestCall[ExperimentReport | None] = LatestCall("flags-report", self)
        self.reports.on_failure(self._report_failed)
        self.show_flags()
        self.load_jobs()

    # --- building ---------------------------------------------------------------------------

    def _build_flags_page(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        self.header = QtWidgets.QLabel(page)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.problems = QtWidgets.QLabel(page)
        self.problems.setStyleSheet(_WARNING_STYLE)
        self.problems.setWordWrap(True)
        self.problems.hide()

        self.table = QtWidgets.QTableWidget(len(FLAGS), len(FlagColumn), page)
        self.table.setHorizontalHeaderLabels(list(FLAG_HEADERS))
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.resizeSection(FlagColumn.NAME, 150)
        header.resizeSection(FlagColumn.VALUE, 340)
        header.resizeSection(FlagColumn.SOURCE, 170)
        header.setStretchLastSection(True)
        self.table.itemChanged.connect(self._item_changed)

        self.rollback_button = QtWidgets.QPushButton("Roll back", page)
        self.rollback_button.setToolTip(
            "Restore the flag set before the current one, now: running jobs follow at their "
            "next attempt, other NovelGen processes within a second"
        )
        self.rollback_button.clicked.connect(self.roll_back)
        self.release_button = QtWidgets.QPushButton("Release", page)
        self.release_button.setToolTip(
            "End the rollback: the local flag file and the remote configuration decide again"
        )
        self.release_button.clicked.connect(self.release)
        actions = QtWidgets.QHBoxLayout()
        actions.addWidget(self.rollback_button)
        actions.addWidget(self.release_button)
        actions.addStretch(1)

        self.history = QtWidgets.QTableWidget(0, 3, page)
        self.history.setHorizontalHeaderLabels(["Version", "Time", "Reason"])
        self.history.verticalHeader().hide()
        self.history.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.history.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.history.setWordWrap(False)
        self.history.horizontalHeader().resizeSection(1, 150)
        self.history.horizontalHeader().setStretchLastSection(True)
        self.history.itemSelectionChanged.connect(self._update_buttons)
        self.restore_button = QtWidgets.QPushButton("Restore this version", page)
        self.restore_button.setToolTip("Roll back to the version selected in the history")
        self.restore_button.clicked.connect(self.restore_selected)
        history_box = QtWidgets.QGroupBox("History", page)
        history_layout = QtWidgets.QVBoxLayout(history_box)
        history_layout.addWidget(self.history, 1)
        restore_row = QtWidgets.QHBoxLayout()
        restore_row.addWidget(self.restore_button)
        restore_row.addStretch(1)
        history_layout.addLayout(restore_row)

        layout = QtWidgets.QVBoxLayout(page)
        layout.addWidget(self.header)
        layout.addWidget(self.problems)
        layout.addWidget(self.table, 3)
        layout.addLayout(actions)
        layout.addWidget(history_box, 2)
        return page

    def _build_experiments_page(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        self.job_combo = QtWidgets.QComboBox(page)
        self.job_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.job_combo.currentIndexChanged.connect(lambda _index: self.refresh_report())
        self.refresh_button = QtWidgets.QPushButton("Refresh", page)
        self.refresh_button.setToolTip("Read the job list and the job's attempts again")
        self.refresh_button.clicked.connect(self.load_jobs)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Job:", page))
        top.addWidget(self.job_combo, 1)
        top.addWidget(self.refresh_button)

        self.report_summary = QtWidgets.QLabel(page)
        self.report_table = QtWidgets.QTableWidget(0, len(ReportColumn), page)
        self.report_table.setHorizontalHeaderLabels(list(REPORT_HEADERS))
        self.report_table.verticalHeader().hide()
        self.report_table.setWordWrap(False)
        self.report_table.horizontalHeader().setStretchLastSection(True)
        self.report_table.horizontalHeader().resizeSection(ReportColumn.INTERVAL, 130)
        self.empty_state = QtWidgets.QLabel(page)
        self.empty_state.setWordWrap(True)
        self.empty_state.setStyleSheet(_NOTE_STYLE)
        self.empty_state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        note = QtWidgets.QLabel(REPORT_NOTE, page)
        note.setWordWrap(True)
        note.setStyleSheet(_NOTE_STYLE)

        layout = QtWidgets.QVBoxLayout(page)
        layout.addLayout(top)
        layout.addWidget(self.report_summary)
        layout.addWidget(self.report_table, 1)
        layout.addWidget(self.empty_state, 1)
        layout.addWidget(note)
        self._show_empty("Reading the jobs…")
        return page

    # --- following the set ------------------------------------------------------------------

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        if self._unsubscribe is None:
            self._unsubscribe = self.flags.subscribe(self._flags_changed)
            self.show_flags()  # what changed while the window was closed
        super().showEvent(event)

    def hideEvent(self, event: QtGui.QHideEvent) -> None:  # noqa: N802 - Qt API
        self.stop_following()
        super().hideEvent(event)

    def stop_following(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def following(self) -> bool:
        return self._unsubscribe is not None

    def _flags_changed(self, flags: FlagSet, reason: str) -> None:
        """A new set, from this window, the session's poll, or another process."""
        self.show_flags(flags)
        self.status.setText(f"Flag set v{flags.version}: {reason}")

    # --- the flags table --------------------------------------------------------------------

    def show_flags(self, current: FlagSet | None = None) -> None:
        """Show the set in force (``current``, or the service's) and its history."""
        current = current or self.flags.current
        header = f"Flag set v{current.version}"
        if current.pinned_to is not None:
            header += f" — rolled back to v{current.pinned_to}"
        self.header.setText(header)
        problems = list(self.flags.problems)
        self.problems.setText("\n".join(f"⚠ {problem}" for problem in problems))
        self.problems.setVisible(bool(problems))
        self._filling = True
        try:
            for row, flag in enumerate(FLAGS):
                self._fill_row(row, flag, current)
        finally:
            self._filling = False
        self.release_button.setVisible(current.pinned_to is not None)
        self._fill_history(current)

    def _fill_row(self, row: int, flag: FlagDefinition, current: FlagSet) -> None:
        setting = current.setting(flag.name)
        source = current.source(flag.name)
        tooltip = _flag_tooltip(flag)
        name = _cell(self.table, row, FlagColumn.NAME)
        name.setText(flag.name)
        name.setToolTip(tooltip)
        name.setData(NAME_ROLE, flag.name)
        value = _cell(self.table, row, FlagColumn.VALUE)
        value.setText(setting_text(setting))
        value.setToolTip(tooltip)
        if flag.kill_switch and flag.kind is FlagKind.BOOL:
            value.setFlags(value.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            if setting.is_experiment:
                state = Qt.CheckState.PartiallyChecked
            else:
                state = Qt.CheckState.Checked if setting.value else Qt.CheckState.Unchecked
            value.setCheckState(state)
            hint = "Tick to switch on, untick for the fallback; written to the local flag file"
            if is_override(source):
                hint = (
                    f"Decided by {source}, above the local flag file: ticking writes the file "
                    "(other processes follow it) but this process keeps the override"
                )
            value.setToolTip(f"{hint}\n\n{tooltip}")
        source_item = _cell(self.table, row, FlagColumn.SOURCE)
        source_item.setText(source)
        if is_override(source):
            source_item.setToolTip("This process's override: above the shared flag files")
        elif source.startswith("rollback"):
            source_item.setToolTip("A rollback is in force: Release lets the files decide again")
        else:
            source_item.setToolTip("")
        kill = _cell(self.table, row, FlagColumn.KILL_SWITCH)
        kill.setText("✓" if flag.kill_switch else "")
        if flag.kill_switch:
            kill.setToolTip("A kill switch: off falls back to the old, simpler way")
        kill.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        owner = _cell(self.table, row, FlagColumn.OWNER)
        owner.setText(flag.owner)
        owner.setToolTip(tooltip)

    def row_of(self, name: str) -> int:
        return next(row for row, flag in enumerate(FLAGS) if flag.name == name)

    def cell_text(self, name: str, column: FlagColumn) -> str:
        item = self.table.item(self.row_of(name), column)
        return "" if item is None else item.text()

    def _item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        if self._filling or item.column() != FlagColumn.VALUE:
            return
        flag = FLAGS[item.row()]
        if not flag.kill_switch:
            return
        state = item.checkState()
        if state == Qt.CheckState.PartiallyChecked:
            return
        # After the event that toggled it: rebuilding the row inside itemChanged would
        # delete the item the view is still handling.
        on = state == Qt.CheckState.Checked
        QtCore.QTimer.singleShot(0, self, lambda: self.set_switch(flag.name, on))

    def set_switch(self, name: str, on: bool) -> FlagSet | None:
        """Write kill switch ``name`` = ``on`` into the local flag file; say what happened."""
        before = self.flags.current
        try:
            after = self.flags.set_local(name, FlagSetting(value=on))
        except (ConfigError, OSError) as exc:
            self.show_flags()
            self.status.setText(f"Could not set {name}: {exc}")
            return None
        self.show_flags(after)
        source = after.source(name)
        if is_override(source):
            self.status.setText(
                f"v{after.version}: the local flag file now says {name} {value_text(on)}, but "
                f"in this window's process {source} decides it, above the file: it stays "
                f"{setting_text(after.setting(name))} here (other processes follow the file)"
            )
        else:
            ended = " (the rollback ended)" if before.pinned_to is not None else ""
            self.status.setText(
                f"v{after.version}: {differences(before, after)}{ended} — running jobs "
                "follow at their next attempt"
            )
        return after

    # --- rollback and history ---------------------------------------------------------------

    def roll_back(self) -> FlagVersion | None:
        """Restore the set before the current one."""
        return self._rollback(None)

    def restore_selected(self) -> FlagVersion | None:
        version = self.selected_version()
        return None if version is None else self._rollback(version)

    def _rollback(self, to: int | None) -> FlagVersion | None:
        before = self.flags.current
        started = time.perf_counter()
        try:
            version = self.flags.rollback(to)
        except (ConfigError, sqlite3.Error) as exc:
            self.show_flags()
            self.status.setText(f"Could not roll back: {exc}")
            return None
        elapsed = time.perf_counter() - started
        self.show_flags()
        self.status.setText(
            f"v{version.version}: {version.reason} "
            f"({differences(before, self.flags.current)}) in {elapsed * 1000:.0f} ms — "
            "running jobs follow at their next attempt; Release ends the rollback"
        )
        return version

    def release(self) -> bool:
        before = self.flags.current
        released = self.flags.release()
        self.show_flags()
        if released:
            self.status.setText(
                f"v{self.flags.current.version}: rollback released, the flag files and the "
                f"remote decide again ({differences(before, self.flags.current)})"
            )
        else:
            self.status.setText("No rollback in force")
        return released

    def _fill_history(self, current: FlagSet) -> None:
        chosen = self.selected_version()
        versions = self.flags.versions(HISTORY_LIMIT)
        self.history.clearSelection()
        self.history.setRowCount(len(versions))
        for row, version in enumerate(versions):
            when = datetime.fromtimestamp(version.created_at).strftime("%Y-%m-%d %H:%M:%S")
            marks = " (current)" if version.version == current.version else ""
            marks += " (restored)" if version.version == current.pinned_to else ""
            tooltip = self._version_tooltip(version)
            label = _item(f"v{version.version}", tooltip)
            label.setData(NAME_ROLE, version.version)
            self.history.setItem(row, 0, label)
            self.history.setItem(row, 1, _item(when, tooltip))
            self.history.setItem(row, 2, _item(version.reason + marks, tooltip))
            if version.version == chosen:
                self.history.selectRow(row)
        latest = versions[0] if versions else None
        self.rollback_button.setEnabled(latest is not None and latest.parent is not None)
        if latest is not None and latest.parent is None:
            self.rollback_button.setToolTip(
                f"v{latest.version} is the first recorded flag set: nothing before it"
            )
        self._update_buttons()

    @staticmethod
    def _version_tooltip(version: FlagVersion) -> str:
        lines = [f"v{version.version}: {version.reason}"]
        if version.parent is not None:
            lines[0] += f" (after v{version.parent})"
        lines += [
            f"{name} = {setting_text(setting)}"
            for name, setting in sorted(version.settings.items())
        ]
        return "\n".join(lines)

    def selected_version(self) -> int | None:
        rows = self.history.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.history.item(rows[0].row(), 0)
        data = None if item is None else item.data(NAME_ROLE)
        return data if isinstance(data, int) else None

    def select_version(self, version: int) -> None:
        for row in range(self.history.rowCount()):
            item = self.history.item(row, 0)
            if item is not None and item.data(NAME_ROLE) == version:
                self.history.selectRow(row)
                return

    def _update_buttons(self) -> None:
        chosen = self.selected_version()
        self.restore_button.setEnabled(chosen is not None and chosen != self.flags.current.version)

    # --- experiments ------------------------------------------------------------------------

    def load_jobs(self) -> None:
        """List the jobs (off the UI thread), then read the chosen one's report."""
        self.bridge.spawn("list the jobs", self.session.service.list_jobs(), self._jobs_listed)

    def _jobs_listed(self, jobs: list[JobView]) -> None:
        wanted = self.selected_job() or self.bridge.selected_job
        self.job_combo.blockSignals(True)
        try:
            self.job_combo.clear()
            for job in jobs:
                self.job_combo.addItem(f"{job.name} — {job.state.value}", job.job_id)
                self.job_combo.setItemData(
                    self.job_combo.count() - 1, job.job_id, Qt.ItemDataRole.ToolTipRole
                )
            index = self.job_combo.findData(wanted) if wanted else -1
            self.job_combo.setCurrentIndex(index if index >= 0 else 0 if jobs else -1)
        finally:
            self.job_combo.blockSignals(False)
        self.refresh_report()

    def selected_job(self) -> str | None:
        data = self.job_combo.currentData()
        return data if isinstance(data, str) else None

    def select_job(self, job_id: str) -> None:
        index = self.job_combo.findData(job_id)
        if index >= 0:
            self.job_combo.setCurrentIndex(index)

    def refresh_report(self) -> None:
        job_id = self.selected_job()
        if job_id is None:
            self._show_empty("No jobs yet: the experiments are compared on a job's attempts.")
            return
        self._report_generation += 1
        generation = self._report_generation
        database = self.session.paths.database
        self.report_summary.setText("Reading the attempts…")
        self.reports.submit(
            lambda: read_report(database, job_id),
            lambda report: self._report_read(generation, job_id, report),
        )

    def _report_read(self, generation: int, job_id: str, report: ExperimentReport | None) -> None:
        if generation != self._report_generation:
            return  # another job was chosen meanwhile
        if report is None:
            self._show_empty("No database yet: no job has run in this data folder.")
            return
        summary = f"{report.attempts:,} attempt(s) of job {job_id}"
        if report.variants and report.attempts_without_variants:
            summary += f"; {report.attempts_without_variants:,} ran with no experiment"
        self.report_summary.setText(summary)
        if not report.variants:
            self._show_empty(NO_EXPERIMENT, summary)
            return
        self.report_table.setRowCount(len(report.variants))
        for row, stats in enumerate(report.variants):
            for column, text in enumerate(report_cells(stats)):
                item = _item(text)
                if column >= ReportColumn.TASKS:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.report_table.setItem(row, column, item)
        self.report_table.resizeColumnsToContents()
        self.report_table.show()
        self.empty_state.hide()

    def _show_empty(self, text: str, summary: str = "") -> None:
        self.report_summary.setText(summary)
        self.report_table.setRowCount(0)
        self.report_table.hide()
        self.empty_state.setText(text)
        self.empty_state.show()

    def _report_failed(self, error: BaseException) -> None:
        self._show_empty(f"Could not read the attempts: {error}")

    @property
    def showing_report(self) -> bool:
        return not self.report_table.isHidden()

    def done(self, result: int) -> None:
        self.stop_following()
        super().done(result)


def open_flags_window(parent: QtWidgets.QWidget, bridge: EngineBridge) -> FlagsWindow:
    """The flags window of ``parent`` (brought back if it is open already)."""
    window = parent.findChild(FlagsWindow)
    if window is None:
        window = FlagsWindow(bridge, parent)
    if window.isVisible():
        window.raise_()
        window.activateWindow()
    else:
        window.show()
        window.load_jobs()
    return window


__all__ = [
    "FLAG_HEADERS",
    "REPORT_HEADERS",
    "FlagColumn",
    "FlagsWindow",
    "ReportColumn",
    "is_override",
    "open_flags_window",
    "read_report",
    "report_cells",
]
