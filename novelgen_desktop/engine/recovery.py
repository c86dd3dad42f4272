"""Getting back to a consistent state after any crash, or a damaged database.

Two levels:

* :func:`reconcile_job` runs before every resume. The database may lag behind the disk by one
  group commit: images renamed into place and manifest rows appended whose transaction never
  committed. It cuts a torn manifest line, counts manifest rows past the committed offset,
  adopts valid images already at a task's planned path, deletes temp files and returns leases
  to the queue. Nothing already paid for is generated again.
* :func:`open_store` checks the database (``PRAGMA quick_check``). When it is damaged, or
  missing jobs that have snapshots, the file is quarantined and every job is rebuilt from its
  newest readable snapshot + the manifest + the files on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from novelgen_desktop.engine.jobs import relative_candidates
from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.runner import manifest_row
from novelgen_desktop.errors import StoreCorruptError, StoreError
from novelgen_desktop.output.imagecheck import InvalidImageError, inspect_image
from novelgen_desktop.output.writer import WrittenFile, remove_temp_files, sha256_file
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import (
    MANIFEST_NAME,
    ManifestWriter,
    read_manifest,
    repair_torn_tail,
)
from novelgen_desktop.store.records import (
    AttemptEnded,
    EventLogged,
    JobRecord,
    StoreOp,
    TaskCompleted,
    TaskRecord,
)
from novelgen_desktop.store.snapshot import list_snapshots, read_snapshot, records_from_snapshot


@dataclass(slots=True)
class ReconcileReport:
    job_id: str
    torn_bytes: int = 0
    from_manifest: int = 0
    from_disk: int = 0
    temp_files_removed: int = 0
    leases_requeued: int = 0
    notes: list[str] = field(default_factory=list)
    # The job's tasks as they stand after reconciliation, so the caller need not read them again.
    tasks: list[TaskRecord] = field(default_factory=list, repr=False)

    @property
    def changed(self) -> bool:
        return bool(
            self.notes
            or self.torn_bytes
            or self.from_manifest
            or self.from_disk
            or self.temp_files_removed
            or self.leases_requeued
        )

    def describe(self) -> str:
        parts = []
        if self.from_manifest:
            parts.append(f"{self.from_manifest} finished image(s) recovered from the manifest")
        if self.from_disk:
            parts.append(f"{self.from_disk} finished image(s) adopted from disk")
        if self.leases_requeued:
            parts.append(f"{self.leases_requeued} interrupted task(s) requeued")
        if self.temp_files_removed:
            parts.append(f"{self.temp_files_removed} temp file(s) removed")
        if self.torn_bytes:
            parts.append(f"a torn manifest line ({self.torn_bytes} bytes) cut")
        return "; ".join(parts + self.notes) or "nothing to repair"


def file_matches(out_dir: Path, relative: str, size: object, sha256: str) -> bool:
    """The file a manifest row names is there with its recorded size and hash.

    The size is checked first (one ``stat``) so a wrong file is rejected without reading it;
    the hash is what proves the file is the image the row describes.
    """
    path = out_dir / relative
    try:
        if not isinstance(size, int) or path.stat().st_size != size:
            return False
        return sha256_file(path) == sha256
    except OSError:
        return False


def _adopt_from_manifest(
    out_dir: Path,
    manifest: Path,
    offset: int,
    tasks: dict[int, TaskRecord],
    report: ReconcileReport,
) -> list[StoreOp]:
    ops: list[StoreOp] = []
    for row in read_manifest(manifest, offset=offset):
        data = row.data
        task = tasks.get(data.get("task", -1)) if isinstance(data.get("task"), int) else None
        if task is None or task.state is TaskState.DONE:
            continue
        relative, sha = data.get("file"), data.get("sha256")
        if not isinstance(relative, str) or not isinstance(sha, str):
            report.notes.append(f"manifest line {row.line} for task {task.id} is incomplete")
            continue
        if not file_matches(out_dir, relative, data.get("size"), sha):
            report.notes.append(f"manifest line for task {task.id} has no matching file")
            continue
        attempt = int(data.get("attempt") or max(task.attempts, 1))
        finished = float(data.get("finished_at") or time.time())
        size = (out_dir / relative).stat().st_size
        ops += [
            AttemptEnded(
                task.id,
                attempt,
                finished,
                "done",
                conversation_url=data.get("conversation_url"),
                image_id=data.get("image_id"),
            ),
            TaskCompleted(
                task.id, attempt, relative, sha, size, finished, data.get("worker"), data
            ),
        ]
        task.state = TaskState.DONE
        report.from_manifest += 1
    return ops


def files_under(root: Path, *, skip: frozenset[str] = frozenset()) -> set[str]:
    """Every file below ``root`` as a relative POSIX path; top-level folders named in
    ``skip`` are not entered."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        if skip and Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        prefix = Path(folder).relative_to(root).as_posix()
        for name in files:
            found.add(name if prefix == "." else f"{prefix}/{name}")
    return found


