"""The main window: the job list beside tabs for tasks, workers, charts, log and gallery.

It composes the views and owns what belongs to the window as a whole: menus, drag and drop
of prompt files anywhere on it, the status line, error reporting, closing to the tray while
a job runs, and quitting cleanly (dispatch stops, images in flight land, a snapshot is
written, tabs are told goodbye) before the event loop ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from novelgen_desktop.desktop.metrics import MetricsRecorder
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.charts import ChartsView
from novelgen_desktop.gui.flags_view import open_flags_window
from novelgen_desktop.gui.gallery import GalleryView
from novelgen_desktop.gui.help_viewer import HelpViewer, open_help_document
from novelgen_desktop.gui.icons import app_icon
from novelgen_desktop.gui.import_dialog import (
    ImportPreviewDialog,
    mime_has_local_files,
    open_import,
    scan_mime,
)
from novelgen_desktop.gui.jobs_view import JobsView
from novelgen_desktop.gui.log_view import LogView
from novelgen_desktop.gui.menus import add_menu_action
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.gui.settings_dialog import SettingsDialog
from novelgen_desktop.gui.style_editor import StyleEditor, open_editors, open_style_editor
from novelgen_desktop.gui.tasks_view import TasksView
from novelgen_desktop.gui.tray import TrayController
from novelgen_desktop.gui.workers_view import WorkersView

log = logging.getLogger(__name__)

PROJECT_DOCS = "https://github.com/novelgen/novelgen-desktop/tree/main/docs"


class MainWindow(QtWidgets.QMainWindow):
    """The author's control panel."""

    quit_finished = QtCore.Signal()  # the session is stopped: the event loop may end

    TABS = ("Tasks", "Workers", "Charts", "Log", "Gallery")

    def __init__(
        self,
        bridge: EngineBridge,
        *,
        recorder: MetricsRecorder | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self._quitting = False
        self.setWindowTitle("NovelGen Desktop")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1280, 800)

        self.jobs_view = JobsView(bridge)
        self.tasks_view = TasksView(bridge)
        self.workers_view = WorkersView(bridge)
        self.charts_view = ChartsView(bridge, recorder)
        self.log_view = LogView(bridge)
        self.gallery_view = GalleryView(bridge)
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setDocumentMode(True)
        for name, view in zip(
            self.TABS,
            (
                self.tasks_view,
                self.workers_view,
                self.charts_view,
                self.log_view,
                self.gallery_view,
            ),
            strict=True,
        ):
            self.tabs.addTab(view, name)
        splitter = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.jobs_view)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([220, 580])
        self.setCentralWidget(splitter)

        self.jobs_view.files_dropped.connect(self.import_files)
        bridge.failed.connect(self.report_failure)
        bridge.info.connect(lambda text: self.statusBar().showMessage(text, 8000))
        bridge.tick.connect(self._update_status)
        self._status = QtWidgets.QLabel()
        self.statusBar().addPermanentWidget(self._status)
        self.tray = TrayController(bridge, self)
        self.tray.quit_requested.connect(self.request_quit)
        self._build_menus()
        self._update_status()

    # --- menus ----------------------------------------------------------------------------

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        add_menu_action(file_menu, "&Import prompt files…", self.choose_files, "Ctrl+O")
        add_menu_action(file_menu, "&Settings…", self.open_settings, "Ctrl+,")
        file_menu.addSeparator()
        add_menu_action(file_menu, "&Quit", self.request_quit, "Ctrl+Q")
        jobs_menu = bar.addMenu("&Jobs")
        add_menu_action(jobs_menu, "&Pause all", self.tray.pause_all)
        add_menu_action(jobs_menu, "&Resume all", self.tray.resume_all)
        jobs_menu.addSeparator()
        add_menu_action(jobs_menu, "&Free memory now", self.free_memory)
        add_menu_action(jobs_menu, "Feature &flags…", lambda: open_flags_window(self, self.bridge))
        style_menu = bar.addMenu("&Style")
        add_menu_action(style_menu, "&New style bible…", self.new_style_bible, "Ctrl+Shift+N")
        add_menu_action(style_menu, "&Open style bible…", self.choose_style_bible, "Ctrl+Shift+O")
        view_menu = bar.addMenu("&View")
        for index, name in enumerate(self.TABS):
            add_menu_action(view_menu, name, self._show_tab(index), f"Ctrl+{index + 1}")
        help_menu = bar.addMenu("&Help")
        add_menu_action(help_menu, "&Documentation", self.open_docs, "F1")
        add_menu_action(help_menu, "&Migration guide…", self.open_migration_guide)
        add_menu_action(help_menu, "&About NovelGen Desktop", self.show_about)

    def _show_tab(self, index: int) -> Callable[[], None]:
        def show() -> None:
            self.tabs.setCurrentIndex(index)

        return show

    # --- drag and drop --------------------------------------------------------------------

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if mime_has_local_files(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QtGui.QDragMoveEvent) -> None:  # noqa: N802 - Qt API
        if mime_has_local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802 - Qt API
        if not mime_has_local_files(event.mimeData()):
            event.ignore()
            return
        event.acceptProposedAction()
        self.handle_drop(event.mimeData())

    def handle_drop(self, mime: QtCore.QMimeData) -> None:
        """Files dropped anywhere on the window: the prompt files go to the preview, and
        what was left out (an image, a web link) is listed in the preview, not lost."""
        dropped = scan_mime(mime)
        if dropped.paths:
            self.import_files(dropped.paths, dropped.rejected)
        elif dropped.rejected:
            self.bridge.failed.emit("import the dropped files", "\n".join(dropped.rejected))

    def import_files(self, paths: list[str], problems: list[str] | None = None) -> None:
        """Parse the files (off the UI thread) and show the preview; nothing is created
        before the author presses Create. The new job is then selected."""
        self.last_import = open_import(self.bridge, paths, self, dropped_problems=problems or ())
        self.last_import.add_done_callback(self._watch_import)

    def _watch_import(self, task: asyncio.Task[ImportPreviewDialog]) -> None:
        if task.cancelled() or task.exception() is not None:
            return  # the bridge has reported it
        task.result().job_created.connect(self._job_created)

    def _job_created(self, job_id: str) -> None:
        self.bridge.select_job(job_id)
        self.jobs_view.refresh()
        self.tabs.setCurrentWidget(self.tasks_view)

    def choose_files(self) -> None:
        files, _filter = QtWidgets.QFileDialog.getOpenFileNames(
            self,
            "Import prompt files",
            str(Path.home()),
            "Prompt files (*.script *.txt *.csv *.tsv *.json *.jsonl *.md *.markdown *.fountain);;"
            "All files (*)",
        )
        if files:
            self.import_files(files)

    # --- style bibles -------------------------------------------------------------------

    def open_style_editor(self, path: str | Path | None = None) -> StyleEditor:
        """The style bible editor for ``path`` (a new bible from the template without one);
        its preview offers the panels of any prompt file the author opens there."""
        return open_style_editor(self, path=path)

    def new_style_bible(self) -> StyleEditor:
        return self.open_style_editor()

    def choose_style_bible(self) -> StyleEditor | None:
        name, _filter = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open style bible", str(Path.home()), "Style bible (*.toml);;All files (*)"
        )
        return self.open_style_editor(name) if name else None

    def unsaved_editors(self) -> list[StyleEditor]:
        return [e for e in open_editors() if e.isVisible() and e.modified]

    # --- dialogs and reports --------------------------------------------------------------

    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.session, self)
        dialog.accepted.connect(lambda: self._settings_saved(dialog))
        dialog.open()
        return dialog

    def _settings_saved(self, dialog: SettingsDialog) -> None:
        settings = dialog.settings()
        self.session.settings = settings
        self.session.apply_memory_settings(settings)
        self.charts_view.set_thresholds(
            settings.memory_pause_percent, settings.memory_resume_percent
        )
        self.bridge.info.emit("settings saved")

    def report_failure(self, what: str, message: str) -> None:
        """An action failed: say what and why, in the status bar and a dialog that does not
        block the engine (the window stays live behind it)."""
        self.statusBar().showMessage(f"{what} failed: {message}", 15000)
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Warning,
            "NovelGen Desktop",
            f"Could not {what}.",
            QtWidgets.QMessageBox.StandardButton.Ok,
            self,
        )
        box.setInformativeText(message)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.last_failure_box = box

    def open_docs(self) -> None:
        local = Path(__file__).resolve().parents[2] / "docs"
        target = local.as_uri() if local.is_dir() else PROJECT_DOCS
        QtGui.QDesktopServices.openUrl(QtCore.QUrl(target))

    help_window: HelpViewer | QtWidgets.QMessageBox | None = None  # the last guide shown

    def open_migration_guide(self) -> HelpViewer | QtWidgets.QMessageBox:
        """docs/migration.md in the app's own viewer (there may be no browser)."""
        viewer = self.help_window if isinstance(self.help_window, HelpViewer) else None
        self.help_window = open_help_document(
            self, "migration.md", "The migration guide", reuse=viewer
        )
        return self.help_window

    def show_about(self) -> None:
        from novelgen_desktop import __version__  # noqa: PLC0415

        QtWidgets.QMessageBox.about(
            self,
            "About NovelGen Desktop",
            f"<b>NovelGen Desktop</b> {__version__}<br>"
            "Turns a graphic-novel script into thousands of images, unattended.<br>"
            f"Hub: {self.session.hub_url}",
        )

    def _update_status(self) -> None:
        rows = self.session.worker_rows()
        connected = sum(1 for r in rows if r.connected)
        busy = sum(1 for r in rows if r.state == "busy")
        text = f"hub {self.session.hub_url} · {connected} worker(s) connected, {busy} busy"
        status = self.session.service.memory_status
        if status is not None and status.state.value != "normal":
            text += f" · memory {status.state.value} ({status.system_percent:.0f} %)"
        self._status.setText(text)

    def free_memory(self) -> None:
        """Run every cleanup strategy now; say what it freed (each step is in the log)."""

        async def free() -> None:
            results = await self.session.free_memory()
            freed = sum(r.freed_bytes for r in results if r.measure not in ("disk", "images"))
            steps = sum(1 for r in results if r.ok)
            self.bridge.info.emit(
                f"memory freed: {freed / 2**20:.0f} MiB in {steps} step(s); see the log"
            )

        self.bridge.spawn("free memory", free())

    # --- closing and quitting -------------------------------------------------------------

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self._quitting:
            event.accept()
            return
        if self._job_running() and self.tray.window_should_hide_on_close():
            # A job runs for hours: closing the window must not stop it. The tray icon
            # shows progress and brings the window back.
            event.ignore()
            self.hide()
            self.tray.notify("NovelGen keeps running", "The job goes on; the tray icon has it.")
            return
        event.ignore()
        self.request_quit()

    @property
    def quitting(self) -> bool:
        return self._quitting

    def _job_running(self) -> bool:
        return self.session.service.runner is not None

    def request_quit(self) -> None:
        """Quit for real: drain the engine, then end the event loop (``quit_finished``).
        A style bible with unsaved changes is asked about first (Save / Discard / Cancel,
        one editor at a time); Cancel keeps the app running."""
        if self._quitting:
            return
        unsaved = self.unsaved_editors()
        if unsaved:
            unsaved[0].raise_()
            unsaved[0].activateWindow()
            unsaved[0].close_when_saved(then=self.request_quit)
            return
        self._quitting = True
        self.statusBar().showMessage("stopping: images in flight may still land…")
        self.setEnabled(False)
        # Views stop asking first: the store and the hub are about to close under them.
        self.bridge.stop()
        self.charts_view.stop()
        self.tray.stop()

        async def stop_everything() -> None:
            try:
                await self.session.stop()
            except Exception:  # quitting must end the app even when a part fails to stop
                log.exception("the session did not stop cleanly")

        def stopped(_result: None) -> None:
            self.close()
            self.quit_finished.emit()

        self.bridge.spawn("quit", stop_everything(), stopped)


def settings_problems_text(problems: list[str]) -> str:
    return "The settings file had problems; the defaults stand in for:\n\n" + "\n".join(problems)


__all__ = ["MainWindow", "settings_problems_text"]
