"""The job list: every job with its state and progress, and start/pause/resume/cancel.

The list is read from the engine (``service.list_jobs``) on the bridge's tick and whenever a
job changes, one read at a time and never on the window's thread. Selecting a job tells the
bridge, and every other view follows it. Files dropped on the list become an import
(``files_dropped``; the main window opens the preview dialog with them).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from novelgen_desktop.engine.model import JobState
from novelgen_desktop.engine.service import JobView
from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.import_dialog import DroppedFiles, mime_has_local_files, scan_mime
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.gui.task_model import dot_icon

_NO_PARENT = QtCore.QModelIndex()
JOB_ROLE = int(Qt.ItemDataRole.UserRole) + 1
"""The row's :class:`JobView`."""


class JobColumn(enum.IntEnum):
    NAME = 0
    STATE = 1
    PROGRESS = 2
    ETA = 3
    SUBMITTED = 4


_HEADERS = {
    JobColumn.NAME: "Name",
    JobColumn.STATE: "State",
    JobColumn.PROGRESS: "Done / total",
    JobColumn.ETA: "ETA",
    JobColumn.SUBMITTED: "Submitted",
}
_STATE_COLOURS = {
    "running": "#1a73e8",
    "waiting": "#9aa0a6",
    "paused": "#e37400",
    "finished": "#188038",
    "incomplete": "#d93025",
    "cancelled": "#5f6368",
}


