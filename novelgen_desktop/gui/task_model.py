"""The task table's model and its filter: 10,000 live rows without lag.

Two choices keep a big job smooth:

* **Diffing, not resetting.** The bridge ticks twice a second and each tick brings every
  task of the job again. :meth:`TaskTableModel.set_rows` compares the new rows with the ones
  shown (frozen dataclasses compare field by field) and emits ``dataChanged`` only for the
  rows that changed, and row insertions/removals only when tasks come or go. A reset would
  drop the author's selection and scroll position on every tick.
* **Sorting in Python, in the model.** A ``QSortFilterProxyModel`` sorting by itself asks the
  (Python) source model for two values per comparison: about 280,000 ``data()`` calls to sort
  10,000 rows (measured at 1–1.5 s), and again on every tick while the queue shifts. So the
  source model sorts itself with precomputed Python keys (a few milliseconds) and
  :class:`TaskFilterProxy` only filters; its ``sort()`` hands the request to the model. The
  header's sort indicator, the selection and the current index follow the rows as usual
  (persistent indexes are moved with them).

Empty values (no queue position, no worker, no duration, no error) sort last in both
directions, as in a spreadsheet: the author sorting by queue position wants the queue, not a
screen of finished tasks. Ties keep the script order (``seq``).

A prompt composed with a style bible shows its characters and the bible version in columns
of their own (from the rows) and, in the prompt's tooltip, the panel's own description beside
the composed text with the setting, props, reference images and what was trimmed to fit:
those come from :meth:`TaskTableModel.set_compositions`, read once per job (they never
change once the job exists).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from novelgen_desktop.desktop.session import TaskComposition
from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.service import TaskRow
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
"""The value a column sorts by (a Python key: numbers as numbers, "where" naturally)."""
ROW_ROLE = int(Qt.ItemDataRole.UserRole) + 2
"""The whole :class:`TaskRow` of an index (actions read the selected tasks through it)."""
TASK_ID_ROLE = int(Qt.ItemDataRole.UserRole) + 3

_NO_PARENT = QtCore.QModelIndex()
PROMPT_EXCERPT_CHARS = 120
MAX_DATA_CHANGED_RUNS = 64
"""Above this many separate runs of changed rows, one ``dataChanged`` spans them all: the
proxy handles each signal on its own, and a shifted queue can touch thousands of rows."""


class TaskColumn(enum.IntEnum):
    ID = 0
    QUEUE = 1
    WHERE = 2
    PROMPT = 3
    CHARACTERS = 4
    STATE = 5
    PRIORITY = 6
    ATTEMPTS = 7
    WORKER = 8
    DURATION = 9
    STYLE = 10
    ERROR = 11


HEADERS: dict[TaskColumn, str] = {
    TaskColumn.ID: "ID",
    TaskColumn.QUEUE: "Queue",
    TaskColumn.WHERE: "Where",
    TaskColumn.PROMPT: "Prompt",
    TaskColumn.CHARACTERS: "Characters",
    TaskColumn.STATE: "State",
    TaskColumn.PRIORITY: "Priority",
    TaskColumn.ATTEMPTS: "Attempts",
    TaskColumn.WORKER: "Worker",
    TaskColumn.DURATION: "Duration",
    TaskColumn.STYLE: "Style",
    TaskColumn.ERROR: "Error",
}
_HEADER_TIPS: dict[TaskColumn, str] = {
    TaskColumn.QUEUE: "Place in the job's queue (1 = drawn next); empty when not queued",
    TaskColumn.CHARACTERS: "Who is in the panel: the style bible's names, or the script's cast",
    TaskColumn.STYLE: "The version of the style bible the prompt was composed with",
}

STATE_LABELS: dict[TaskState, str] = {
    TaskState.QUEUED: "queued",
    TaskState.LEASED: "drawing",
    TaskState.DONE: "done",
    TaskState.DEAD: "dead",
    TaskState.REFUSED: "refused",
    TaskState.CANCELLED: "cancelled",
}
STATE_COLOURS: dict[TaskState, str] = {
    TaskState.QUEUED: "#9aa0a6",
    TaskState.LEASED: "#1a73e8",
    TaskState.DONE: "#188038",
    TaskState.DEAD: "#d93025",
    TaskState.REFUSED: "#e37400",
    TaskState.CANCELLED: "#5f6368",
}
STATE_ORDER: dict[TaskState, int] = {state: index for index, state in enumerate(TaskState)}
"""States sort in their life order: queued, leased, done, dead, refused, cancelled."""

_NUMERIC = frozenset(
    {
        TaskColumn.ID,
        TaskColumn.QUEUE,
        TaskColumn.PRIORITY,
        TaskColumn.ATTEMPTS,
        TaskColumn.DURATION,
    }
)
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[str | int, ...]:
    """``"ch 10"`` after ``"ch 2"``: digit runs compare as numbers. The split always starts
    with a string, so strings and numbers alternate at the same positions and compare."""
    return tuple(
        int(part) if index % 2 else part
        for index, part in enumerate(_DIGITS.split(text.casefold()))
    )


def where_text(row: TaskRow) -> str:
    """``"ch 2 · p 3 · panel 4"``; a plain list of prompts has no place, so its number."""
    parts = []
    if row.chapter is not None:
        parts.append(f"ch {row.chapter}")
    if row.page is not None:
        parts.append(f"p {row.page}")
    if row.panel is not None:
        parts.append(f"panel {row.panel}")
    if not parts:
        parts.append(f"#{row.seq}")
    if row.variant > 1:
        parts.append(f"v{row.variant}")
    return " · ".join(parts)


def where_key(row: TaskRow) -> tuple[Any, ...]:
    """Chapter (naturally: "2" before "10", no chapter first), page, panel, variant."""
    chapter = natural_key(row.chapter) if row.chapter is not None else ()
    page = row.page if row.page is not None else -1
    panel = row.panel if row.panel is not None else -1
    return (chapter, page, panel, row.variant)


def sort_key(row: TaskRow, column: int, positions: dict[int, int] | None = None) -> Any:
    """What ``column`` sorts by; None means empty (sorted last in both directions).
    ``positions``: queue positions kept apart from the rows (see TaskTableModel.set_rows)."""
    match column:
        case TaskColumn.ID:
            return row.task_id
        case TaskColumn.QUEUE:
            if positions is not None:
                return positions.get(row.task_id)
            return row.queue_position
        case TaskColumn.WHERE:
            return where_key(row)
        case TaskColumn.PROMPT:
            return row.prompt.casefold()
        case TaskColumn.CHARACTERS:
            return natural_key(", ".join(row.characters)) if row.characters else None
        case TaskColumn.STATE:
            return STATE_ORDER[row.state]
        case TaskColumn.PRIORITY:
            return row.priority
        case TaskColumn.ATTEMPTS:
            return row.attempts
        case TaskColumn.WORKER:
            return natural_key(row.worker_id) if row.worker_id else None
        case TaskColumn.DURATION:
            return row.duration
        case TaskColumn.STYLE:
            return natural_key(row.style_version) if row.style_version else None
        case TaskColumn.ERROR:
            return row.error.casefold() if row.error else None
    return row.seq


def sorted_rows(
    rows: Iterable[TaskRow],
    column: int,
    order: Qt.SortOrder,
    positions: dict[int, int] | None = None,
) -> list[TaskRow]:
    """``rows`` as the table shows them sorted by ``column`` (-1: script order)."""
    by_seq = sorted(rows, key=lambda r: (r.seq, r.task_id))
    if column < 0 or column >= len(TaskColumn):
        return by_seq
    keyed = [(sort_key(row, column, positions), row) for row in by_seq]
    present = [pair for pair in keyed if pair[0] is not None]
    empty = [row for key, row in keyed if key is None]
    # reverse=True keeps equal keys in their original (script) order: Python's sort is stable
    present.sort(key=lambda pair: pair[0], reverse=order == Qt.SortOrder.DescendingOrder)
    return [row for _key, row in present] + empty


def prompt_tooltip(row: TaskRow, found: TaskComposition | None = None) -> str:
    """The prompt column's tooltip: the prompt sent and, when it was composed, the panel's
    own description, the style bible, who and what it brought in, what was cut to fit."""
    if row.description is None or row.description == row.prompt:
        return row.prompt
    bible = found.bible if found is not None and found.bible else "style bible"
    if row.style_version is not None:
        heading = f"Composed prompt ({len(row.prompt):,} characters, {bible} {row.style_version})"
    else:
        heading = f"Prompt sent ({len(row.prompt):,} characters)"
    lines = [f"Description: {row.description}", "", f"{heading}:", row.prompt, ""]
    extras: tuple[tuple[str, tuple[str, ...], str], ...] = (("Characters", row.characters, ", "),)
    if found is not None:
        extras += (
            ("Setting", found.locations, ", "),
            ("Props", found.props, ", "),
            ("Reference images", found.references, ", "),
            ("Trimmed to fit", found.trimmed, "; "),
        )
    lines += [f"{label}: {sep.join(names)}" for label, names, sep in extras if names]
    return "\n".join(lines).rstrip()


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _runs(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indexes as contiguous (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


_ICONS: dict[str, QtGui.QIcon] = {}


def dot_icon(colour: str) -> QtGui.QIcon:
    """A small filled circle, drawn once per colour (tables ask for their icons on every
    repaint of every visible row)."""
    icon = _ICONS.get(colour)
    if icon is None:
        size = 12
        pixmap = QtGui.QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QtGui.QPainter(pixmap)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        fill = QtGui.QColor(colour)
        painter.setPen(QtGui.QPen(fill.darker(130), 1))
        painter.setBrush(fill)
        painter.drawEllipse(1, 1, size - 2, size - 2)
        painter.end()
        icon = QtGui.QIcon(pixmap)
        _ICONS[colour] = icon
    return icon


def state_icon(state: TaskState) -> QtGui.QIcon:
    return dot_icon(STATE_COLOURS[state])


class TaskTableModel(QtCore.QAbstractTableModel):
    """Every task of one job, one row each, updated in place by :meth:`set_rows`."""

    queue_moved = QtCore.Signal()  # queue positions changed: repaint the Queue column

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[TaskRow] = []
        self._row_of: dict[int, int] = {}  # task id -> row number
        self._haystacks: dict[int, tuple[TaskRow, str]] = {}
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        # Queue positions, kept apart from the rows: one dispatch shifts every queued task's
        # place, and a 10,000-row table must not treat that as 10,000 changed rows.
        self._positions: dict[int, int] = {}
        # How composed prompts were made (setting, props, references, cuts): fixed per job.
        self._compositions: dict[int, TaskComposition] = {}

    # --- reading ---------------------------------------------------------------------------

    def rowCount(  # noqa: N802
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _NO_PARENT
    ) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(  # noqa: N802
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _NO_PARENT
    ) -> int:
        return 0 if parent.isValid() else len(TaskColumn)

    def row_at(self, row: int) -> TaskRow:
        return self._rows[row]

    def rows(self) -> list[TaskRow]:
        """The rows in the model's current (sorted) order."""
        return list(self._rows)

    def row_of(self, task_id: int) -> int | None:
        return self._row_of.get(task_id)

    def haystack(self, row: int) -> str:
        """What the search box matches against, casefolded, cached per row version."""
        task = self._rows[row]
        cached = self._haystacks.get(task.task_id)
        if cached is not None and cached[0] is task:
            return cached[1]
        text = "\n".join(
            (
                task.prompt,
                where_text(task),
                task.error or "",
                task.worker_id or "",
                ", ".join(task.characters),
            )
        ).casefold()
        self._haystacks[task.task_id] = (task, text)
        return text

    def headerData(  # noqa: N802
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(TaskColumn):
            column = TaskColumn(section)
            if role == Qt.ItemDataRole.DisplayRole:
                return HEADERS[column]
            if role == Qt.ItemDataRole.ToolTipRole:
                return _HEADER_TIPS.get(column)
        return None

    def data(
        self,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == TaskColumn.QUEUE:
                place = self._positions.get(row.task_id)
                return str(place) if place is not None else ""
            return self._display(row, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == TaskColumn.PROMPT:
                return prompt_tooltip(row, self._compositions.get(row.task_id))
            if column == TaskColumn.STYLE and row.style_version:
                return self._style_tooltip(row)
            return self._tooltip(row, column)
        if role == Qt.ItemDataRole.DecorationRole:
            return state_icon(row.state) if column == TaskColumn.STATE else None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if column in _NUMERIC:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        if role == SORT_ROLE:
            return sort_key(row, column, self._positions)
        if role == ROW_ROLE:
            return row
        if role == TASK_ID_ROLE:
            return row.task_id
        return None

    @staticmethod
    def _display(row: TaskRow, column: int) -> str:
        match column:
            case TaskColumn.ID:
                return str(row.task_id)
            case TaskColumn.QUEUE:
                return str(row.queue_position) if row.queue_position is not None else ""
            case TaskColumn.WHERE:
                return where_text(row)
            case TaskColumn.PROMPT:
                line = " ".join(row.prompt.split())
                if len(line) > PROMPT_EXCERPT_CHARS:
                    return line[: PROMPT_EXCERPT_CHARS - 1] + "…"
                return line
            case TaskColumn.CHARACTERS:
                return ", ".join(row.characters)
            case TaskColumn.STATE:
                return STATE_LABELS[row.state]
            case TaskColumn.PRIORITY:
                return str(row.priority)
            case TaskColumn.ATTEMPTS:
                return str(row.attempts)
            case TaskColumn.WORKER:
                return row.worker_id or ""
            case TaskColumn.DURATION:
                return _format_duration(row.duration) if row.duration is not None else ""
            case TaskColumn.STYLE:
                return row.style_version or ""
            case TaskColumn.ERROR:
                return " ".join((row.error or "").split())
        return ""

    def _style_tooltip(self, row: TaskRow) -> str:
        found = self._compositions.get(row.task_id)
        bible = found.bible if found is not None and found.bible else "Style bible"
        lines = [f"{bible}, version {row.style_version}"]
        if found is not None and found.references:
            lines.append(f"Reference images: {', '.join(found.references)}")
        if found is not None and found.trimmed:
            lines.append(f"Trimmed to fit: {'; '.join(found.trimmed)}")
        return "\n".join(lines)

    @staticmethod
    def _tooltip(row: TaskRow, column: int) -> str | None:
        if column == TaskColumn.CHARACTERS and row.characters:
            return ", ".join(row.characters)
        if column == TaskColumn.ERROR and row.error:
            return f"{row.error_kind}: {row.error}" if row.error_kind else row.error
        if column == TaskColumn.WHERE:
            return f"{row.source}\n→ {row.planned_path}" if row.source else row.planned_path
        if column == TaskColumn.ATTEMPTS and row.failures:
            return f"{row.attempts} attempt(s), {row.failures} failed"
        return None

    # --- updating --------------------------------------------------------------------------

    def queue_position(self, task_id: int) -> int | None:
        return self._positions.get(task_id)

    def composition(self, task_id: int) -> TaskComposition | None:
        return self._compositions.get(task_id)

    def set_compositions(self, compositions: dict[int, TaskComposition]) -> None:
        """How the job's composed prompts were made, by task id (only tooltips use it: the
        columns come from the rows)."""
        self._compositions = dict(compositions)

    def set_rows(self, rows: Sequence[TaskRow], positions: dict[int, int] | None = None) -> None:
        """Show ``rows`` (every task of the job, in any order), changing only what changed.

        Rows are matched by task id. Tasks that are gone are removed, new tasks are inserted,
        changed rows get one ``dataChanged`` per contiguous run. Only a completely different
        set (another job) resets the model. The current sort is kept.
        """
        incoming: dict[int, TaskRow] = {row.task_id: row for row in rows}
        if positions is None:  # rows that carry their own place (JobService.task_rows)
            positions = {r.task_id: r.queue_position for r in rows if r.queue_position is not None}
        moved_in_queue = positions != self._positions
        self._positions = positions
        if not self._rows or not incoming or incoming.keys().isdisjoint(self._row_of):
            self._reset(incoming.values())
            return
        gone = [i for i, row in enumerate(self._rows) if row.task_id not in incoming]
        if gone:
            for first, last in reversed(_runs(gone)):
                self.beginRemoveRows(QtCore.QModelIndex(), first, last)
                del self._rows[first : last + 1]
                self.endRemoveRows()
            self._reindex()
            for task_id in [t for t in self._haystacks if t not in incoming]:
                del self._haystacks[task_id]
        changed: list[int] = []
        resort = False
        column = self._sort_column
        for i, old in enumerate(self._rows):
            new = incoming[old.task_id]
            if new is not old and new != old:
                self._rows[i] = new
                changed.append(i)
                if column >= 0 and not resort:
                    resort = sort_key(old, column, positions) != sort_key(new, column, positions)
        fresh = [row for task_id, row in incoming.items() if task_id not in self._row_of]
        if fresh:
            start = len(self._rows)
            self.beginInsertRows(QtCore.QModelIndex(), start, start + len(fresh) - 1)
            self._rows.extend(fresh)
            for offset, row in enumerate(fresh):
                self._row_of[row.task_id] = start + offset
            self.endInsertRows()
            resort = resort or column >= 0
        self._emit_changed(changed)
        if moved_in_queue and self._rows:
            # Not dataChanged over the whole column: a filter proxy would re-filter every
            # row of a 10,000-task job for a change that cannot affect the filter. Views
            # repaint the column (they read positions when they paint).
            self.queue_moved.emit()
            resort = resort or column == TaskColumn.QUEUE
        if resort:
            self._apply_sort()

    def clear(self) -> None:
        self._reset(())

    def _reset(self, rows: Iterable[TaskRow]) -> None:
        self.beginResetModel()
        self._rows = sorted_rows(rows, self._sort_column, self._sort_order, self._positions)
        self._reindex()
        self._haystacks.clear()
        self.endResetModel()

    def _reindex(self) -> None:
        self._row_of = {row.task_id: i for i, row in enumerate(self._rows)}

    def _emit_changed(self, changed: Sequence[int]) -> None:
        if not changed:
            return
        last_column = len(TaskColumn) - 1
        runs = _runs(changed)
        if len(runs) > MAX_DATA_CHANGED_RUNS:
            runs = [(runs[0][0], runs[-1][1])]
        for first, last in runs:
            self.dataChanged.emit(self.index(first, 0), self.index(last, last_column))

    # --- sorting ---------------------------------------------------------------------------

    @property
    def sort_column(self) -> int:
        return self._sort_column

    @property
    def sort_order(self) -> Qt.SortOrder:
        return self._sort_order

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by ``column`` (-1: script order) and keep it sorted through updates."""
        self._sort_column = column if 0 <= column < len(TaskColumn) else -1
        self._sort_order = order
        self._apply_sort()

    def _apply_sort(self) -> None:
        ordered = sorted_rows(self._rows, self._sort_column, self._sort_order, self._positions)
        if all(a is b for a, b in zip(ordered, self._rows, strict=True)):
            return
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        ids = [self._rows[index.row()].task_id for index in before]
        self._rows = ordered
        self._reindex()
        after = [
            self.index(self._row_of[task_id], index.column())
            for task_id, index in zip(ids, before, strict=True)
        ]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()


class TaskFilterProxy(QtCore.QSortFilterProxyModel):
    """Filters a :class:`TaskTableModel` by state and by a case-insensitive search over the
    prompt, the place in the script, the error and the worker. Sorting is delegated to the
    model (see the module docs for why); the proxy keeps the model's order."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._states: frozenset[TaskState] | None = None
        self._needle = ""
        self._tasks: TaskTableModel | None = None
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def setSourceModel(self, model: QtCore.QAbstractItemModel) -> None:  # noqa: N802
        if not isinstance(model, TaskTableModel):
            raise TypeError("TaskFilterProxy filters a TaskTableModel")
        self._tasks = model
        super().setSourceModel(model)

    @property
    def tasks(self) -> TaskTableModel:
        if self._tasks is None:
            raise RuntimeError("TaskFilterProxy has no source model")
        return self._tasks

    @property
    def states(self) -> frozenset[TaskState] | None:
        return self._states

    @property
    def search(self) -> str:
        return self._needle

    def set_states(self, states: Iterable[TaskState] | None) -> None:
        """Show only tasks in ``states`` (None: every state)."""
        wanted = None if states is None else frozenset(states)
        if wanted == self._states:
            return
        self._change_filter(lambda: setattr(self, "_states", wanted))

    def set_search(self, text: str) -> None:
        needle = text.strip().casefold()
        if needle == self._needle:
            return
        self._change_filter(lambda: setattr(self, "_needle", needle))

    def _change_filter(self, change: Callable[[], None]) -> None:
        self.beginFilterChange()
        change()
        self.endFilterChange(QtCore.QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(  # noqa: N802
        self, source_row: int, source_parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex
    ) -> bool:
        tasks = self.tasks
        if self._states is not None and tasks.row_at(source_row).state not in self._states:
            return False
        return not self._needle or self._needle in tasks.haystack(source_row)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.tasks.sort(column, order)

    def row_at(self, proxy_row: int) -> TaskRow:
        return self.tasks.row_at(self.mapToSource(self.index(proxy_row, 0)).row())

    def visible_rows(self) -> list[TaskRow]:
        """The rows as shown, top to bottom (tests, copy, export)."""
        return [self.row_at(r) for r in range(self.rowCount())]

    def proxy_row_of(self, task_id: int) -> int | None:
        source = self.tasks.row_of(task_id)
        if source is None:
            return None
        mapped = self.mapFromSource(self.tasks.index(source, 0))
        return mapped.row() if mapped.isValid() else None


__all__ = [
    "HEADERS",
    "ROW_ROLE",
    "SORT_ROLE",
    "STATE_COLOURS",
    "STATE_LABELS",
    "TASK_ID_ROLE",
    "TaskColumn",
    "TaskFilterProxy",
    "TaskTableModel",
    "dot_icon",
    "natural_key",
    "prompt_tooltip",
    "sort_key",
    "sorted_rows",
    "state_icon",
    "where_key",
    "where_text",
]
