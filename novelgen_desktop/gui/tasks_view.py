"""The tasks of the selected job: a live, filterable table and the author's queue actions.

The table follows the job the author selected (``bridge.job_selected``) and reads the job's
rows again on every tick of the bridge, never more than one read at a time: a read of 10,000
rows takes a store round trip, and ticks that arrive meanwhile are skipped rather than
queued up. The model diffs each read against what is shown (see :mod:`task_model`), so the
selection, the current row and the scroll position survive refreshes and queue moves.

The queue actions mirror qBittorrent's (same shortcuts): move to top/up/down/bottom, raise
or lower priority, retry, and — for a panel that was refused or died — edit its prompt and
queue it again. Every action is an engine call through ``bridge.spawn``; its errors come
back as ``bridge.failed`` (or, in the edit dialog, in the dialog itself).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from novelgen_desktop.desktop.session import TaskComposition
from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.scheduler import QueueMove
from novelgen_desktop.engine.service import TaskRow
from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.gui.task_model import (
    STATE_LABELS,
    TaskColumn,
    TaskFilterProxy,
    TaskTableModel,
    state_icon,
)

RETRYABLE = frozenset({TaskState.DEAD, TaskState.REFUSED, TaskState.CANCELLED})
"""Tasks that produced no image and will not be tried again unless the author says so."""
CHEAP_REFRESH = 0.02  # seconds of loop time below which every tick may refresh
MAX_REFRESH_INTERVAL = 3.0  # seconds: the slowest the table follows a huge running job
MOVABLE = frozenset({TaskState.QUEUED})
STYLE_COLUMNS = (TaskColumn.CHARACTERS, TaskColumn.STYLE)

_MOVE_WORDS = {
    QueueMove.TOP: "to the top",
    QueueMove.UP: "up",
    QueueMove.DOWN: "down",
    QueueMove.BOTTOM: "to the bottom",
}
_COLUMN_WIDTHS = {
    TaskColumn.ID: 60,
    TaskColumn.QUEUE: 60,
    TaskColumn.WHERE: 200,
    TaskColumn.PROMPT: 360,
    TaskColumn.CHARACTERS: 150,
    TaskColumn.STATE: 90,
    TaskColumn.PRIORITY: 60,
    TaskColumn.ATTEMPTS: 70,
    TaskColumn.WORKER: 90,
    TaskColumn.DURATION: 80,
    TaskColumn.STYLE: 120,
}


class EditPromptDialog(QtWidgets.QDialog):
    """Give a refused or dead panel a new prompt and queue it again.

    The engine decides what is allowed (only a refused, dead or cancelled task; not an empty
    prompt); its refusal is shown here and the dialog stays open with the author's text."""

    requeued = QtCore.Signal(int)  # task id

    def __init__(
        self,
        bridge: EngineBridge,
        job_id: str,
        row: TaskRow,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.job_id = job_id
        self.row = row
        self._busy = False
        self._closed = False
        self.setWindowTitle(f"Edit prompt of task {row.task_id}")
        self.resize(560, 320)
        layout = QtWidgets.QVBoxLayout(self)
        reason = row.error or STATE_LABELS[row.state]
        summary = QtWidgets.QLabel(
            f"Task {row.task_id} is {STATE_LABELS[row.state]}"
            + (f": {reason}" if row.error else "")
            + ".\nChange the prompt and queue it again."
        )
        summary.setWordWrap(True)
        layout.addWidget(summary)
        self.editor = QtWidgets.QPlainTextEdit(row.prompt)
        layout.addWidget(self.editor, 1)
        self.error_label = QtWidgets.QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d93025;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        buttons = QtWidgets.QDialogButtonBox()
        self.requeue_button = buttons.addButton(
            "Requeue", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole
        )
        buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def prompt(self) -> str:
        return self.editor.toPlainText()

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    @property
    def busy(self) -> bool:
        """An edit is on its way to the engine."""
        return self._busy

    def submit(self) -> None:
        """Ask the engine to requeue the task with the edited prompt; close on success."""
        self._busy = True
        self.requeue_button.setEnabled(False)
        self.error_label.hide()
        self.bridge.spawn("edit the prompt and requeue", self._requeue(self.prompt()))

    def done(self, result: int) -> None:
        self._closed = True
        super().done(result)

    async def _requeue(self, prompt: str) -> None:
        try:
            await self.bridge.session.service.edit_prompt(self.job_id, self.row.task_id, prompt)
        except NovelGenError as exc:
            if self._closed:  # the author closed the dialog meanwhile: say it elsewhere
                self.bridge.failed.emit("edit the prompt and requeue", str(exc))
            else:
                self.show_error(str(exc))
            return
        finally:
            self._busy = False
            self.requeue_button.setEnabled(True)
        self.bridge.info.emit(f"task {self.row.task_id} requeued with its new prompt")
        self.requeued.emit(self.row.task_id)
        if not self._closed:
            self.accept()


class TasksView(QtWidgets.QWidget):
    """The task table of the selected job, its filters and its queue actions."""

    def __init__(self, bridge: EngineBridge, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.job_id: str | None = None
        self.edit_dialog: EditPromptDialog | None = None  # the last one opened (tests drive it)
        self._refreshing = False
        self._refresh_again = False
        self._refresh_started = 0.0
        self._next_refresh_at = 0.0  # monotonic: the tick reads again from then on
        self._scroll_to_current = False
        self._reported_error: str | None = None
        self._counts: Counter[TaskState] = Counter()
        # The job whose compositions the model holds, and whether its rows decided which
        # style columns show.
        self._compositions_of: str | None = None
        self._columns_of: str | None = None

        self.model = TaskTableModel(self)
        self.proxy = TaskFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self.table = QtWidgets.QTableView(self)
        self.table.setModel(self.proxy)
        self._set_up_table()

        self.search = QtWidgets.QLineEdit(self)
        self.search.setPlaceholderText("Search prompt, place, error, worker or character")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_search)
        self.search.textChanged.connect(self._update_status)

        self.state_buttons: dict[TaskState, QtWidgets.QToolButton] = {}
        filters = QtWidgets.QHBoxLayout()
        filters.addWidget(QtWidgets.QLabel("Show:"))
        for state in TaskState:
            button = QtWidgets.QToolButton(self)
            button.setCheckable(True)
            button.setChecked(True)
            button.setIcon(state_icon(state))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setAutoRaise(True)
            button.toggled.connect(self._apply_state_filter)
            self.state_buttons[state] = button
            filters.addWidget(button)
        filters.addStretch(1)
        filters.addWidget(self.search, 2)
        self._update_state_buttons()

        self.toolbar = QtWidgets.QToolBar(self)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self._make_actions()

        self.status = QtWidgets.QLabel(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbar)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)

        selection = self.table.selectionModel()
        selection.selectionChanged.connect(self._update_actions)
        self.model.modelReset.connect(self._update_actions)
        self.model.queue_moved.connect(self.table.viewport().update)
        bridge.job_selected.connect(self.show_job)
        bridge.tick.connect(self._on_tick)
        bridge.jobs_changed.connect(self.refresh)
        self._update_actions()
        self._update_status()
        if bridge.selected_job:
            self.show_job(bridge.selected_job)

    # --- building ----------------------------------------------------------------------

    def _set_up_table(self) -> None:
        table = self.table
        table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.setAlternatingRowColors(True)
        table.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        # Uniform row heights: with a fixed section size the view never measures 10,000 rows.
        vertical = table.verticalHeader()
        vertical.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(table.fontMetrics().height() + 8)
        vertical.hide()
        header = table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        for column, width in _COLUMN_WIDTHS.items():
            header.resizeSection(column, width)
        for column in STYLE_COLUMNS:  # shown for a job whose tasks have them
            table.setColumnHidden(column, True)
        table.setSortingEnabled(True)
        # Script order by default: a 10,000-task queue sorted by place would re-sort on
        # every dispatch; the author sorts by Queue with one click.
        table.sortByColumn(TaskColumn.WHERE, Qt.SortOrder.AscendingOrder)
        table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        table.customContextMenuRequested.connect(self._show_context_menu)

    def _action(
        self,
        text: str,
        handler: Callable[[], object],
        shortcut: QtGui.QKeySequence | QtGui.QKeySequence.StandardKey | str | None = None,
        tip: str = "",
    ) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
            # Active wherever focus is inside this view (the table, the search box).
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        if tip:
            action.setToolTip(f"{tip} ({action.shortcut().toString()})" if shortcut else tip)
        action.triggered.connect(handler)
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        self.move_top_action = self._action(
            "Move to top", lambda: self.move_selected(QueueMove.TOP), "Ctrl+Shift+Up",
            "Draw the selected panels next",
        )  # fmt: skip
        self.move_up_action = self._action(
            "Move up", lambda: self.move_selected(QueueMove.UP), "Ctrl+Up",
            "Move the selected panels one place up the queue",
        )  # fmt: skip
        self.move_down_action = self._action(
            "Move down", lambda: self.move_selected(QueueMove.DOWN), "Ctrl+Down",
            "Move the selected panels one place down the queue",
        )  # fmt: skip
        self.move_bottom_action = self._action(
            "Move to bottom", lambda: self.move_selected(QueueMove.BOTTOM), "Ctrl+Shift+Down",
            "Draw the selected panels last",
        )  # fmt: skip
        self.raise_priority_action = self._action(
            "Raise priority", lambda: self.change_priority(+1), "Ctrl++",
            "Priority +1: higher priorities are drawn first",
        )  # fmt: skip
        self.lower_priority_action = self._action(
            "Lower priority", lambda: self.change_priority(-1), "Ctrl+-", "Priority −1"
        )
        self.retry_action = self._action(
            "Retry selected", self.retry_selected, "Ctrl+R",
            "Queue the selected dead, refused or cancelled panels again",
        )  # fmt: skip
        self.retry_dead_action = self._action(
            "Retry all dead", self.retry_all_dead, "Ctrl+Shift+R",
            "Queue every dead panel of this job again (refused ones need a new prompt)",
        )  # fmt: skip
        self.edit_prompt_action = self._action(
            "Edit prompt and requeue…", self.edit_selected_prompt, "F2",
            "Give a refused or dead panel a new prompt and queue it again",
        )  # fmt: skip
        self.copy_prompt_action = self._action(
            "Copy prompt", self.copy_selected_prompts, QtGui.QKeySequence.StandardKey.Copy,
            "Copy the prompts of the selected panels",
        )  # fmt: skip
        groups = (
            (self.move_top_action, self.move_up_action, self.move_down_action),
            (self.move_bottom_action, self.raise_priority_action, self.lower_priority_action),
            (self.retry_action, self.retry_dead_action, self.edit_prompt_action),
        )
        for group in groups:
            self.toolbar.addActions(list(group))
            self.toolbar.addSeparator()
        self.toolbar.addAction(self.copy_prompt_action)

    def context_menu(self) -> QtWidgets.QMenu:
        """The table's right-click menu (built each time: its actions' states are live)."""
        menu = QtWidgets.QMenu(self)
        menu.addActions([self.move_top_action, self.move_up_action, self.move_down_action])
        menu.addAction(self.move_bottom_action)
        menu.addSeparator()
        menu.addActions([self.raise_priority_action, self.lower_priority_action])
        menu.addSeparator()
        menu.addActions([self.retry_action, self.retry_dead_action, self.edit_prompt_action])
        menu.addSeparator()
        menu.addAction(self.copy_prompt_action)
        return menu

    def _show_context_menu(self, position: QtCore.QPoint) -> None:
        menu = self.context_menu()
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.table.viewport().mapToGlobal(position))

    # --- following the job -------------------------------------------------------------

    def show_job(self, job_id: str) -> None:
        """Show the tasks of ``job_id`` ("" for none)."""
        if (job_id or None) == self.job_id:
            return
        self.job_id = job_id or None
        self._reported_error = None
        self.model.clear()
        self._compositions_of = self._columns_of = None
        self.model.set_compositions({})
        self._counts = Counter()
        self._update_state_buttons()
        self._update_status()
        self.refresh()

    def refresh(self) -> None:
        """Read the job's tasks again now, or right after the read in flight (an action's
        result must show even if a tick's read had already started)."""
        if self.job_id is None:
            return
        if self._refreshing:
            self._refresh_again = True
            return
        self._start_refresh(self.job_id)

    def _on_tick(self) -> None:
        # A hidden table is not read: with 10,000 tasks a read costs the loop real time,
        # and the author sees the table again only through showEvent, which reads it.
        # A costly read is also spaced out (about 5 % of the loop at most): a 10,000-task
        # table refreshed every second or two is as live as anyone can read.
        if self.job_id is None or self._refreshing or not self.isVisible():
            return
        if time.monotonic() < self._next_refresh_at:
            return
        self._start_refresh(self.job_id)

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.refresh()

    def _start_refresh(self, job_id: str) -> None:
        self._refreshing = True
        self._refresh_started = time.monotonic()
        self.bridge.spawn("read the tasks", self._read_rows(job_id))

    async def _read_rows(self, job_id: str) -> None:
        compositions: dict[int, TaskComposition] | None = None
        try:
            table = await self.bridge.session.service.task_table(job_id)
            rows, positions = table.rows, table.positions
            if self._compositions_of != job_id:
                # How the prompts were composed never changes: read once per job (a job
                # without a style bible has nothing to read).
                styled = any(r.style_version for r in rows)
                compositions = await self.bridge.session.task_compositions(job_id) if styled else {}
        except NovelGenError as exc:
            # Every tick would fail the same way (a job deleted elsewhere): say it once.
            if str(exc) != self._reported_error and job_id == self.job_id:
                self._reported_error = str(exc)
                self.bridge.failed.emit("show the tasks", str(exc))
            rows, positions = None, {}
        finally:
            self._refreshing = False
        if rows is not None and job_id == self.job_id:
            self._reported_error = None
            applied = time.monotonic()
            if compositions is not None:
                self._compositions_of = job_id
                self.model.set_compositions(compositions)
            self.set_rows(rows, positions)
            # The loop's share: applying the rows, plus the read (mostly on the store
            # thread, but it competes for the GIL) counted at a fifth.
            now = time.monotonic()
            cost = (now - applied) + (applied - self._refresh_started) / 5
            spacing = min(MAX_REFRESH_INTERVAL, cost * 20) if cost > CHEAP_REFRESH else 0.0
            self._next_refresh_at = now + spacing
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()

    def set_rows(self, rows: Sequence[TaskRow], positions: dict[int, int] | None = None) -> None:
        """Show ``rows`` (a fresh read of the job's tasks; queue positions apart or in the
        rows, see TaskTableModel.set_rows)."""
        self.model.set_rows(rows, positions)
        self._show_style_columns(rows)
        self._counts = Counter(row.state for row in rows)
        self._update_state_buttons()
        self._update_actions()
        self._update_status()
        if self._scroll_to_current:
            self._scroll_to_current = False
            current = self.table.currentIndex()
            if current.isValid():
                self.table.scrollTo(current)

    def _show_style_columns(self, rows: Sequence[TaskRow]) -> None:
        """Characters and Style show for a job whose tasks have a cast or a style bible
        version (decided once per job: both are fixed when it is created)."""
        if not rows or self._columns_of == self.job_id:
            return
        self._columns_of = self.job_id
        self.table.setColumnHidden(TaskColumn.CHARACTERS, not any(r.characters for r in rows))
        self.table.setColumnHidden(TaskColumn.STYLE, not any(r.style_version for r in rows))

    # --- filters -----------------------------------------------------------------------

    def _apply_state_filter(self) -> None:
        checked = {s for s, b in self.state_buttons.items() if b.isChecked()}
        self.proxy.set_states(None if len(checked) == len(self.state_buttons) else checked)
        self._update_status()

    def set_state_filter(self, states: set[TaskState] | None) -> None:
        """Show only ``states`` (None: all), as if the author toggled the buttons."""
        for state, button in self.state_buttons.items():
            button.blockSignals(True)
            button.setChecked(states is None or state in states)
            button.blockSignals(False)
        self._apply_state_filter()

    def _update_state_buttons(self) -> None:
        for state, button in self.state_buttons.items():
            button.setText(f"{STATE_LABELS[state]} {self._counts.get(state, 0):,}")

    def _update_status(self) -> None:
        total = self.model.rowCount()
        shown = self.proxy.rowCount()
        if self.job_id is None:
            text = "No job selected"
        elif shown == total:
            text = f"{total:,} tasks"
        else:
            text = f"{shown:,} of {total:,} tasks shown"
        self.status.setText(text)

    # --- selection ---------------------------------------------------------------------

    def selected_rows(self) -> list[TaskRow]:
        """The selected tasks, top to bottom as shown."""
        indexes = sorted(self.table.selectionModel().selectedRows(), key=lambda i: i.row())
        return [self.proxy.row_at(index.row()) for index in indexes]

    def select_tasks(self, task_ids: Sequence[int]) -> None:
        """Select these tasks (those shown by the current filter) and scroll to the first."""
        selection = QtCore.QItemSelection()
        first: QtCore.QModelIndex | None = None
        last_column = self.proxy.columnCount() - 1
        for task_id in task_ids:
            row = self.proxy.proxy_row_of(task_id)
            if row is None:
                continue
            left = self.proxy.index(row, 0)
            selection.select(left, self.proxy.index(row, last_column))
            first = left if first is None or row < first.row() else first
        model = self.table.selectionModel()
        flag = QtCore.QItemSelectionModel.SelectionFlag
        model.select(selection, flag.ClearAndSelect | flag.Rows)
        if first is not None:
            model.setCurrentIndex(first, flag.NoUpdate)
            self.table.scrollTo(first)

    def _update_actions(self) -> None:
        rows = self.selected_rows() if self.job_id is not None else []
        states = {row.state for row in rows}
        movable = bool(states & MOVABLE)
        for action in (
            self.move_top_action,
            self.move_up_action,
            self.move_down_action,
            self.move_bottom_action,
        ):
            action.setEnabled(movable)
        can_prioritise = bool(states - {TaskState.DONE})
        self.raise_priority_action.setEnabled(can_prioritise)
        self.lower_priority_action.setEnabled(can_prioritise)
        self.retry_action.setEnabled(bool(states & RETRYABLE))
        self.retry_dead_action.setEnabled(self._counts.get(TaskState.DEAD, 0) > 0)
        self.edit_prompt_action.setEnabled(len(rows) == 1 and rows[0].state in RETRYABLE)
        self.copy_prompt_action.setEnabled(bool(rows))

    # --- actions -----------------------------------------------------------------------

    def _run(
        self, what: str, action: Coroutine[Any, Any, Any], done: Callable[[Any], None]
    ) -> None:
        def finished(result: Any) -> None:
            done(result)
            self.refresh()

        self.bridge.spawn(what, action, finished)

    def move_selected(self, where: QueueMove) -> None:
        job_id = self.job_id
        ids = [row.task_id for row in self.selected_rows() if row.state in MOVABLE]
        if job_id is None or not ids:
            return
        words = _MOVE_WORDS[where]
        self._scroll_to_current = True
        self._run(
            f"move tasks {words}",
            self.bridge.session.service.move_tasks(job_id, ids, where),
            lambda moved: self.bridge.info.emit(f"{moved} task(s) moved {words}"),
        )

    def change_priority(self, delta: int) -> None:
        job_id = self.job_id
        ids = [row.task_id for row in self.selected_rows() if row.state is not TaskState.DONE]
        if job_id is None or not ids:
            return
        self._scroll_to_current = True
        self._run(
            "change the priority",
            self.bridge.session.service.change_priority(job_id, ids, delta),
            lambda changed: self.bridge.info.emit(
                f"priority {'raised' if delta > 0 else 'lowered'} for {changed} task(s)"
            ),
        )

    def retry_selected(self) -> None:
        job_id = self.job_id
        ids = [row.task_id for row in self.selected_rows() if row.state in RETRYABLE]
        if job_id is None or not ids:
            return
        self._run(
            "retry tasks",
            self.bridge.session.service.retry_tasks(job_id, ids),
            lambda revived: self.bridge.info.emit(f"{len(revived)} task(s) queued again"),
        )

    def retry_all_dead(self) -> None:
        if self.job_id is None:
            return
        self._run(
            "retry the dead tasks",
            self.bridge.session.service.retry_all_dead(self.job_id),
            lambda revived: self.bridge.info.emit(f"{len(revived)} dead task(s) queued again"),
        )

    def edit_selected_prompt(self) -> EditPromptDialog | None:
        """Open the edit-and-requeue dialog for the one selected refused/dead/cancelled task
        (window-modal, not blocking the loop: the engine keeps running meanwhile)."""
        rows = self.selected_rows()
        if self.job_id is None or len(rows) != 1 or rows[0].state not in RETRYABLE:
            return None
        previous = self.edit_dialog
        if previous is not None and not previous.busy and not previous.isVisible():
            previous.deleteLater()
        dialog = EditPromptDialog(self.bridge, self.job_id, rows[0], self)
        dialog.requeued.connect(lambda _task_id: self.refresh())
        self.edit_dialog = dialog
        dialog.open()
        return dialog

    def copy_selected_prompts(self) -> None:
        rows = self.selected_rows()
        if not rows:
            return
        clipboard = QtGui.QGuiApplication.clipboard()
        clipboard.setText("\n".join(row.prompt for row in rows))
        self.bridge.info.emit(f"{len(rows)} prompt(s) copied")


__all__ = ["MOVABLE", "RETRYABLE", "EditPromptDialog", "TasksView"]
