"""The gallery over a real simulated run: finished images listed, thumbnails read lazily on
pool threads and cached, missing and broken files shown as such, the detail dialog, and
"regenerate this panel" sending the task back to the queue."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.engine.replaced import REPLACED_DIR
from novelgen_desktop.gui import gallery as gallery_module
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.gallery import (
    PREVIEW_ROLE,
    THUMB_STATE_ROLE,
    GalleryModel,
    GalleryView,
    ImageDetailDialog,
    ThumbnailLoader,
)
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui
from novelgen_desktop.sim.worker import SimBehaviour

# Showing any top-level widget with a layout under QT_QPA_PLATFORM=offscreen logs this
# (the offscreen plugin has no window manager to pass size hints to); it is not our warning.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait on the asyncio loop (engine, hub and sims are asyncio tasks; Qt events alone,
    outside ``run``, do not drive them)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def finished_job(session: DesktopSession, tmp_path: Path, count: int) -> str:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a lighthouse, panel {i}\n" for i in range(count)), "utf-8")
    job_id = await session.create_job("gallery", session.preview_files([prompts]))
    session.start_simulated_workers(2, SimBehaviour(latency_median=0.02, image_size=64))
    deadline = time.monotonic() + 30
    while (await session.service.view(job_id)).state is not JobState.FINISHED:
        assert time.monotonic() < deadline, "the job did not finish"
        await asyncio.sleep(0.02)
    return job_id


def states(view: GalleryView) -> list[str]:
    model = view.model
    return [model.data(model.index(i), THUMB_STATE_ROLE) for i in range(model.rowCount())]


@pytest.fixture
def bridge(session: DesktopSession) -> Any:
    bridge = EngineBridge(session)
    bridge.start_ticking(50)
    yield bridge
    bridge.stop()
    bridge.deleteLater()  # here, on the GUI thread (see ``views``)
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    gc.collect()  # whatever cycles the test left are collected on this thread too


@pytest.fixture
def views(qtbot: Any, bridge: EngineBridge) -> Any:
    """Make gallery views; each is deleted here, on the GUI thread. Left to the garbage
    collector, a widget may be destroyed on whatever thread collects it (a pool thread),
    which Qt does not survive ("Timers cannot be stopped from another thread")."""
    made: list[GalleryView] = []

    def make(width: int = 900, height: int = 600) -> GalleryView:
        view = GalleryView(bridge)
        qtbot.addWidget(view)
        view.resize(width, height)
        view.show()
        made.append(view)
        return view

    yield make
    for view in made:
        view.close()
        view.deleteLater()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)


def test_lists_finished_images_with_thumbnails_read_off_the_ui_thread_and_cached(
    session: DesktopSession, bridge: EngineBridge, views: Any, run: Any, tmp_path: Path
) -> None:
    view = views()
    failures: list[tuple[str, str]] = []
    bridge.failed.connect(lambda what, message: failures.append((what, message)))

    async def scenario() -> None:
        job_id = await finished_job(session, tmp_path, 6)
        images = await session.finished_images(job_id)
        # The author deleted one image and another is damaged: both must say so.
        images[2].path.unlink()
        images[4].path.write_bytes(b"<html>not an image</html>")
        bridge.select_job(job_id)
        await until(lambda: view.model.rowCount() == 6)
        assert [view.model.data(view.model.index(i), PREVIEW_ROLE) for i in range(6)] == images
        assert "6 finished images" in view.header.text()
        await until(lambda: "loading" not in states(view))

        assert states(view) == ["ready", "ready", "missing", "ready", "missing", "ready"]
        loader = view.loader
        main = threading.main_thread().name
        assert loader.load_threads and main not in loader.load_threads
        assert all(name.startswith("thumbs") for name in loader.load_threads)
        tooltip = view.model.data(view.model.index(4), Qt.ItemDataRole.ToolTipRole)
        assert "not an image" in tooltip

        # Cached: asking again (a repaint, a scroll back) reads nothing more.
        started, decoded = loader.reads_started, loader.decoded
        pixmap = view.model.data(view.model.index(0), Qt.ItemDataRole.DecorationRole)
        assert isinstance(pixmap, QtGui.QPixmap) and not pixmap.isNull()
        assert max(pixmap.width(), pixmap.height()) <= loader.size
        view.list.viewport().repaint()
        await asyncio.sleep(0.05)
        assert (loader.reads_started, loader.decoded) == (started, decoded)
        assert len(loader) == 4 and loader.cached_bytes > 0

        # And on disk: a new loader (the next start of the app) reads the small copy.
        again = ThumbnailLoader(cache_dir=loader.cache_dir, parent=view)
        key = GalleryModel.key(images[0])
        assert again.thumbnail(key) is None
        await until(lambda: again.thumbnail(key) is not None)
        assert (again.disk_cache_hits, again.decoded) == (1, 0)
        again.close()

        # A file deleted after its thumbnail was cached shows as missing on the next refresh.
        images[0].path.unlink()
        view.refresh()
        await until(lambda: states(view)[0] == "missing")

    run(scenario())
    assert failures == []


def test_only_visible_images_are_read(
    session: DesktopSession, bridge: EngineBridge, views: Any, run: Any, tmp_path: Path
) -> None:
    view = views(width=230, height=260)  # room for about one tile

    async def scenario() -> None:
        job_id = await finished_job(session, tmp_path, 16)
        bridge.select_job(job_id)
        await until(lambda: view.model.rowCount() == 16)
        await until(lambda: states(view)[0] == "ready")
        await asyncio.sleep(0.1)  # any other reads would have started by now
        assert view.loader.reads_started < 16
        waiting = [i for i, state in enumerate(states(view)) if state == "loading"]
        assert len(waiting) >= 8  # most images were never asked for
        view.list.scrollTo(view.model.index(waiting[len(waiting) // 2]))
        await asyncio.sleep(0.05)
        area = view.list.viewport().rect()
        shown = [i for i in range(16) if view.list.visualRect(view.model.index(i)).intersects(area)]
        assert shown and set(shown) & set(waiting)
        await until(lambda: all(states(view)[i] == "ready" for i in shown))
        assert states(view)[waiting[0]] == "loading"  # scrolled past: still not read
        assert states(view)[waiting[-1]] == "loading"  # not reached yet

    run(scenario())


def test_detail_dialog_shows_the_image_and_its_metadata(
    qtbot: Any, views: Any, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = views()
    bridge, session = view.bridge, view.session
    opened: list[Path] = []
    monkeypatch.setattr(gallery_module, "open_in_file_manager", lambda p: bool(opened.append(p)))

    async def scenario() -> ImageDetailDialog:
        job_id = await finished_job(session, tmp_path, 3)
        bridge.select_job(job_id)
        await until(lambda: view.model.rowCount() == 3)
        # Enter on the current image opens it, as a double-click does.
        dialogs: list[ImageDetailDialog] = []
        view.detail_opened.connect(dialogs.append)
        view.list.setFocus()
        view.list.setCurrentIndex(view.model.index(1))
        qtbot.keyClick(view.list, Qt.Key.Key_Return)
        assert len(dialogs) == 1
        dialog = dialogs[0]
        await until(lambda: dialog.result_of_load is not None)
        return dialog

    dialog = run(scenario())
    preview = view.model.rows[1]
    assert dialog.preview == preview
    assert dialog.prompt_view.toPlainText() == preview.prompt == "a lighthouse, panel 1"
    assert f"script #{preview.seq}" in dialog.place_label.text()
    assert f"task {preview.task_id}" in dialog.place_label.text()
    assert dialog.path_label.text() == str(preview.path)
    assert dialog.size_label.text().startswith("64 × 64 px, ")
    assert dialog.finished_label.text() != "—"
    shown = dialog.image_label.pixmap()
    assert shown is not None and not shown.isNull()

    dialog.copy_prompt()
    assert QtGui.QGuiApplication.clipboard().text() == preview.prompt
    dialog.open_folder_button.click()
    assert opened == [preview.path.parent]


def test_a_missing_file_opens_as_a_clear_message(
    session: DesktopSession, bridge: EngineBridge, views: Any, run: Any, tmp_path: Path
) -> None:
    view = views()

    async def scenario() -> ImageDetailDialog:
        job_id = await finished_job(session, tmp_path, 2)
        bridge.select_job(job_id)
        await until(lambda: view.model.rowCount() == 2)
        view.model.rows[0].path.unlink()
        dialog = view.open_detail(view.model.index(0))
        assert dialog is not None
        await until(lambda: dialog.result_of_load is not None)
        return dialog

    dialog = run(scenario())
    assert "missing file" in dialog.image_label.text()
    assert dialog.size_label.text() == "missing file"


def test_regenerate_through_the_dialog_requeues_the_task(
    session: DesktopSession, bridge: EngineBridge, views: Any, run: Any, tmp_path: Path
) -> None:
    view = views()
    failures: list[tuple[str, str]] = []
    bridge.failed.connect(lambda what, message: failures.append((what, message)))
    infos: list[str] = []
    bridge.info.connect(infos.append)

    async def scenario() -> None:
        job_id = await finished_job(session, tmp_path, 3)
        bridge.select_job(job_id)
        await until(lambda: view.model.rowCount() == 3)
        for row in session.worker_rows():  # nothing is drawn until the checks are done
            session.pause_worker(row.worker_id)
        old = view.model.rows[1]
        dialog = view.open_detail(view.model.index(1))
        assert dialog is not None
        regenerated: list[int] = []
        dialog.regenerated.connect(regenerated.append)

        dialog.confirm_regenerate = lambda: False  # type: ignore[method-assign]
        dialog.regenerate_button.click()
        await bridge.settle()
        assert regenerated == [] and dialog.regenerate_button.isEnabled()

        dialog.confirm_regenerate = lambda: True  # type: ignore[method-assign]
        dialog.regenerate_button.click()
        assert not dialog.regenerate_button.isEnabled()
        await bridge.settle()
        assert regenerated == [old.task_id]
        assert "queued to be drawn again" in infos[-1]
        rows = {r.task_id: r for r in await session.service.task_rows(job_id)}
        assert rows[old.task_id].state is TaskState.QUEUED
        assert not old.path.exists()
        kept = list(
            (old.path.parents[len(Path(rows[old.task_id].planned_path).parts) - 1])
            .joinpath(REPLACED_DIR)
            .rglob("*.png")
        )
        assert len(kept) == 1
        # The gallery drops the requeued image, then shows the new one when it lands.
        await until(lambda: old.task_id not in [r.task_id for r in view.model.rows])
        for row in session.worker_rows():
            session.resume_worker(row.worker_id)
        await until(lambda: view.model.rowCount() == 3)
        new = next(r for r in view.model.rows if r.task_id == old.task_id)
        assert new.path == old.path and new.finished_at != old.finished_at
        assert (await session.service.view(job_id)).state in (JobState.RUNNING, JobState.FINISHED)

        with sqlite3.connect(session.paths.database) as conn:
            outcomes = sorted(
                r[0]
                for r in conn.execute(
                    "SELECT outcome FROM attempts WHERE task_id = ?", (old.task_id,)
                )
            )
        assert outcomes == ["done", "replaced"]

    run(scenario())
    assert failures == []
    assert QtCore.QCoreApplication.instance() is not None
