"""The log tab: the engine's events as they happen, and the selected job's failures grouped.

A week-long run logs hundreds of thousands of events, so the table keeps the newest
``capacity`` (20,000 by default) and drops the oldest; events arriving between two ticks are
added as one batch on the bridge's beat, so a burst of results is one insert, not hundreds.
The grouped errors answer "why are my panels failing?" without reading the log: they are read
from the store again only when the job's failure count moved (or every few seconds for a job
that is not running), not on every tick.
"""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novelgen_desktop.engine.service import ErrorGroupView
from novelgen_desktop.errors import ConfigError, NovelGenError, OutputError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.store.records import EventLogged

DEFAULT_CAPACITY = 20_000
HISTORY_ROWS = 5_000
"""Events read from the store when the view opens (the rest is in the store)."""

ERRORS_REFRESH_SECONDS = 5.0
"""How often the grouped errors of a job that is not running are read again."""

COLUMNS = ("Time", "Level", "Kind", "Job", "Worker", "Task", "Message")
COL_TIME, COL_LEVEL, COL_KIND, COL_JOB, COL_WORKER, COL_TASK, COL_MESSAGE = range(7)
EXPORT_FIELDS = ("time", "ts", "level", "kind", "job_id", "worker_id", "task_id", "message", "data")

LEVEL_COLOURS = {"warning": "#9a6700", "error": "#c0392b"}
_ROOT = QtCore.QModelIndex()


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One engine event, as shown and exported."""

    ts: float
    level: str
    kind: str
    message: str
    job_id: str | None = None
    worker_id: str | None = None
    task_id: int | None = None
    data: Mapping[str, Any] | None = None

    @classmethod
    def from_event(cls, event: EventLogged) -> LogEntry:
        return cls(
            event.ts,
            event.level,
            event.kind,
            event.message,
            event.job_id,
            event.worker_id,
            event.task_id,
            event.data,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LogEntry:
        """A row of JobService.recent_events."""
        task = row.get("task_id")
        return cls(
            float(row.get("ts") or 0.0),
            str(row.get("level") or "info"),
            str(row.get("kind") or ""),
            str(row.get("message") or ""),
            row.get("job_id"),
            row.get("worker_id"),
            int(task) if task is not None else None,
            row.get("data"),
        )

    def key(self) -> tuple[float, str, str, str | None, str | None, int | None]:
        """Identity for merging the store's history with live events seen meanwhile."""
        return (
            round(self.ts, 6),
            self.kind,
            self.message,
            self.job_id,
            self.worker_id,
            self.task_id,
        )

    def cells(self) -> tuple[str, ...]:
        return (
            time.strftime("%H:%M:%S", time.localtime(self.ts)),
            self.level,
            self.kind,
            self.job_id or "",
            self.worker_id or "",
            "" if self.task_id is None else str(self.task_id),
            self.message,
        )

    def record(self) -> dict[str, Any]:
        """The exported form (JSON; CSV writes ``data`` as JSON text)."""
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.ts))
            + f".{int(self.ts % 1 * 1000):03d}",
            "ts": self.ts,
            "level": self.level,
            "kind": self.kind,
            "job_id": self.job_id,
            "worker_id": self.worker_id,
            "task_id": self.task_id,
            "message": self.message,
            "data": dict(self.data) if self.data is not None else None,
        }


class LogModel(QtCore.QAbstractTableModel):
    """The newest ``capacity`` events, oldest first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: list[LogEntry] = []

    def rowCount(  # noqa: N802 - Qt API
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _ROOT
    ) -> int:
        return 0 if parent.isValid() else len(self._entries)

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
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.cells()[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.ts))
            tip += f"\n{entry.message}"
            if entry.data:
                tip += "\n" + json.dumps(entry.data, ensure_ascii=False, sort_keys=True)
            return tip
        if role == Qt.ItemDataRole.ForegroundRole and entry.level in LEVEL_COLOURS:
            return QtGui.QBrush(QtGui.QColor(LEVEL_COLOURS[entry.level]))
        return None

    def entry(self, row: int) -> LogEntry:
        return self._entries[row]

    def entries(self) -> list[LogEntry]:
        return list(self._entries)

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Add a batch at the end; the oldest rows go when the table is full."""
        if not entries:
            return
        if len(entries) > self.capacity:
            entries = entries[-self.capacity :]
        overflow = len(self._entries) + len(entries) - self.capacity
        if overflow > 0:
            self.beginRemoveRows(_ROOT, 0, overflow - 1)
            del self._entries[:overflow]
            self.endRemoveRows()
        first = len(self._entries)
        self.beginInsertRows(_ROOT, first, first + len(entries) - 1)
        self._entries.extend(entries)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._entries.clear()
        self.endResetModel()