def adoptable_image(
    job: JobRecord, task: TaskRecord, existing: set[str], notes: list[str]
) -> tuple[WrittenFile, dict[str, Any]] | None:
    """A valid image already at one of ``task``'s planned paths (renamed into place, its
    manifest row never written), with the manifest row that records it; None when there is
    none. ``existing`` is the job folder's files (:func:`files_under`); an unusable file at a
    planned path is said in ``notes`` and not taken."""
    out_dir = Path(job.out_dir)
    for candidate in relative_candidates(task.planned_path):
        if candidate not in existing:
            continue
        relative = PurePosixPath(candidate)
        path = out_dir / relative
        try:
            data = path.read_bytes()
            info = inspect_image(data)
        except (OSError, InvalidImageError) as exc:
            notes.append(f"{relative} is not a usable image ({exc}); task requeued")
            continue
        digest = hashlib.sha256(data).hexdigest()  # the bytes are in hand: no second read
        written = WrittenFile(path, relative.as_posix(), digest, len(data))
        row = manifest_row(
            job,
            task,
            max(task.attempts, 1),
            written,
            info,
            worker_id=task.worker_id,
            account_id=None,
            finished_at=time.time(),
            conversation_url=None,
            image_id=None,
        )
        row["recovered"] = "adopted-from-disk"
        return written, row
    return None


def _adopt_from_disk(
    job: JobRecord, tasks: dict[int, TaskRecord], report: ReconcileReport
) -> tuple[list[StoreOp], list[dict[str, object]]]:
    """Images renamed into place whose manifest row was never written: valid ones count."""
    ops: list[StoreOp] = []
    rows: list[dict[str, object]] = []
    existing = files_under(Path(job.out_dir))  # one walk instead of a stat per candidate path
    for task in tasks.values():
        if task.state is TaskState.DONE:
            continue
        found = adoptable_image(job, task, existing, report.notes)
        if found is None:
            continue
        written, row = found
        attempt = max(task.attempts, 1)
        now = float(row["finished_at"])
        rows.append(row)
        ops.append(AttemptEnded(task.id, attempt, now, "done"))
        ops.append(
            TaskCompleted(
                task.id,
                attempt,
                written.relative,
                written.sha256,
                written.size,
                now,
                task.worker_id,
                row,
            )
        )
        task.state = TaskState.DONE
        report.from_disk += 1
    return ops, rows


def reconcile_job(store: Store, job: JobRecord) -> ReconcileReport:
    """Make the database agree with the disk before a job runs again (see module doc)."""
    report = ReconcileReport(job.id)
    out_dir = Path(job.out_dir)
    manifest = out_dir / MANIFEST_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    report.temp_files_removed = remove_temp_files(out_dir)
    report.torn_bytes = repair_torn_tail(manifest)
    report.leases_requeued = store.requeue_leased(job.id, time.time())
    tasks = {t.id: t for t in store.load_tasks(job.id)}
    ops = _adopt_from_manifest(out_dir, manifest, job.manifest_offset, tasks, report)
    disk_ops, rows = _adopt_from_disk(job, tasks, report)
    writer = ManifestWriter(manifest)
    try:
        size = writer.append(rows)
    finally:
        writer.close()
    ops += disk_ops
    if report.changed:
        ops.append(
            EventLogged(
                time.time(),
                "warning" if ops else "info",
                "recovered",
                report.describe(),
                job_id=job.id,
            )
        )
    store.apply(ops, manifest_offset=(job.id, size))
    report.tasks = list(tasks.values())
    return report


