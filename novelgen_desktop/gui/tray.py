"""The system tray: progress at a glance, pause/resume/quit, and a few notifications.

A job runs for hours, so the window may be closed while it works; the tray icon then keeps
the app reachable. Where there is no tray (a bare X server, some Wayland desktops, tests)
nothing is created and closing the window quits as usual: the app must never hide itself
with no way back.

Notifications are for what needs the author — a job ended, a tab must be logged in again,
every account is cooling down, memory pressure paused dispatch, the tabs kept failing and the
job went down to one tab — and each is said once per episode: a second tick of the same
condition is not news, only its end and a new start are. (A fall to one tab is an episode of
its own each time: the engine reports it once, when it happens.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from novelgen_desktop.desktop.session import WorkerState
from novelgen_desktop.engine.model import JobState
from novelgen_desktop.engine.service import JobView
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.store.records import EventLogged

APP_TITLE = "NovelGen"
ICON_SIZES = (16, 32, 48, 128, 256)
_JOB_ENDINGS = {"job_finished": "finished", "job_incomplete": "ended incomplete"}


def format_eta(seconds: float | None) -> str:
    """ "ETA 1 h 20 min": minutes are enough for a run of hours; seconds only near the end."""
    if seconds is None:
        return "ETA unknown"
    total = max(0, round(seconds))
    if total < 60:
        return f"ETA {total} s"
    minutes = total // 60
    if minutes < 60:
        return f"ETA {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours} h {minutes} min" if minutes else f"ETA {hours} h"


def progress_text(view: JobView | None) -> str:
    """The tray tooltip: "NovelGen — job X: 120/3000 (4 %), ETA 1 h 20 min"."""
    if view is None:
        return f"{APP_TITLE} — no job running"
    paused = " (paused)" if view.state is JobState.PAUSED else ""
    text = f"{APP_TITLE} — job {view.name}{paused}: {view.done}/{view.total} ({view.percent:.0f} %)"
    if view.state is JobState.RUNNING:
        text += f", {format_eta(view.eta_seconds)}"
    return text


def tray_icon() -> QtGui.QIcon:
    """The app icon (resources/icons, beside the package or inside it), else a drawn one:
    a missing file must not leave an empty square in the tray."""
    icon = QtGui.QIcon()
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "resources" / "icons", package.parent / "resources" / "icons"):
        for size in ICON_SIZES:
            path = folder / f"novelgen-{size}.png"
            if path.is_file():
                icon.addFile(str(path), QtCore.QSize(size, size))
        if not icon.isNull():
            return icon
    pixmap = QtGui.QPixmap(64, 64)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QtGui.QColor("#3b5bdb"))
    painter.drawRoundedRect(0, 0, 64, 64, 11, 11)
    painter.setPen(QtGui.QColor("white"))
    font = painter.font()
    font.setBold(True)
    font.setPixelSize(38)
    painter.setFont(font)
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "N")
    painter.end()
    return QtGui.QIcon(pixmap)


class TrayController(QtCore.QObject):
    """The tray icon, its menu and the notifications (or nothing, without a tray)."""

    quit_requested = QtCore.Signal()  # the main window drains the engine, then quits
    notified = QtCore.Signal(str, str)  # (title, message) of every notification decided

    def __init__(
        self,
        bridge: EngineBridge,
        window: QtWidgets.QWidget,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self.window = window
        self.available = QtWidgets.QSystemTrayIcon.isSystemTrayAvailable()
        self.icon: QtWidgets.QSystemTrayIcon | None = None
        self.menu: QtWidgets.QMenu | None = None
        self.tooltip = progress_text(None)
        self.last_view: JobView | None = None
        # The conditions notified in their current episode (cleared when they end).
        self._said: set[tuple[str, str]] = set()
        self._refreshing = False
        if self.available:
            self._create_icon()
        bridge.tick.connect(self.refresh)
        bridge.event_logged.connect(self._on_event)

    def _create_icon(self) -> None:
        self.menu = QtWidgets.QMenu()
        self.show_action = self.menu.addAction("Show window")
        self.menu.addSeparator()
        self.pause_action = self.menu.addAction("Pause all")
        self.resume_action = self.menu.addAction("Resume all")
        self.menu.addSeparator()
        self.quit_action = self.menu.addAction("Quit")
        self.show_action.triggered.connect(self.show_window)
        self.pause_action.triggered.connect(self.pause_all)
        self.resume_action.triggered.connect(self.resume_all)
        self.quit_action.triggered.connect(self.quit_requested.emit)
        self.icon = QtWidgets.QSystemTrayIcon(tray_icon(), self)
        self.icon.setContextMenu(self.menu)
        self.icon.setToolTip(self.tooltip)
        self.icon.activated.connect(self._activated)
        self.icon.show()

    # --- the window ---------------------------------------------------------------------------

    def window_should_hide_on_close(self) -> bool:
        """Closing the window hides it only when the tray can bring it back."""
        return (
            self.icon is not None
            and self.icon.isVisible()
            and self.session.settings.minimize_to_tray
        )

    def show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _activated(self, reason: QtWidgets.QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QtWidgets.QSystemTrayIcon.ActivationReason.Trigger,
            QtWidgets.QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.show_window()

    # --- pause and resume everything ------------------------------------------------------

    def pause_all(self) -> asyncio.Task[int]:
        """Pause every running job (its attempts in flight still land); returns the task."""
        return self.bridge.spawn("pause all jobs", self._each((JobState.RUNNING,), "pause"))

    def resume_all(self) -> asyncio.Task[int]:
        return self.bridge.spawn("resume all jobs", self._each((JobState.PAUSED,), "resume"))

    async def _each(self, states: tuple[JobState, ...], verb: str) -> int:
        service = self.session.service
        views = await service.list_jobs(states, limit=100_000)
        for view in views:
            if verb == "pause":
                await service.pause(view.job_id)
            else:
                await service.resume(view.job_id)
        done = "paused" if verb == "pause" else "resumed"
        self.bridge.info.emit(f"{done} {len(views)} job(s)" if views else f"no job to {verb}")
        return len(views)

    # --- progress and conditions (every tick) ---------------------------------------------

    def refresh(self) -> None:
        """The running job's progress for the tooltip (from memory: the runner has it), and
        the conditions worth a notification."""
        if self._refreshing:
            return
        self._refreshing = True
        task = self.bridge.spawn("show progress in the tray", self._refresh())
        task.add_done_callback(self._refreshed)

    def _refreshed(self, _task: Any) -> None:
        self._refreshing = False

    async def _refresh(self) -> None:
        active = self.session.service.active_job
        view = None
        if active is not None:
            view = await self.session.service.view(active.id, workers=False)
        self.show_progress(view)
        self._check_workers()

    def show_progress(self, view: JobView | None) -> None:
        self.last_view = view
        self.tooltip = progress_text(view)
        if self.icon is not None and self.icon.toolTip() != self.tooltip:
            self.icon.setToolTip(self.tooltip)
        cooling = view.cooling_until if view is not None else None
        self._episode(
            ("cooling", ""),
            cooling is not None,
            "Every tab is cooling down",
            "ChatGPT's rate limit was reached on every account; work resumes by itself at "
            + _clock(cooling)
            + ".",
        )

    def _check_workers(self) -> None:
        rows = self.session.worker_rows()
        needing = {r.worker_id for r in rows if r.state == WorkerState.LOGIN}
        for worker_id in needing:
            self._episode(
                ("login", worker_id),
                True,
                "A tab needs you",
                f"Log in to ChatGPT in the browser tab of worker {worker_id}; its work waits "
                "until then.",
            )
        for kind, key in list(self._said):
            if kind == "login" and key not in needing:
                self._said.discard((kind, key))

    def _on_event(self, event: EventLogged) -> None:
        job = event.job_id or ""
        if event.kind == "job_started":
            for kind in _JOB_ENDINGS:
                self._said.discard((kind, job))
        elif event.kind in _JOB_ENDINGS:
            self._episode((event.kind, job), True, "Job " + _JOB_ENDINGS[event.kind], event.message)
        elif event.kind in ("memory_pressure", "memory_critical"):
            data = event.data or {}
            self.notify_memory_pause(float(data.get("system_percent", 0.0)))
        elif event.kind == "memory_normal":
            self.notify_memory_resumed()
        elif event.kind == "orchestration_failing":
            self._notify_if_wanted("Tabs kept failing: down to one tab", event.message)

    def notify_memory_pause(self, percent: float) -> None:
        """Memory use paused dispatch (called by whoever watches memory)."""
        self._episode(
            ("memory", ""),
            True,
            "Dispatch paused: memory is short",
            f"Memory use is at {percent:.0f} %. No new images are started until it drops; "
            "closing other programs helps.",
        )

    def notify_memory_resumed(self) -> None:
        """The memory episode ended: the next pause is news again."""
        self._said.discard(("memory", ""))

    # --- notifications ----------------------------------------------------------------------

    def _episode(self, key: tuple[str, str], active: bool, title: str, message: str) -> None:
        """Say ``message`` when ``key``'s condition starts; stay quiet while it lasts."""
        if not active:
            self._said.discard(key)
            return
        if key in self._said:
            return
        self._said.add(key)
        self._notify_if_wanted(title, message)

    def _notify_if_wanted(self, title: str, message: str) -> None:
        """Notify unless the author turned notifications off in Settings."""
        if self.session.settings.notifications:
            self.notify(title, message)

    def notify(self, title: str, message: str) -> None:
        """Show a notification now (the tray's balloon; ``notified`` always)."""
        if self.icon is not None and self.icon.isVisible():
            self.icon.showMessage(
                title, message, QtWidgets.QSystemTrayIcon.MessageIcon.Information, 8000
            )
        self.notified.emit(title, message)

    def stop(self) -> None:
        """Hide the icon (quitting): a tray icon left behind would point at nothing."""
        self.bridge.tick.disconnect(self.refresh)
        self.bridge.event_logged.disconnect(self._on_event)
        if self.icon is not None:
            self.icon.hide()


def _clock(moment: float | None) -> str:
    if moment is None:
        return "the reset"
    return QtCore.QDateTime.fromSecsSinceEpoch(int(moment)).toString("HH:mm")


__all__ = ["TrayController", "format_eta", "progress_text", "tray_icon"]
