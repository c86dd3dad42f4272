"""Group commit: the single thread that makes engine decisions durable.

The engine's event loop never blocks on SQLite. It hands operation records to
:class:`DurableWriter`, which applies them in batches on one dedicated thread: first the
manifest rows of the batch's completions are appended and fsynced, then the database
transaction commits (recording how far the manifest goes), then — every N completions — a
snapshot is written from the committed state. Because each image file was fsynced and renamed
before its completion was queued here, the on-disk order is always file → manifest → database,
and recovery can rebuild any later step from the earlier ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from novelgen_desktop.errors import StoreError
from novelgen_desktop.output.writer import fsync_folders
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import ManifestWriter
from novelgen_desktop.store.records import StoreOp, TaskCompleted
from novelgen_desktop.store.snapshot import write_snapshot


@dataclass(frozen=True, slots=True)
class WriterSettings:
    flush_interval: float = 0.05  # seconds between group commits
    flush_max_ops: int = 2000
    snapshot_every: int = 50  # completions between snapshots
    snapshot_min_interval: float = 2.0  # never more often than this (a burst of zero-latency
    # simulated results must not turn into a snapshot per commit)
    # Nor so often that snapshots take more than this share of the time: one of a 10,000-task
    # job costs ~0.3 s of CPU, which every 2 s was ~15 % of a busy hub's CPU.
    snapshot_max_share: float = 0.1
    keep_snapshots: int = 10
    fsync: bool = True  # flush image folders and the manifest before each commit


class DurableWriter:
    def __init__(
        self,
        database: Path,
        job_id: str,
        manifest_path: Path,
        snapshots_dir: Path,
        settings: WriterSettings,
        *,
        first_snapshot_seq: int,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.settings = settings
        self._on_failure = on_failure
        self._out_dir = manifest_path.parent
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        self._snapshot_executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="snapshot"
        )
        self._snapshot_running: concurrent.futures.Future[None] | None = None
        self._snapshot_store: Store | None = None
        self._database = database
        self._pending: list[StoreOp] = []
        self._snapshots_dir = snapshots_dir
        self._snapshot_seq = first_snapshot_seq
        self._done_since_snapshot = 0
        self._last_snapshot = 0.0
        self._last_snapshot_seconds = 0.0  # how long the last snapshot took to write
        self._lock = threading.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._closed = False
        self.commits = 0
        self.snapshots_written = 0
        self.error: BaseException | None = None
        # The store connection and manifest are created on and used from the writer thread only.
        self._store: Store | None = None
        self._manifest: ManifestWriter | None = None
        self._executor.submit(self._open, database, manifest_path).result()

    def _open(self, database: Path, manifest_path: Path) -> None:
        self._store = Store(database, check=False)
        self._manifest = ManifestWriter(manifest_path)

    # --- called on the event loop ---------------------------------------------------------

    def submit(self, *ops: StoreOp) -> None:
        if self._closed:
            raise RuntimeError("the durable writer is closed")
        self._pending.extend(ops)

    def start(self) -> None:
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.flush_interval)
            try:
                await self.flush()
            except Exception as exc:  # reported through on_failure and close()
                self.error = exc
                if self._on_failure is not None:
                    self._on_failure(exc)
                return

    async def flush(self, *, force_snapshot: bool = False) -> None:
        """Commit everything submitted so far; returns once it is durable."""
        batch, self._pending = self._pending, []
        if not batch and not force_snapshot:
            return
        loop = asyncio.get_running_loop()
        # Shielded: once a batch has left ``_pending`` it must reach the database even if the
        # awaiting task is cancelled (cancelling a queued executor job would drop it silently).
        commit = loop.run_in_executor(self._executor, self._commit, batch, force_snapshot)
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            await asyncio.wait([commit])  # let the batch land, then honour the cancellation
            raise
        except BaseException as exc:
            self.error = exc
            raise

    async def close(self, *, final_snapshot: bool = True) -> None:
        self._stopping.set()
        if self._flush_task is not None:
            await self._flush_task  # finishes its current flush, then leaves the loop
        loop = asyncio.get_running_loop()
        try:
            if self.error is None:
                await self.flush(force_snapshot=final_snapshot)
        finally:
            self._closed = True
            await loop.run_in_executor(self._executor, self._close_thread_side)
            self._executor.shutdown(wait=True)
        if self.error is not None:
            raise StoreError(
                f"progress could not be recorded ({self.error}); the images already written "
                "are kept and will be counted on resume"
            ) from self.error

    # --- writer thread --------------------------------------------------------------------

    def _commit(self, batch: list[StoreOp], force_snapshot: bool) -> None:
        assert self._store is not None and self._manifest is not None
        for start in range(0, len(batch), self.settings.flush_max_ops):
            chunk = batch[start : start + self.settings.flush_max_ops]
            completed = [op for op in chunk if isinstance(op, TaskCompleted)]
            if self.settings.fsync and completed:
                # The images were written without a folder flush each: flush their folders
                # once here, before the manifest or the database may say they exist.
                fsync_folders({(self._out_dir / op.output_path).parent for op in completed})
            rows = [op.manifest_row for op in completed]
            offset = self._manifest.append(rows, fsync=self.settings.fsync)
            self._store.apply(chunk, manifest_offset=(self.job_id, offset))
            self.commits += 1
            self._done_since_snapshot += len(rows)
        now = time.monotonic()
        spacing = max(
            self.settings.snapshot_min_interval,
            self._last_snapshot_seconds / max(self.settings.snapshot_max_share, 1e-3),
        )
        due = (
            self._done_since_snapshot >= self.settings.snapshot_every
            and now - self._last_snapshot >= spacing
        )
        if force_snapshot:
            if self._snapshot_running is not None:
                self._snapshot_running.result()  # the final snapshot comes after any other
            self._snapshot_now(now).result()
        elif due and (self._snapshot_running is None or self._snapshot_running.done()):
            if self._snapshot_running is not None:
                self._snapshot_running.result()  # surface an error of the previous one
            self._snapshot_running = self._snapshot_now(now)

    def _snapshot_now(self, now: float) -> concurrent.futures.Future[None]:
        """Start a snapshot of what is committed now, on the snapshot thread.

        Its own connection reads a consistent committed state (WAL readers do not block the
        writer), so group commits go on while a large job is serialised: a snapshot of a
        10,000-task job takes long enough that holding commits back for it let the database
        lag hundreds of images behind the disk.
        """
        self._snapshot_seq += 1
        self._done_since_snapshot = 0
        self._last_snapshot = now
        self.snapshots_written += 1
        return self._snapshot_executor.submit(self._write_snapshot, self._snapshot_seq)

    def _write_snapshot(self, seq: int) -> None:
        started = time.monotonic()
        if self._snapshot_store is None:
            self._snapshot_store = Store(self._database, check=False)
        write_snapshot(
            self._snapshot_store,
            self.job_id,
            self._snapshots_dir,
            seq,
            keep=self.settings.keep_snapshots,
        )
        self._last_snapshot_seconds = time.monotonic() - started

    def _close_thread_side(self) -> None:
        self._snapshot_executor.shutdown(wait=True)
        if self._snapshot_store is not None:
            self._snapshot_store.close()
        if self._store is not None:
            self._store.checkpoint()
            self._store.close()
        if self._manifest is not None:
            self._manifest.close()
