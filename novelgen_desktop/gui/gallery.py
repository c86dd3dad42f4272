"""The gallery: the selected job's finished images as thumbnails, and one image in detail.

A job has thousands of images of a megabyte or more, so nothing is decoded up front:

* the list asks for a thumbnail only when it paints an item (uniform item sizes: the layout
  never asks every item), so only visible images are read;
* reading happens on a small thread pool with ``QImageReader.setScaledSize`` (the decoder
  scales while reading, far cheaper than decoding full size and shrinking). Only ``QImage``
  is touched there — ``QPixmap`` belongs to the GUI thread — and finished reads are
  collected by a GUI-thread timer, so no Qt object is ever called from a pool thread (and a
  closed view cannot be reached by a late read);
* thumbnails stay in an LRU bounded by count and bytes, and are kept on disk under the data
  folder, so reopening a 3,000-image job does not decode 3,000 images again;
* a file that is gone or unreadable gets a "missing file" tile: the author may have moved
  or deleted it, and the gallery must say so, never fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import hashlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novelgen_desktop.desktop.session import ImagePreview
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.store.records import EventLogged

THUMB_SIZE = 160
"""Thumbnail edge in pixels: about six across a laptop-wide window."""
CACHE_ITEMS = 2000
CACHE_BYTES = 128 * 1024 * 1024
DISK_CACHE_FILES = 20_000
MAX_RELOAD_SPACING = 5.0  # seconds: the slowest the list follows a huge running job
"""Thumbnails kept on disk (about 6 KB each as JPEG): the oldest beyond this are pruned."""
POLL_MS = 25
"""How often the GUI thread collects finished reads while any are pending."""

PREVIEW_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's ImagePreview
THUMB_STATE_ROLE = Qt.ItemDataRole.UserRole + 2  # a ThumbState value, without loading


class ThumbState(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    MISSING = "missing"  # gone or not readable as an image


@dataclass(frozen=True, slots=True)
class ThumbKey:
    """One image as the gallery knows it: a regenerated image has a new finish time, so it
    gets a new key (and a new thumbnail) even though its path is the same."""

    path: str
    stamp: float | None


@dataclass(frozen=True, slots=True)
class LoadResult:
    image: QtGui.QImage | None
    problem: str | None  # "missing file", "not an image: ..."
    thread: str  # the thread that did the work (pool threads only: checked by the tests)
    from_disk_cache: bool = False
    original: tuple[int, int] | None = None  # the full image's pixel size


# --- pool-thread work (QImage and QImageReader only: both are safe off the GUI thread) -------


def _cache_file(cache_dir: Path | None, path: str, size: int) -> Path | None:
    if cache_dir is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    digest = hashlib.sha1(
        f"{path}|{info.st_mtime_ns}|{info.st_size}|{size}".encode(), usedforsecurity=False
    ).hexdigest()
    return cache_dir / digest[:2] / f"{digest}.jpg"


def read_thumbnail(path: str, size: int, cache_dir: Path | None) -> LoadResult:
    """A thumbnail that fits ``size``×``size``: from the disk cache when it has one for this
    very file (path, mtime and size), else decoded at that scale and saved there."""
    thread = threading.current_thread().name
    if not os.path.isfile(path):
        return LoadResult(None, "missing file", thread)
    cached = _cache_file(cache_dir, path, size)
    if cached is not None and cached.is_file():
        image = QtGui.QImage(str(cached))
        if not image.isNull():
            with contextlib.suppress(OSError):
                os.utime(cached)  # recently used: pruned last
            return LoadResult(image, None, thread, from_disk_cache=True)
    reader = QtGui.QImageReader(path)
    reader.setAutoTransform(True)
    original = reader.size()
    if not original.isValid():
        return LoadResult(None, f"not an image ({reader.errorString()})", thread)
    if original.width() > size or original.height() > size:  # never enlarged
        reader.setScaledSize(
            original.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio).expandedTo(
                QtCore.QSize(1, 1)
            )
        )
    image = reader.read()
    if image.isNull():
        return LoadResult(None, f"not an image ({reader.errorString()})", thread)
    if cached is not None:
        _save_cached(image, cached)
    return LoadResult(image, None, thread, original=(original.width(), original.height()))


def _save_cached(image: QtGui.QImage, target: Path) -> None:
    """Best effort (a full or read-only disk only costs a decode next time); written under
    a temp name and renamed, so a half-written thumbnail is never read back."""
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
        # PySide6 takes the format as str; its stubs say bytes (which it refuses).
        if image.save(str(temp), "JPG", 85):  # type: ignore[call-overload]
            os.replace(temp, target)
        else:
            temp.unlink(missing_ok=True)


def read_full_image(path: str) -> LoadResult:
    thread = threading.current_thread().name
    if not os.path.isfile(path):
        return LoadResult(None, "missing file", thread)
    reader = QtGui.QImageReader(path)
    reader.setAutoTransform(True)
    image = reader.read()
    if image.isNull():
        return LoadResult(None, f"not an image ({reader.errorString()})", thread)
    return LoadResult(image, None, thread, original=(image.width(), image.height()))


def prune_disk_cache(cache_dir: Path, keep: int = DISK_CACHE_FILES) -> int:
    """Remove the least recently used thumbnails beyond ``keep``; returns how many."""
    try:
        files = [(p.stat().st_mtime, p) for p in cache_dir.glob("*/*.jpg")]
    except OSError:
        return 0
    if len(files) <= keep:
        return 0
    files.sort()
    removed = 0
    for _mtime, path in files[: len(files) - keep]:
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


# --- GUI thread -----------------------------------------------------------------------------


class ThumbnailLoader(QtCore.QObject):
    """Thumbnails on request: cached ones at once, others read on the pool and announced
    with ``ready`` (on the GUI thread) when they arrive."""

    ready = QtCore.Signal(object)  # the ThumbKey whose thumbnail (or failure) arrived

    def __init__(
        self,
        *,
        size: int = THUMB_SIZE,
        cache_dir: Path | None = None,
        max_items: int = CACHE_ITEMS,
        max_bytes: int = CACHE_BYTES,
        threads: int = 2,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.size = size
        self.cache_dir = cache_dir
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="thumbs")
        self._pixmaps: OrderedDict[ThumbKey, QtGui.QPixmap] = OrderedDict()
        self._bytes = 0
        self._failed: dict[ThumbKey, str] = {}
        self._pending: dict[ThumbKey, concurrent.futures.Future[LoadResult]] = {}
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._collect)
        self._closed = False
        # What happened, for tests and the curious: reads started, and who did them.
        self.reads_started = 0
        self.decoded = 0
        self.disk_cache_hits = 0
        self.load_threads: set[str] = set()
        if cache_dir is not None:
            self._pool.submit(prune_disk_cache, cache_dir)
        # The pool ends with this object, without a Qt call (the widget may be half
        # destroyed by then: Qt deletes children before the parent's Python side is gone).
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)

    def state(self, key: ThumbKey) -> ThumbState:
        """Where a thumbnail stands, without asking for it."""
        if key in self._pixmaps:
            return ThumbState.READY
        if key in self._failed:
            return ThumbState.MISSING
        return ThumbState.LOADING

    def problem(self, key: ThumbKey) -> str | None:
        return self._failed.get(key)

    def thumbnail(self, key: ThumbKey) -> QtGui.QPixmap | None:
        """The cached thumbnail, or None (a read is started unless one runs or it failed)."""
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key not in self._failed and key not in self._pending and not self._closed:
            self.reads_started += 1
            self._pending[key] = self._pool.submit(
                read_thumbnail, key.path, self.size, self.cache_dir
            )
            if not self._timer.isActive():
                self._timer.start()
        return None

    def load_full(self, path: str) -> concurrent.futures.Future[LoadResult]:
        """The full-size image, read on the pool (the caller collects the future)."""
        return self._pool.submit(read_full_image, path)

    def forget_failures(self) -> None:
        """Try unreadable files again (the author may have put them back)."""
        self._failed.clear()

    def mark_missing(self, keys: Iterable[ThumbKey]) -> None:
        """These files are gone: drop their cached thumbnails, show the missing tile."""
        for key in keys:
            pixmap = self._pixmaps.pop(key, None)
            if pixmap is not None:
                self._bytes -= _pixmap_bytes(pixmap)
            self._failed[key] = "missing file"
            self.ready.emit(key)

    def close(self) -> None:
        self._closed = True
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending.clear()

    def _collect(self) -> None:
        finished = [key for key, future in self._pending.items() if future.done()]
        for key in finished:
            future = self._pending.pop(key)
            try:
                result = future.result()
            except concurrent.futures.CancelledError:
                continue
            except Exception as exc:  # a decoder bug must not take the gallery down
                result = LoadResult(None, f"unreadable ({exc})", "?")
            self.load_threads.add(result.thread)
            if result.image is None:
                self._failed[key] = result.problem or "unreadable"
            else:
                if result.from_disk_cache:
                    self.disk_cache_hits += 1
                else:
                    self.decoded += 1
                self._store(key, QtGui.QPixmap.fromImage(result.image))
            self.ready.emit(key)
        if not self._pending:
            self._timer.stop()

    def _store(self, key: ThumbKey, pixmap: QtGui.QPixmap) -> None:
        self._pixmaps[key] = pixmap
        self._bytes += _pixmap_bytes(pixmap)
        while self._pixmaps and (
            len(self._pixmaps) > self.max_items or self._bytes > self.max_bytes
        ):
            _key, oldest = self._pixmaps.popitem(last=False)
            self._bytes -= _pixmap_bytes(oldest)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._pixmaps)


def _pixmap_bytes(pixmap: QtGui.QPixmap) -> int:
    return pixmap.width() * pixmap.height() * max(1, pixmap.depth() // 8)


def _tile(size: int, text: str, background: str, foreground: str) -> QtGui.QPixmap:
    pixmap = QtGui.QPixmap(size, size)
    pixmap.fill(QtGui.QColor(background))
    painter = QtGui.QPainter(pixmap)
    painter.setPen(QtGui.QColor(foreground))
    font = painter.font()
    font.setPixelSize(max(10, size // 10))
    painter.setFont(font)
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.drawText(
        pixmap.rect(), int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap), text
    )
    painter.end()
    return pixmap


def caption(preview: ImagePreview) -> str:
    """The tile's label: where the panel is in the script."""
    parts = []
    if preview.chapter:
        parts.append(f"Ch {preview.chapter}")
    if preview.page is not None:
        parts.append(f"p{preview.page}")
    if preview.panel is not None:
        parts.append(f"panel {preview.panel}")
    return " · ".join(parts) or f"#{preview.seq}"


