"""The workers tab: every ChatGPT tab (or simulated tab) the hub knows, what it is doing, how
well it does it, and the author's levers on it (pause, resume, close, open one more).

The table is redrawn on the bridge's tick, but only rows whose shown text or state changed
are reported to Qt: "3 s ago" ticks on every row, the rest mostly does not, and a selection
must survive the refresh (the author is about to pause the row they clicked).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from novelgen_desktop.desktop.session import WorkerRow, WorkerState
from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets

MAX_TABS = 10
"""The most tabs a browser is asked for (DesktopSession.set_browser_tabs allows 1 to 10)."""

COLUMNS = (
    "Account / profile",
    "Tab",
    "State",
    "Current task",
    "Done",
    "Success",
    "Mean latency",
    "p95 latency",
    "Last heartbeat",
    "Memory",
)
COL_ACCOUNT, COL_TAB, COL_STATE, COL_TASK, COL_DONE, COL_SUCCESS = range(6)
COL_MEAN, COL_P95, COL_HEARTBEAT, COL_MEMORY = range(6, 10)
_NUMERIC = frozenset({COL_TASK, COL_DONE, COL_SUCCESS, COL_MEAN, COL_P95, COL_MEMORY})

WORKER_ID_ROLE = Qt.ItemDataRole.UserRole + 1
_ROOT = QtCore.QModelIndex()

# Background of the state cell (and of the whole row when the author must act).
STATE_COLOURS: dict[str, str] = {
    WorkerState.IDLE: "#e8eef4",
    WorkerState.BUSY: "#cdeccf",
    WorkerState.COOLING: "#cfe3f7",
    WorkerState.LOGIN: "#ffd27a",
    WorkerState.UNHEALTHY: "#f6c1bd",
    WorkerState.PAUSED: "#e6dcf2",
    WorkerState.MEMORY: "#f9e0c7",
    WorkerState.DISCONNECTED: "#dddddd",
}
_NEEDS_AUTHOR = frozenset({WorkerState.LOGIN, WorkerState.UNHEALTHY})


def format_ago(seconds: float | None) -> str:
    """How long ago, as a person reads a heartbeat: "3 s ago", "2 min ago", "1 h ago"."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 2**30:
        return f"{value / 2**30:.1f} GB"
    if value >= 2**20:
        return f"{value / 2**20:.0f} MB"
    return f"{value / 2**10:.0f} KB"