def job_state_text(job: JobView) -> str:
    """A running job that is not being drawn waits (for tabs, or behind another job): the
    engine runs one job at a time, and "running" for both would hide which one draws."""
    if job.state is JobState.RUNNING and not job.active:
        return "waiting"
    return job.state.value


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class JobListModel(QtCore.QAbstractTableModel):
    """The jobs, newest first, as the engine lists them."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[JobView] = []

    def rowCount(  # noqa: N802
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _NO_PARENT
    ) -> int:
        return 0 if parent.isValid() else len(self._jobs)

    def columnCount(  # noqa: N802
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _NO_PARENT
    ) -> int:
        return 0 if parent.isValid() else len(JobColumn)

    def jobs(self) -> list[JobView]:
        return list(self._jobs)

    def job_at(self, row: int) -> JobView:
        return self._jobs[row]

    def row_of(self, job_id: str) -> int | None:
        return next((i for i, job in enumerate(self._jobs) if job.job_id == job_id), None)

    def set_jobs(self, jobs: Sequence[JobView]) -> None:
        """Show ``jobs``: changed rows repaint; a new, gone or reordered job resets the list
        (it holds tens of jobs, and the view restores its selection)."""
        fresh = list(jobs)
        if [j.job_id for j in fresh] != [j.job_id for j in self._jobs]:
            self.beginResetModel()
            self._jobs = fresh
            self.endResetModel()
            return
        last_column = len(JobColumn) - 1
        for row, (old, new) in enumerate(zip(self._jobs, fresh, strict=True)):
            if old != new:
                self._jobs[row] = new
                self.dataChanged.emit(self.index(row, 0), self.index(row, last_column))

    def headerData(  # noqa: N802
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(JobColumn)
        ):
            return _HEADERS[JobColumn(section)]
        return None

    def data(
        self,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._jobs):
            return None
        job = self._jobs[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(job, column)
        if role == Qt.ItemDataRole.DecorationRole and column == JobColumn.STATE:
            return dot_icon(_STATE_COLOURS.get(job_state_text(job), "#9aa0a6"))
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(job, column)
        if role == JOB_ROLE:
            return job
        return None

    @staticmethod
    def _display(job: JobView, column: int) -> str:
        match column:
            case JobColumn.NAME:
                return job.name
            case JobColumn.STATE:
                return job_state_text(job)
            case JobColumn.PROGRESS:
                failed = f" · {job.failed_terminal:,} failed" if job.failed_terminal else ""
                return f"{job.done:,} / {job.total:,}{failed}"
            case JobColumn.ETA:
                return format_eta(job.eta_seconds) if job.active else ""
            case JobColumn.SUBMITTED:
                return time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
        return ""

    @staticmethod
    def _tooltip(job: JobView, column: int) -> str | None:
        if column == JobColumn.NAME:
            return f"{job.name}\n{job.job_id}"
        if column == JobColumn.PROGRESS:
            rate = f", {job.throughput_per_min:.1f} images/min" if job.active else ""
            return f"{job.percent:.1f} % done{rate}"
        if column == JobColumn.STATE and job_state_text(job) == "waiting":
            return "Queued: it runs when tabs are connected and the jobs before it are done"
        return None


class JobsView(QtWidgets.QWidget):
    """The job list with its actions; a drop target for prompt files."""

    files_dropped = QtCore.Signal(list)  # list[str]: the prompt files of a drop

    def __init__(self, bridge: EngineBridge, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._refreshing = False
        self._refresh_again = False
        self._reported_error: str | None = None
        self.model = JobListModel(self)
        self.table = QtWidgets.QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        header.resizeSection(JobColumn.NAME, 220)
        header.resizeSection(JobColumn.PROGRESS, 150)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

        self.toolbar = QtWidgets.QToolBar(self)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.start_action = self._action("Start", self.resume_selected, "Start a paused job")
        self.pause_action = self._action(
            "Pause", self.pause_selected, "Stop giving out its panels (those being drawn finish)"
        )
        self.resume_action = self._action("Resume", self.resume_selected, "Continue the job")
        self.cancel_action = self._action(
            "Cancel", self.cancel_selected, "Stop the job for good (its images are kept)"
        )
        for action in (self.start_action, self.pause_action, self.resume_action):
            self.toolbar.addAction(action)
            self.table.addAction(action)
        self.toolbar.addSeparator()
        self.toolbar.addAction(self.cancel_action)
        self.table.addAction(self.cancel_action)

        self.hint = QtWidgets.QLabel("Drop prompt files here to create a job", self)
        self.hint.setEnabled(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.hint)
        self.setAcceptDrops(True)

        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.model.modelReset.connect(self._restore_selection)
        self.model.dataChanged.connect(self._update_actions)
        bridge.jobs_changed.connect(self.refresh)
        bridge.tick.connect(self._on_tick)
        bridge.job_selected.connect(self._show_selected)
        self._update_actions()
        self.refresh()

    def _action(self, text: str, handler: Callable[[], None], tip: str) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        action.setToolTip(tip)
        action.triggered.connect(handler)
        return action

    # --- reading -----------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the jobs now, or right after the read in flight."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._start_refresh()

    def _on_tick(self) -> None:
        if not self._refreshing:
            self._start_refresh()

    def _start_refresh(self) -> None:
        self._refreshing = True
        self.bridge.spawn("list the jobs", self._read_jobs())

    async def _read_jobs(self) -> None:
        try:
            jobs = await self.bridge.session.service.list_jobs()
        except NovelGenError as exc:
            if str(exc) != self._reported_error:  # every tick would say it again
                self._reported_error = str(exc)
                self.bridge.failed.emit("list the jobs", str(exc))
            jobs = None
        finally:
            self._refreshing = False
        if jobs is not None:
            self._reported_error = None
            self.set_jobs(jobs)
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()

    def set_jobs(self, jobs: Sequence[JobView]) -> None:
        self.model.set_jobs(jobs)
        if self.bridge.selected_job is None and jobs:
            self.bridge.select_job(jobs[0].job_id)  # the newest job, so the tasks show
        self._update_actions()

    # --- selection ---------------------------------------------------------------------

    def selected_job(self) -> JobView | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.job_at(rows[0].row()) if rows else None

    def select(self, job_id: str) -> None:
        """Select ``job_id`` in the list (the bridge hears of it)."""
        self.bridge.select_job(job_id)
        self._show_selected(job_id)

    def _on_selection(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.bridge.select_job(job.job_id)
        self._update_actions()

    def _show_selected(self, job_id: str) -> None:
        row = self.model.row_of(job_id) if job_id else None
        selection = self.table.selectionModel()
        if row is None:
            if job_id:
                return  # not listed yet: selected once the next read lists it
            selection.clearSelection()
            return
        current = self.selected_job()
        if current is not None and current.job_id == job_id:
            return
        index = self.model.index(row, 0)
        flag = QtCore.QItemSelectionModel.SelectionFlag
        selection.setCurrentIndex(index, flag.ClearAndSelect | flag.Rows)
        self.table.scrollTo(index)

    def _restore_selection(self) -> None:
        if self.bridge.selected_job:
            self._show_selected(self.bridge.selected_job)
        self._update_actions()

    def _update_actions(self) -> None:
        job = self.selected_job()
        state = job.state if job is not None else None
        self.start_action.setEnabled(state is JobState.PAUSED)
        self.resume_action.setEnabled(state is JobState.PAUSED)
        self.pause_action.setEnabled(state is JobState.RUNNING)
        self.cancel_action.setEnabled(state in (JobState.RUNNING, JobState.PAUSED))

    # --- actions -----------------------------------------------------------------------

    def _run(self, what: str, action: Coroutine[Any, Any, JobState], done: str) -> None:
        def finished(_state: JobState) -> None:
            self.bridge.info.emit(done)
            self.refresh()

        self.bridge.spawn(what, action, finished)

    def pause_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(
                f"pause job {job.name}",
                self.bridge.session.service.pause(job.job_id),
                f"job {job.name} paused",
            )

    def resume_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(
                f"resume job {job.name}",
                self.bridge.session.service.resume(job.job_id),
                f"job {job.name} resumed",
            )

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job is None or not self.confirm_cancel(job):
            return
        self._run(
            f"cancel job {job.name}",
            self.bridge.session.service.cancel(job.job_id),
            f"job {job.name} cancelled",
        )

    def confirm_cancel(self, job: JobView) -> bool:
        """Ask before cancelling: it cannot be undone. Tests override this to answer."""
        left = job.total - job.done - job.failed_terminal
        answer = QtWidgets.QMessageBox.question(
            self,
            "Cancel job",
            f"Cancel {job.name!r}? Its {left:,} unfinished panel(s) will not be drawn; "
            "the images already made stay in the output folder. This cannot be undone.",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No,
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    # --- drops -------------------------------------------------------------------------

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if mime_has_local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QtGui.QDragMoveEvent) -> None:  # noqa: N802
        if mime_has_local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        if not mime_has_local_files(event.mimeData()):
            event.ignore()
            return
        event.acceptProposedAction()
        self.handle_drop(event.mimeData())

    def handle_drop(self, mime: QtCore.QMimeData) -> DroppedFiles:
        """Emit the drop's prompt files; say what was left out (a PNG, a web link)."""
        dropped = scan_mime(mime)
        if dropped.rejected:
            self.bridge.failed.emit("import the dropped files", "\n".join(dropped.rejected))
        if dropped.paths:
            self.files_dropped.emit(dropped.paths)
        return dropped


__all__ = [
    "JOB_ROLE",
    "JobColumn",
    "JobListModel",
    "JobsView",
    "format_eta",
    "job_state_text",
]