# --- whole-database recovery --------------------------------------------------------------


@dataclass(slots=True)
class StoreRecovery:
    quarantined: Path | None = None
    reason: str | None = None
    rebuilt: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = []
        if self.quarantined is not None:
            lines.append(f"the database was damaged ({self.reason}); moved to {self.quarantined}")
        if self.rebuilt:
            lines.append(
                f"rebuilt {len(self.rebuilt)} job(s) from snapshots: " + ", ".join(self.rebuilt)
            )
        for lost in self.lost:
            lines.append(f"could not rebuild: {lost}")
        return "\n".join(lines)


def _quarantine(paths: DataPaths) -> Path:
    paths.quarantine_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = paths.quarantine_dir / f"novelgen-{stamp}.sqlite"
    counter = 1
    while any(Path(str(target) + s).exists() for s in ("", "-wal", "-shm")):
        counter += 1  # never overwrite an earlier quarantined database
        target = paths.quarantine_dir / f"novelgen-{stamp}-{counter}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(paths.database) + suffix)
        if source.exists():
            shutil.move(str(source), str(target) + suffix)
    return target


def snapshot_state(path: Path) -> tuple[JobRecord, list[TaskRecord]]:
    """The job and its tasks as snapshot ``path`` records them, ready to be stored again:
    leases do not survive the process that held them, so leased tasks are queued. Any damage
    is a :class:`StoreError` naming the file."""
    try:
        job, tasks = records_from_snapshot(read_snapshot(path))
    except StoreError as exc:
        if str(path) in str(exc):
            raise
        raise StoreError(f"snapshot {path}: {exc}") from exc
    for task in tasks:
        if task.state is TaskState.LEASED:
            task.state = TaskState.QUEUED
    return job, tasks


def rebuild_job(store: Store, paths: DataPaths, job_id: str) -> JobRecord:
    """Recreate one job from its newest readable snapshot plus its manifest."""
    errors = []
    for _seq, snapshot_path in list_snapshots(paths.snapshots_dir(job_id)):
        try:
            job, tasks = snapshot_state(snapshot_path)
            break
        except StoreError as exc:
            errors.append(str(exc))
    else:
        raise StoreError(
            f"job {job_id}: no readable snapshot" + (f" ({'; '.join(errors)})" if errors else "")
        )
    # Every manifest row is re-read: the snapshot may be older than the manifest.
    job.manifest_offset = 0
    store.create_job(job, tasks)
    now = time.time()
    # The attempts' history went with the database; the snapshot still says which attempt
    # drew each finished image, so every done task keeps its done attempt (what attempt-based
    # figures, flag reports among them, count), as after `novelgen recover`.
    ops: list[StoreOp] = [
        AttemptEnded(task.id, task.done_attempt or 1, task.finished_at or now, "done")
        for task in tasks
        if task.state is TaskState.DONE
    ]
    ops.append(
        EventLogged(
            now,
            "warning",
            "rebuilt",
            f"job rebuilt from {snapshot_path.name} after database damage",
            job_id=job.id,
        )
    )
    store.apply(ops)
    return store.find_job(job.id)


def open_store(paths: DataPaths) -> tuple[Store, StoreRecovery | None]:
    """Open (and check) the database; rebuild it from snapshots when it is damaged."""
    paths.ensure()
    recovery: StoreRecovery | None = None
    try:
        store = Store(paths.database)
    except StoreCorruptError as exc:
        recovery = StoreRecovery(quarantined=_quarantine(paths), reason=str(exc))
        store = Store(paths.database)
    known = {job.id for job in store.list_jobs()}
    candidates = sorted(
        p.name for p in paths.jobs_dir.iterdir() if p.is_dir() and p.name not in known
    )
    for job_id in candidates:
        if not list_snapshots(paths.snapshots_dir(job_id)):
            continue
        recovery = recovery or StoreRecovery(reason="jobs missing from the database")
        try:
            rebuild_job(store, paths, job_id)
            recovery.rebuilt.append(job_id)
        except StoreError as exc:
            recovery.lost.append(str(exc))
    return store, recovery