class LogFilter(QtCore.QSortFilterProxyModel):
    """Level, kind and worker (exact) and a text (anywhere in the row, any case)."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.level: str | None = None
        self.kind: str | None = None
        self.worker: str | None = None
        self.text = ""

    def set_filters(
        self, *, level: str | None, kind: str | None, worker: str | None, text: str
    ) -> None:
        text = text.strip().casefold()
        if (level, kind, worker, text) == (self.level, self.kind, self.worker, self.text):
            return
        self.beginFilterChange()
        self.level, self.kind, self.worker, self.text = level, kind, worker, text
        self.endFilterChange(QtCore.QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(  # noqa: N802 - Qt API
        self, source_row: int, source_parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex
    ) -> bool:
        model = self.sourceModel()
        if not isinstance(model, LogModel):
            return True
        entry = model.entry(source_row)
        if self.level is not None and entry.level != self.level:
            return False
        if self.kind is not None and entry.kind != self.kind:
            return False
        if self.worker is not None and entry.worker_id != self.worker:
            return False
        if self.text:
            haystack = " ".join(entry.cells()[1:]).casefold()
            return self.text in haystack
        return True


class LogView(QtWidgets.QWidget):
    """The filtered event table above the selected job's grouped errors."""

    def __init__(
        self,
        bridge: EngineBridge,
        parent: QtWidgets.QWidget | None = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
        history_rows: int = HISTORY_ROWS,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self.model = LogModel(capacity, self)
        self.proxy = LogFilter(self)
        self.proxy.setSourceModel(self.model)
        self._pending: deque[LogEntry] = deque(maxlen=capacity)
        self._loading = True
        self._seen: dict[str, set[str]] = {"level": set(), "kind": set(), "worker": set()}

        # --- filters
        self.level_combo = self._combo("all levels")
        self.kind_combo = self._combo("all kinds")
        self.worker_combo = self._combo("all workers")
        self.text_edit = QtWidgets.QLineEdit(self)
        self.text_edit.setPlaceholderText("Filter text…")
        self.text_edit.setClearButtonEnabled(True)
        self._text_timer = QtCore.QTimer(self)
        self._text_timer.setSingleShot(True)
        self._text_timer.setInterval(200)  # one filter pass per pause in typing
        self._text_timer.timeout.connect(self._apply_filters)
        self.text_edit.textChanged.connect(lambda _text: self._text_timer.start())
        self.count_label = QtWidgets.QLabel(self)
        copy_button = QtWidgets.QPushButton("Copy", self)
        copy_button.clicked.connect(self.copy_selection)
        export_button = QtWidgets.QPushButton("Export…", self)
        export_button.clicked.connect(self.export_dialog)
        filters = QtWidgets.QHBoxLayout()
        for widget in (self.level_combo, self.kind_combo, self.worker_combo):
            filters.addWidget(widget)
        filters.addWidget(self.text_edit, 1)
        filters.addWidget(self.count_label)
        filters.addWidget(copy_button)
        filters.addWidget(export_button)

        # --- the table
        self.table = QtWidgets.QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)
        for column, width in ((COL_TIME, 70), (COL_LEVEL, 60), (COL_KIND, 130), (COL_JOB, 150)):
            self.table.setColumnWidth(column, width)
        self.copy_action = QtGui.QAction("Copy", self.table)
        self.copy_action.setShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Copy))
        self.copy_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.copy_action.triggered.connect(lambda _checked=False: self.copy_selection())
        self.table.addAction(self.copy_action)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

        # --- grouped errors
        self.errors_label = QtWidgets.QLabel("Grouped errors: no job selected", self)
        self.errors_tree = QtWidgets.QTreeWidget(self)
        self.errors_tree.setRootIsDecorated(False)
        self.errors_tree.setHeaderLabels(["Count", "Kind", "Message", "Last seen", "Tasks"])
        self.errors_tree.setColumnWidth(0, 60)
        self.errors_tree.setColumnWidth(1, 110)
        self.errors_tree.setColumnWidth(2, 380)
        self.errors_job: str | None = None
        self.errors_count = -1  # failed attempts of the last report (-1: none yet)
        self.error_groups: list[ErrorGroupView] = []
        self._errors_at = 0.0
        self._errors_busy = False
        errors = QtWidgets.QWidget(self)
        errors_layout = QtWidgets.QVBoxLayout(errors)
        errors_layout.setContentsMargins(0, 0, 0, 0)
        errors_layout.addWidget(self.errors_label)
        errors_layout.addWidget(self.errors_tree)

        splitter = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.table)
        splitter.addWidget(errors)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        layout.addWidget(splitter)

        bridge.event_logged.connect(self._on_event)
        bridge.tick.connect(self._on_tick)
        bridge.job_selected.connect(self._on_job_selected)
        # Engine reads finish on the loop, maybe after the window dropped this view: their
        # results must then be ignored, not written into deleted widgets.
        alive = self._alive = [True]
        self.destroyed.connect(lambda *_args: alive.__setitem__(0, False))
        self._update_count()
        self._load_history(history_rows)

    def _combo(self, everything: str) -> QtWidgets.QComboBox:
        combo = QtWidgets.QComboBox(self)
        combo.addItem(everything, None)
        combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        combo.currentIndexChanged.connect(lambda _index: self._apply_filters())
        return combo

    # --- events ---------------------------------------------------------------------------

    def _load_history(self, rows: int) -> None:
        async def load() -> None:
            try:
                history = await self.session.service.recent_events(limit=rows)
            finally:
                self._loading = False  # live events flow even if the history could not be read
            if self._alive[0]:
                self._add_history([LogEntry.from_row(r) for r in history])

        self.bridge.spawn("read the event log", load())

    def _add_history(self, history: list[LogEntry]) -> None:
        keys = {e.key() for e in history}
        # Live events that reached the store before it was read are in both: keep one.
        live = [e for e in self._pending if e.key() not in keys]
        self._pending.clear()
        self._pending.extend(history)
        self._pending.extend(live)
        self.flush()

    def _on_event(self, event: EventLogged) -> None:
        self._pending.append(LogEntry.from_event(event))

    def flush(self) -> None:
        """Add the events received since the last flush (the bridge's tick calls this)."""
        if self._loading or not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        scroll = self.table.verticalScrollBar()
        at_bottom = scroll.value() >= scroll.maximum() - 2
        self.model.append(batch)
        self._remember(batch)
        self._update_count()
        if at_bottom:
            self.table.scrollToBottom()

    def _remember(self, batch: Iterable[LogEntry]) -> None:
        for entry in batch:
            for name, value, combo in (
                ("level", entry.level, self.level_combo),
                ("kind", entry.kind, self.kind_combo),
                ("worker", entry.worker_id, self.worker_combo),
            ):
                if value and value not in self._seen[name]:
                    self._seen[name].add(value)
                    self._insert_sorted(combo, value)

    @staticmethod
    def _insert_sorted(combo: QtWidgets.QComboBox, value: str) -> None:
        blocker = QtCore.QSignalBlocker(combo)
        position = 1
        while position < combo.count() and combo.itemText(position) < value:
            position += 1
        combo.insertItem(position, value, value)
        del blocker

    def _on_job_selected(self, _job_id: str) -> None:
        self.refresh_errors(force=True)

    def _on_tick(self) -> None:
        self.flush()
        self.refresh_errors()

    # --- filters --------------------------------------------------------------------------

    def set_filters(
        self,
        *,
        level: str | None = None,
        kind: str | None = None,
        worker: str | None = None,
        text: str = "",
    ) -> None:
        """Choose the filters as the author would (a value not seen yet is added)."""
        for combo, value in (
            (self.level_combo, level),
            (self.kind_combo, kind),
            (self.worker_combo, worker),
        ):
            blocker = QtCore.QSignalBlocker(combo)
            index = combo.findData(value) if value is not None else 0
            if index < 0:
                self._insert_sorted(combo, value or "")
                index = combo.findData(value)
            combo.setCurrentIndex(index)
            del blocker
        blocker = QtCore.QSignalBlocker(self.text_edit)
        self.text_edit.setText(text)
        del blocker
        self._apply_filters()

    def _apply_filters(self) -> None:
        self._text_timer.stop()
        self.proxy.set_filters(
            level=self.level_combo.currentData(),
            kind=self.kind_combo.currentData(),
            worker=self.worker_combo.currentData(),
            text=self.text_edit.text(),
        )
        self._update_count()

    def combo_values(self, which: str) -> list[str]:
        """The values offered by the "level", "kind" or "worker" filter."""
        combo = {"level": self.level_combo, "kind": self.kind_combo, "worker": self.worker_combo}
        box = combo[which]
        return [box.itemText(i) for i in range(1, box.count())]

    def _update_count(self) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        self.count_label.setText(
            f"{total:,} events" if shown == total else f"{shown:,} of {total:,} events"
        )

    # --- rows out -------------------------------------------------------------------------

    def visible_entries(self) -> list[LogEntry]:
        """The rows the filters let through, oldest first."""
        return [
            self.model.entry(self.proxy.mapToSource(self.proxy.index(row, 0)).row())
            for row in range(self.proxy.rowCount())
        ]

    def selected_entries(self) -> list[LogEntry]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [
            self.model.entry(self.proxy.mapToSource(self.proxy.index(row, 0)).row()) for row in rows
        ]

    def copy_selection(self) -> str:
        """Copy the selected rows as tab-separated text (pastes into a spreadsheet)."""
        lines = []
        for entry in self.selected_entries():
            cells = list(entry.cells())
            cells[COL_TIME] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.ts))
            lines.append("\t".join(" ".join(c.split()) for c in cells))
        text = "\n".join(lines)
        if text:
            QtGui.QGuiApplication.clipboard().setText(text)
        return text

    def export(self, path: str | Path, *, visible_only: bool = True) -> int:
        """Write the rows shown (or every row kept) to ``path``: CSV or JSON by its
        extension. Returns the number of events written."""
        target = Path(path)
        entries = self.visible_entries() if visible_only else self.model.entries()
        records = [e.record() for e in entries]
        suffix = target.suffix.lower()
        try:
            if suffix == ".csv":
                with target.open("w", encoding="utf-8", newline="") as out:
                    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
                    writer.writeheader()
                    for record in records:
                        data = record["data"]
                        record["data"] = (
                            "" if data is None else json.dumps(data, ensure_ascii=False)
                        )
                        record["ts"] = repr(record["ts"])
                        writer.writerow(record)
            elif suffix == ".json":
                target.write_text(
                    json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
                )
            else:
                raise ConfigError(f"export the log as .csv or .json, not {target.name!r}")
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return len(records)

    def export_dialog(self) -> None:
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Export the log",
            str(Path.home() / "novelgen-log.csv"),
            "CSV (*.csv);;JSON (*.json)",
        )
        if not path:
            return
        if Path(path).suffix.lower() not in (".csv", ".json"):
            path += ".json" if "json" in chosen.lower() else ".csv"
        try:
            count = self.export(path)
        except NovelGenError as exc:
            self.bridge.failed.emit("export the log", str(exc))
            return
        self.bridge.info.emit(f"{count} event(s) exported to {path}")

    # --- grouped errors -------------------------------------------------------------------

    def followed_job(self) -> str | None:
        """The selected job, else the running one."""
        if self.bridge.selected_job:
            return self.bridge.selected_job
        active = self.session.service.active_job
        return active.id if active is not None else None

    def refresh_errors(self, force: bool = False) -> None:
        """Read the job's error groups again if its failures changed (or it is time to)."""
        job_id = self.followed_job()
        if job_id is None:
            if self.errors_job is not None or force:
                self.errors_job, self.errors_count, self.error_groups = None, -1, []
                self.errors_tree.clear()
                self.errors_label.setText("Grouped errors: no job selected")
            return
        if self._errors_busy:
            return
        service = self.session.service
        changed_job = job_id != self.errors_job
        stale = time.monotonic() - self._errors_at >= ERRORS_REFRESH_SECONDS
        runner_job = service.active_job.id if service.active_job is not None else None
        if not (force or changed_job or stale or job_id == runner_job):
            return
        self._errors_busy = True

        async def read() -> tuple[str, int, list[ErrorGroupView]] | None:
            try:
                if job_id == runner_job and not (force or changed_job or stale):
                    # The running job's view comes from memory: cheap on every tick.
                    live = await service.view(job_id, workers=False)
                    if live.failures_seen == self.errors_count:
                        return None
                count, groups = await service.error_report(job_id)
                return job_id, count, groups
            except NovelGenError as exc:  # deleted meanwhile: say so, do not fail every tick
                if self._alive[0]:
                    self.errors_label.setText(f"Grouped errors: {exc}")
                self.errors_job, self.errors_count = job_id, -1
                self._errors_at = time.monotonic()
                return None
            finally:
                self._errors_busy = False

        self.bridge.spawn("read the grouped errors", read(), self._show_errors)

    def _show_errors(self, report: tuple[str, int, list[ErrorGroupView]] | None) -> None:
        if report is None or not self._alive[0]:
            return
        job_id, count, groups = report
        self.errors_job, self.errors_count, self.error_groups = job_id, count, groups
        self._errors_at = time.monotonic()
        self.errors_tree.clear()
        items = []
        for group in groups:
            tasks = ", ".join(f"#{t}" for t in group.task_ids[:10])
            if len(group.task_ids) > 10:
                tasks += f" … (+{len(group.task_ids) - 10})"
            last = (
                time.strftime("%H:%M:%S", time.localtime(group.last_at))
                if group.last_at is not None
                else ""
            )
            item = QtWidgets.QTreeWidgetItem(
                [str(group.count), group.kind, group.message, last, tasks]
            )
            item.setTextAlignment(0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(2, group.message)
            items.append(item)
        self.errors_tree.addTopLevelItems(items)
        self.errors_label.setText(
            f"Grouped errors of job {job_id}: {count} failed attempt(s) in {len(groups)} group(s)"
            if count
            else f"Grouped errors of job {job_id}: no failed attempt"
        )


__all__ = [
    "COLUMNS",
    "DEFAULT_CAPACITY",
    "LogEntry",
    "LogFilter",
    "LogModel",
    "LogView",
]