def format_seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def clock_time(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def state_text(row: WorkerRow) -> str:
    """The state column: the state, and the one fact that says what to do about it."""
    if row.state == WorkerState.COOLING and row.cooling_until is not None:
        return f"cooling down until {clock_time(row.cooling_until)}"
    if row.state in (WorkerState.UNHEALTHY, WorkerState.LOGIN, WorkerState.MEMORY) and row.detail:
        return f"{row.state}: {row.detail}"
    return row.state


@dataclass(frozen=True, slots=True)
class _Shown:
    """A row as displayed: two of these equal means nothing to repaint."""

    cells: tuple[str, ...]
    state: str
    tooltip: str


def _shown(row: WorkerRow, now: float) -> _Shown:
    ago = None if row.last_heartbeat is None else now - row.last_heartbeat
    cells = (
        row.account_id,
        row.tab if row.tab is not None else row.worker_id,
        state_text(row),
        "" if row.current_task is None else f"#{row.current_task}",
        str(row.done) if not row.failed else f"{row.done} ({row.failed} failed)",
        "—" if row.success_rate is None else f"{row.success_rate * 100:.0f} %",
        format_seconds(row.mean_latency),
        format_seconds(row.p95_latency),
        format_ago(ago) if row.connected or ago is not None else "disconnected",
        format_bytes(row.memory_bytes),
    )
    tooltip = f"worker {row.worker_id} ({row.kind})"
    if row.detail:
        tooltip += f"\n{row.detail}"
    return _Shown(cells, row.state, tooltip)


class WorkerTableModel(QtCore.QAbstractTableModel):
    """The workers, keyed by worker id; :meth:`set_rows` reports only what changed."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[WorkerRow] = []
        self._shown: list[_Shown] = []
        self.changed_rows = 0  # rows reported changed by the last set_rows (tests, profiling)

    # --- Qt's model interface --------------------------------------------------------------

    def rowCount(  # noqa: N802 - Qt API
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _ROOT
    ) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(  # noqa: N802 - Qt API
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _ROOT
    ) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(  # noqa: N802 - Qt API
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> object:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(COLUMNS)
        ):
            return COLUMNS[section]
        return None

    def data(
        self,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, shown, column = self._rows[index.row()], self._shown[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return shown.cells[column]
        if role == Qt.ItemDataRole.ToolTipRole:
            return shown.tooltip
        if role == WORKER_ID_ROLE:
            return row.worker_id
        if role == Qt.ItemDataRole.BackgroundRole:
            if column == COL_STATE or row.state in _NEEDS_AUTHOR:
                return QtGui.QBrush(QtGui.QColor(STATE_COLOURS.get(row.state, "#ffffff")))
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            if row.state == WorkerState.DISCONNECTED:
                return QtGui.QBrush(QtGui.QColor("#777777"))
            if column == COL_STATE or row.state in _NEEDS_AUTHOR:
                return QtGui.QBrush(QtGui.QColor("#000000"))  # readable on the light colours
            return None
        if role == Qt.ItemDataRole.FontRole and row.state in _NEEDS_AUTHOR:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # --- updates --------------------------------------------------------------------------

    def row(self, index: int) -> WorkerRow:
        return self._rows[index]

    def rows(self) -> list[WorkerRow]:
        return list(self._rows)

    def row_of(self, worker_id: str) -> int | None:
        for i, row in enumerate(self._rows):
            if row.worker_id == worker_id:
                return i
        return None

    def set_rows(self, rows: Sequence[WorkerRow], now: float) -> None:
        """Show ``rows`` (in their order): removed and added workers are removed and inserted
        rows, a new order is a layout change, and only rows that look different repaint."""
        new_ids = [r.worker_id for r in rows]
        wanted = set(new_ids)
        # 1. Workers gone.
        for i in range(len(self._rows) - 1, -1, -1):
            if self._rows[i].worker_id not in wanted:
                self.beginRemoveRows(QtCore.QModelIndex(), i, i)
                del self._rows[i], self._shown[i]
                self.endRemoveRows()
        # 2. The ones left, in their new order.
        known = {r.worker_id for r in self._rows}
        kept_order = [w for w in new_ids if w in known]
        if [r.worker_id for r in self._rows] != kept_order:
            self._reorder(kept_order)
        # 3. Workers new, at their places.
        by_id = {r.worker_id: r for r in rows}
        for i, worker_id in enumerate(new_ids):
            if worker_id not in known:
                self.beginInsertRows(QtCore.QModelIndex(), i, i)
                self._rows.insert(i, by_id[worker_id])
                self._shown.insert(i, _shown(by_id[worker_id], now))
                self.endInsertRows()
        # 4. Changed rows only.
        changed = 0
        last_column = len(COLUMNS) - 1
        for i, row in enumerate(rows):
            shown = _shown(row, now)
            self._rows[i] = row
            if shown != self._shown[i]:
                self._shown[i] = shown
                changed += 1
                self.dataChanged.emit(self.index(i, 0), self.index(i, last_column))
        self.changed_rows = changed

    def _reorder(self, order: list[str]) -> None:
        self.layoutAboutToBeChanged.emit()
        old_ids = [r.worker_id for r in self._rows]
        rank = {worker_id: i for i, worker_id in enumerate(order)}
        pairs = sorted(
            zip(self._rows, self._shown, strict=True), key=lambda p: rank[p[0].worker_id]
        )
        self._rows = [p[0] for p in pairs]
        self._shown = [p[1] for p in pairs]
        old_indexes = self.persistentIndexList()
        new_indexes = [
            self.index(rank[old_ids[index.row()]], index.column()) for index in old_indexes
        ]
        self.changePersistentIndexList(old_indexes, new_indexes)
        self.layoutChanged.emit()


class WorkersView(QtWidgets.QWidget):
    """The workers table with its toolbar and context menu."""

    def __init__(self, bridge: EngineBridge, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self.model = WorkerTableModel(self)
        self.table = QtWidgets.QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)

        self.toolbar = QtWidgets.QToolBar(self)
        self.pause_action = self._add_action("Pause worker", self.pause_selected)
        self.pause_action.setToolTip("Send this tab no new prompts (its current one finishes)")
        self.resume_action = self._add_action("Resume worker", self.resume_selected)
        self.close_action = self._add_action("Close tab", self.close_selected)
        self.close_action.setToolTip(
            "Close this tab; a prompt in it goes back to the queue at once"
        )
        self.toolbar.addSeparator()
        self.more_action = self._add_action("Open more tabs", self.open_more_tabs)
        self.more_action.setToolTip(f"Ask the browser for one tab more (up to {MAX_TABS})")
        self.summary = QtWidgets.QLabel(self)
        self.toolbar.addSeparator()
        self.toolbar.addWidget(self.summary)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.table)

        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        bridge.tick.connect(self.refresh)
        bridge.jobs_changed.connect(self.refresh)
        self.refresh()

    def _add_action(self, text: str, slot: Callable[[], None]) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        action.triggered.connect(lambda _checked=False: slot())
        self.toolbar.addAction(action)
        return action

    # --- refresh --------------------------------------------------------------------------

    def refresh(self) -> None:
        rows = self.session.worker_rows()
        self.model.set_rows(rows, self.session.clock())
        connected = sum(1 for r in rows if r.connected)
        self.summary.setText(
            f"{connected} connected · {self.session.browser_tab_count()} tab(s) per browser"
        )
        self._update_actions()

    def _update_actions(self) -> None:
        selected = self.selected_rows()
        self.pause_action.setEnabled(any(not r.held for r in selected))
        self.resume_action.setEnabled(any(r.held for r in selected))
        self.close_action.setEnabled(any(r.connected for r in selected))
        self.more_action.setEnabled(self.session.browser_tab_count() < MAX_TABS)

    # --- selection ------------------------------------------------------------------------

    def selected_rows(self) -> list[WorkerRow]:
        indexes = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.row(i) for i in indexes if i < self.model.rowCount()]

    def selected_worker_ids(self) -> list[str]:
        return [r.worker_id for r in self.selected_rows()]

    def select_workers(self, worker_ids: Sequence[str]) -> None:
        selection = self.table.selectionModel()
        selection.clearSelection()
        flags = (
            QtCore.QItemSelectionModel.SelectionFlag.Select
            | QtCore.QItemSelectionModel.SelectionFlag.Rows
        )
        for worker_id in worker_ids:
            row = self.model.row_of(worker_id)
            if row is not None:
                selection.select(self.model.index(row, 0), flags)
        self._update_actions()

    def _context_menu(self, pos: QtCore.QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid() and index.row() not in {i.row() for i in self.selected_indexes()}:
            self.select_workers([self.model.row(index.row()).worker_id])
        menu = self.context_menu()
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def selected_indexes(self) -> list[QtCore.QModelIndex]:
        return list(self.table.selectionModel().selectedRows())

    def context_menu(self) -> QtWidgets.QMenu:
        """The right-click menu (the same actions as the toolbar)."""
        menu = QtWidgets.QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        for action in (self.pause_action, self.resume_action, self.close_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.more_action)
        return menu

    # --- actions --------------------------------------------------------------------------

    def pause_selected(self) -> None:
        self._hold(self.selected_worker_ids(), True)

    def resume_selected(self) -> None:
        self._hold(self.selected_worker_ids(), False)

    def _hold(self, worker_ids: list[str], held: bool) -> None:
        what = "pause the worker" if held else "resume the worker"
        try:
            for worker_id in worker_ids:
                if held:
                    self.session.pause_worker(worker_id)
                else:
                    self.session.resume_worker(worker_id)
        except NovelGenError as exc:
            self.bridge.failed.emit(what, str(exc))
        if worker_ids:
            self.bridge.info.emit(f"{'paused' if held else 'resumed'} {', '.join(worker_ids)}")
        self.refresh()

    def confirm_close(self, worker_ids: Sequence[str]) -> bool:
        """Ask before closing tabs (tests and scripted use override this)."""
        answer = QtWidgets.QMessageBox.question(
            self,
            "Close tab",
            f"Close {', '.join(worker_ids)}? A prompt being drawn there goes back to the "
            "queue and is drawn again elsewhere.",
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def close_selected(self) -> None:
        worker_ids = [r.worker_id for r in self.selected_rows() if r.connected]
        if not worker_ids or not self.confirm_close(worker_ids):
            return

        async def close() -> None:
            for worker_id in worker_ids:
                await self.session.close_tab(worker_id)

        self.bridge.spawn(
            "close the tab", close(), lambda _none: self.bridge.info.emit("tab closed")
        )

    def open_more_tabs(self) -> None:
        tabs = self.session.browser_tab_count()
        if tabs >= MAX_TABS:
            self.bridge.failed.emit(
                "open more tabs", f"{MAX_TABS} tabs per browser is the most NovelGen opens"
            )
            return
        self.bridge.spawn(
            "open more tabs",
            self.session.set_browser_tabs(tabs + 1),
            lambda _none: self.bridge.info.emit(f"asked for {tabs + 1} tab(s)"),
        )


__all__ = [
    "COLUMNS",
    "MAX_TABS",
    "WORKER_ID_ROLE",
    "WorkerTableModel",
    "WorkersView",
    "format_ago",
    "format_bytes",
    "state_text",
]