class GalleryModel(QtCore.QAbstractListModel):
    """The finished images of one job, in script order."""

    def __init__(self, loader: ThumbnailLoader, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.rows: list[ImagePreview] = []
        self._index_of: dict[ThumbKey, int] = {}
        self._placeholder = _tile(loader.size, "loading…", "#e9ecef", "#868e96")
        self._missing = _tile(loader.size, "missing file", "#fff5f5", "#c92a2a")
        loader.ready.connect(self._thumbnail_ready)

    @staticmethod
    def key(preview: ImagePreview) -> ThumbKey:
        return ThumbKey(str(preview.path), preview.finished_at)

    def rowCount(  # noqa: N802 - Qt API
        self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex | None = None
    ) -> int:
        if parent is not None and parent.isValid():
            return 0
        return len(self.rows)

    def data(
        self,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        preview = self.rows[index.row()]
        key = self.key(preview)
        if role == Qt.ItemDataRole.DisplayRole:
            return caption(preview)
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self.loader.thumbnail(key)
            if pixmap is not None:
                return pixmap
            return (
                self._missing
                if self.loader.state(key) is ThumbState.MISSING
                else (self._placeholder)
            )
        if role == Qt.ItemDataRole.ToolTipRole:
            problem = self.loader.problem(key)
            note = f"\n⚠ {problem}: {preview.path}" if problem else f"\n{preview.path.name}"
            return f"#{preview.seq} {caption(preview)}\n{preview.prompt[:300]}{note}"
        if role == PREVIEW_ROLE:
            return preview
        if role == THUMB_STATE_ROLE:
            return self.loader.state(key).value
        return None

    def set_rows(self, rows: list[ImagePreview]) -> None:
        """Show ``rows`` (sorted by seq) with the fewest changes: images that finished are
        inserted and requeued ones removed in place, so the scroll position and the
        selection stay put while a job runs."""
        new_ids = {r.task_id: r for r in rows}
        for position in range(len(self.rows) - 1, -1, -1):
            if self.rows[position].task_id not in new_ids:
                self.beginRemoveRows(QtCore.QModelIndex(), position, position)
                del self.rows[position]
                self.endRemoveRows()
        old = {r.task_id for r in self.rows}
        position = 0
        for row in rows:
            if row.task_id not in old:
                while position < len(self.rows) and self.rows[position].seq < row.seq:
                    position += 1
                self.beginInsertRows(QtCore.QModelIndex(), position, position)
                self.rows.insert(position, row)
                self.endInsertRows()
            else:
                while self.rows[position].task_id != row.task_id:
                    position += 1
                if self.rows[position] != row:
                    self.rows[position] = row
                    changed = self.index(position)
                    self.dataChanged.emit(changed, changed)
            position += 1
        self._index_of = {self.key(r): i for i, r in enumerate(self.rows)}

    def _thumbnail_ready(self, key: ThumbKey) -> None:
        row = self._index_of.get(key)
        if row is not None:
            changed = self.index(row)
            self.dataChanged.emit(
                changed, changed, [Qt.ItemDataRole.DecorationRole, THUMB_STATE_ROLE]
            )


def open_in_file_manager(folder: Path) -> bool:
    """Show a folder in the desktop's file manager (tests replace this)."""
    return QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(folder)))


class GalleryView(QtWidgets.QWidget):
    """Thumbnails of the selected job's finished images; double-click or Enter for detail."""

    detail_opened = QtCore.Signal(object)  # the ImageDetailDialog

    def __init__(self, bridge: EngineBridge, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self.job_id: str | None = None
        self.loader = ThumbnailLoader(
            cache_dir=self.session.paths.root / "cache" / "thumbnails", parent=self
        )
        self.model = GalleryModel(self.loader, self)
        self.list = QtWidgets.QListView()
        self.list.setModel(self.model)
        self.list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.list.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.list.setMovement(QtWidgets.QListView.Movement.Static)
        self.list.setUniformItemSizes(True)  # the layout never asks every item for its size
        self.list.setIconSize(QtCore.QSize(THUMB_SIZE, THUMB_SIZE))
        self.list.setGridSize(QtCore.QSize(THUMB_SIZE + 24, THUMB_SIZE + 36))
        self.list.setSpacing(4)
        self.list.setWordWrap(True)
        self.list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.list.activated.connect(self.open_detail)  # double-click, or Enter
        self.header = QtWidgets.QLabel()
        self.header.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.list)
        self.dialogs: list[ImageDetailDialog] = []
        self._shown_done: int | None = None  # the done count the list was loaded for
        self._stale = True
        self._next_load_at = 0.0  # monotonic: the tick may re-read the list from then on
        self._busy = False
        self.refreshes = 0
        self._show_header()
        bridge.job_selected.connect(self.set_job)
        bridge.tick.connect(self._on_tick)
        bridge.jobs_changed.connect(self._mark_stale)
        bridge.event_logged.connect(self._on_event)
        if bridge.selected_job:
            self.set_job(bridge.selected_job)

    # --- following the selected job -------------------------------------------------------

    def set_job(self, job_id: str) -> None:
        self.job_id = job_id or None
        self._shown_done = None
        self.model.set_rows([])
        self._show_header()
        if self.job_id is not None:
            self.refresh()

    def refresh(self) -> None:
        """Reload the list now (the author looks at it; or the job changed)."""
        if self.job_id is None:
            return
        self._stale = False
        self.loader.forget_failures()
        self._spawn(self._load(self.job_id))

    def _mark_stale(self) -> None:
        self._stale = True

    def _on_event(self, event: EventLogged) -> None:
        if event.kind == "task_regenerated" and event.job_id == self.job_id:
            self._shown_done = None  # the count may come back to the same number
            self._stale = True

    def _on_tick(self) -> None:
        """Twice a second: ask the job's done count (from memory for the running job) and
        reload the list only when it changed; a hidden gallery waits until it is shown."""
        if self.job_id is None or self._busy or not self.isVisible():
            return
        active = self.session.service.active_job
        if not self._stale and (active is None or active.id != self.job_id):
            return
        if not self._stale and time.monotonic() < self._next_load_at:
            return  # a costly list (thousands of images) is re-read less often
        self._stale = False
        self._spawn(self._check(self.job_id))

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self._stale = True

    async def _check(self, job_id: str) -> None:
        view = await self.session.service.view(job_id, workers=False)
        if job_id == self.job_id and view.done != self._shown_done:
            await self._load(job_id)

    async def _load(self, job_id: str) -> None:
        started = time.monotonic()
        try:
            await self._load_now(job_id)
        finally:
            # Keep the gallery's share of the loop near 5 %: a 10,000-image list read every
            # tick would be felt by the whole window while the run goes on.
            cost = time.monotonic() - started
            self._next_load_at = time.monotonic() + min(MAX_RELOAD_SPACING, cost * 20)

    async def _load_now(self, job_id: str) -> None:
        done = (await self.session.service.view(job_id, workers=False)).done
        images = await self.session.finished_images(job_id)
        # A file deleted since its thumbnail was cached must not go on looking present.
        gone = await asyncio.to_thread(_missing, images)
        if job_id != self.job_id:
            return  # another job was selected meanwhile
        self.refreshes += 1
        self.model.set_rows(images)
        self.loader.mark_missing(GalleryModel.key(p) for p in gone)
        # The store lags the running job by one group commit: while the list is shorter
        # than the count, look again on the next tick.
        self._shown_done = done if len(images) >= done else None
        self._show_header()

    def _spawn(self, coro: Any) -> None:
        self._busy = True
        task = self.bridge.spawn("show the gallery", coro)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, _task: Any) -> None:
        self._busy = False

    def _show_header(self) -> None:
        if self.job_id is None:
            self.header.setText("Select a job to see its finished images.")
        elif not self.model.rows:
            self.header.setText(f"No finished images yet in job {self.job_id}.")
        else:
            count = len(self.model.rows)
            self.header.setText(
                f"{count} finished image{'s' if count != 1 else ''} of job {self.job_id} — "
                "double-click one for details"
            )

    # --- detail ---------------------------------------------------------------------------

    def open_detail(self, index: QtCore.QModelIndex) -> ImageDetailDialog | None:
        preview = index.data(PREVIEW_ROLE) if index.isValid() else None
        if not isinstance(preview, ImagePreview) or self.job_id is None:
            return None
        dialog = ImageDetailDialog(self.bridge, self.job_id, preview, self.loader, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialogs.append(dialog)
        dialog.finished.connect(self._dialog_finished)  # a bound method: no reference cycle
        dialog.show()
        self.detail_opened.emit(dialog)
        return dialog

    def _dialog_finished(self) -> None:
        dialog = self.sender()
        self.dialogs = [d for d in self.dialogs if d is not dialog]


class ImageDetailDialog(QtWidgets.QDialog):
    """One image at full size (scaled to fit), its prompt and where it came from."""

    regenerated = QtCore.Signal(int)  # task id, once the task is queued again

    def __init__(
        self,
        bridge: EngineBridge,
        job_id: str,
        preview: ImagePreview,
        loader: ThumbnailLoader,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.job_id = job_id
        self.preview = preview
        self.setWindowTitle(f"{caption(preview)} — #{preview.seq}")
        self.resize(900, 700)
        self._pixmap: QtGui.QPixmap | None = None
        self.image_label = QtWidgets.QLabel("loading…")
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(200, 200)
        self.image_label.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Ignored
        )
        self.prompt_view = QtWidgets.QPlainTextEdit(preview.prompt)
        self.prompt_view.setReadOnly(True)
        self.prompt_view.setMaximumHeight(110)
        self.place_label = QtWidgets.QLabel(self._place_text())
        self.path_label = QtWidgets.QLabel(str(preview.path))
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setWordWrap(True)
        self.size_label = QtWidgets.QLabel(self._size_text(None))
        finished = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(preview.finished_at))
            if preview.finished_at
            else "—"
        )
        self.finished_label = QtWidgets.QLabel(finished)
        self.status_label = QtWidgets.QLabel()
        self.status_label.setWordWrap(True)
        form = QtWidgets.QFormLayout()
        form.addRow("Prompt:", self.prompt_view)
        form.addRow("Panel:", self.place_label)
        form.addRow("File:", self.path_label)
        form.addRow("Size:", self.size_label)
        form.addRow("Finished:", self.finished_label)
        self.open_folder_button = QtWidgets.QPushButton("Open folder")
        self.copy_button = QtWidgets.QPushButton("Copy prompt")
        self.regenerate_button = QtWidgets.QPushButton("Regenerate this panel…")
        self.close_button = QtWidgets.QPushButton("Close")
        self.open_folder_button.clicked.connect(self.open_folder)
        self.copy_button.clicked.connect(self.copy_prompt)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.close_button.clicked.connect(self.close)
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.open_folder_button, self.copy_button, self.regenerate_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.image_label, 1)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.result_of_load: LoadResult | None = None
        self._future = loader.load_full(str(preview.path))
        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._collect)
        self._poll.start()

    def _place_text(self) -> str:
        p = self.preview
        parts = [
            f"chapter {p.chapter}" if p.chapter else None,
            f"page {p.page}" if p.page is not None else None,
            f"panel {p.panel}" if p.panel is not None else None,
        ]
        where = ", ".join(x for x in parts if x) or "—"
        return f"{where} (script #{p.seq}, task {p.task_id})"

    def _size_text(self, pixels: tuple[int, int] | None) -> str:
        try:
            size = self.preview.path.stat().st_size
        except OSError:
            return "missing file"
        text = _human_bytes(size)
        if pixels is not None:
            text = f"{pixels[0]} × {pixels[1]} px, {text}"
        return text

    def _collect(self) -> None:
        if not self._future.done():
            return
        self._poll.stop()
        try:
            result = self._future.result()
        except Exception as exc:  # a decoder bug: say so, do not crash
            result = LoadResult(None, f"unreadable ({exc})", "?")
        self.result_of_load = result
        if result.image is None:
            self.image_label.setText(f"⚠ {result.problem}\n{self.preview.path}")
            self.size_label.setText(self._size_text(None))
            return
        self._pixmap = QtGui.QPixmap.fromImage(result.image)
        self.size_label.setText(self._size_text(result.original))
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is None:
            return
        self.image_label.setPixmap(
            self._pixmap.scaled(
                self.image_label.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit()

    # --- actions --------------------------------------------------------------------------

    def open_folder(self) -> bool:
        return open_in_file_manager(self.preview.path.parent)

    def copy_prompt(self) -> None:
        QtGui.QGuiApplication.clipboard().setText(self.preview.prompt)
        self.status_label.setText("Prompt copied.")

    def confirm_regenerate(self) -> bool:
        """Ask first: a new image costs a generation (tests replace this)."""
        answer = QtWidgets.QMessageBox.question(
            self,
            "Regenerate this panel?",
            "Draw this panel again? The current image is kept under .replaced/ in the "
            "job's output folder, and the panel goes back to the queue.",
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def regenerate(self) -> None:
        if not self.confirm_regenerate():
            return
        self.regenerate_button.setEnabled(False)
        self.status_label.setText("Queuing the panel again…")
        task_id = self.preview.task_id
        task = self.bridge.spawn(
            "regenerate the panel",
            self.bridge.session.regenerate(self.job_id, task_id),
            lambda _none: self._regenerated(task_id),
        )
        task.add_done_callback(self._regenerate_ended)

    def _regenerated(self, task_id: int) -> None:
        self.bridge.info.emit(f"panel #{self.preview.seq} queued to be drawn again")
        with contextlib.suppress(RuntimeError):  # the dialog may be closed (deleted) by now
            self.status_label.setText(
                "Queued: a new image will take this one's place; this one is kept under "
                ".replaced/ in the job's output folder."
            )
            self.regenerated.emit(task_id)

    def _regenerate_ended(self, task: Any) -> None:
        if task.cancelled() or task.exception() is not None:
            with contextlib.suppress(RuntimeError):  # the dialog may be gone by now
                self.regenerate_button.setEnabled(True)
                self.status_label.setText("Could not queue the panel again (see the message).")


def _missing(images: list[ImagePreview]) -> list[ImagePreview]:
    return [p for p in images if not p.path.is_file()]


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


__all__ = [
    "PREVIEW_ROLE",
    "THUMB_SIZE",
    "THUMB_STATE_ROLE",
    "GalleryModel",
    "GalleryView",
    "ImageDetailDialog",
    "LoadResult",
    "ThumbKey",
    "ThumbState",
    "ThumbnailLoader",
    "caption",
    "open_in_file_manager",
    "prune_disk_cache",
    "read_full_image",
    "read_thumbnail",
]
