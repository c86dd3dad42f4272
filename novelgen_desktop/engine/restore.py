"""``novelgen recover``: rebuild one job from a chosen snapshot, its manifest and its files.

``open_store`` rebuilds automatically, and only from the newest readable snapshot, when the
database is damaged or has lost a job. This is the manual tool for the other cases: a database
that opens but says the wrong thing, a newest snapshot that is wrong, an author who wants to
see what a rebuild would do before anything changes. So it is two steps:

* :func:`plan_restore` reads only. It takes the chosen snapshot (by its number, or the newest
  readable one), lays the manifest over it (the manifest is newer: its last word on a task
  wins when the file it names is on disk with that hash), adopts valid images at planned paths
  the manifest never recorded, and checks every done task's file. A done task whose image is
  gone, or has other bytes than recorded, goes back to the queue: a panel is never counted done
  without the image that proves it. The :class:`RestorePlan` says all of that, task by task.
* :func:`apply_restore` carries it out: a backup of the database file first, then the image
  files (a changed image is set aside under ``.replaced/``, never deleted; temp files of
  interrupted writes are removed), then the manifest rows that make it agree, then the job's
  database rows replaced in one transaction, then ``verify``.

Files in the job's folder that no task owns (*stray* files) are left where they are and named:
they may be the author's own (a cover, notes), and ``novelgen verify`` keeps naming them until
the author moves them. The caller holds the job's lock across both steps (:func:`job_lock`):
a running job changes under a plan, and a restore under a running job would lose its work.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from novelgen_desktop.engine.joblock import JobLock
from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.engine.recovery import (
    adoptable_image,
    file_matches,
    files_under,
    open_store,
    snapshot_state,
)
from novelgen_desktop.engine.replaced import REPLACED_DIR, replaced_row, set_aside
from novelgen_desktop.engine.verify import FindingKind, VerifyReport, verify_job
from novelgen_desktop.errors import ConfigError, JobNotFoundError, StoreCorruptError, StoreError
from novelgen_desktop.output.writer import fsync_folders, is_temp_file_name, remove_temp_files
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.store.database import TASK_FIELDS, Store, task_values
from novelgen_desktop.store.manifest import MANIFEST_NAME, ManifestWriter, read_manifest
from novelgen_desktop.store.records import EventLogged, JobRecord, TaskRecord
from novelgen_desktop.store.snapshot import list_snapshots, read_snapshot

BACKUPS_DIR = "backups"
"""Under the data directory: the database as it was before each ``recover --apply``."""


class RestoreRefusedError(ConfigError):
    """Nothing was changed: the request cannot be carried out as asked (exit status 2)."""


# --- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One file in the job's snapshots folder and whether it can be used."""

    seq: int
    path: str
    readable: bool
    reason: str | None = None  # why not, when unreadable
    tasks: int | None = None
    written_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)  # tasks per state, as written


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What the restore does to one task, and why (``detail`` is said to the author)."""

    task_id: int
    seq: int
    path: str | None
    detail: str


@dataclass(slots=True)
class RestorePlan:
    job_id: str
    out_dir: str
    snapshot_seq: int
    snapshot_path: str
    snapshots: list[SnapshotEntry]
    database: str  # "ok", "missing", "damaged: …", "job missing"
    current_counts: dict[str, int] | None  # what the database says now (None: cannot say)
    current_state: str | None
    snapshot_counts: dict[str, int]  # what the snapshot says
    counts: dict[str, int]  # what the database will say
    state: str  # the job's state afterwards
    leases_requeued: int = 0
    from_manifest: list[TaskChange] = field(default_factory=list)
    from_disk: list[TaskChange] = field(default_factory=list)
    missing: list[TaskChange] = field(default_factory=list)
    changed: list[TaskChange] = field(default_factory=list)
    manifest_rows_restored: list[TaskChange] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    temp: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What apply_restore writes (not part of the report).
    job: JobRecord | None = field(default=None, repr=False)
    tasks: list[TaskRecord] = field(default_factory=list, repr=False)
    set_aside: list[TaskRecord] = field(default_factory=list, repr=False)  # as recorded
    manifest_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def unreadable(self) -> list[SnapshotEntry]:
        return [s for s in self.snapshots if not s.readable]

    def to_json(self) -> dict[str, Any]:
        def changes(items: list[TaskChange]) -> list[dict[str, Any]]:
            return [
                {"task": c.task_id, "seq": c.seq, "path": c.path, "detail": c.detail} for c in items
            ]

        return {
            "job": self.job_id,
            "out_dir": self.out_dir,
            "snapshot": {"seq": self.snapshot_seq, "path": self.snapshot_path},
            "snapshots": [
                {
                    "seq": s.seq,
                    "path": s.path,
                    "readable": s.readable,
                    "reason": s.reason,
                    "tasks": s.tasks,
                    "written_at": s.written_at,
                }
                for s in self.snapshots
            ],
            "database": {
                "status": self.database,
                "state": self.current_state,
                "counts": self.current_counts,
            },
            "snapshot_counts": self.snapshot_counts,
            "result": {"state": self.state, "counts": self.counts},
            "leases_requeued": self.leases_requeued,
            "from_manifest": changes(self.from_manifest),
            "from_disk": changes(self.from_disk),
            "missing": changes(self.missing),
            "changed": changes(self.changed),
            "manifest_rows_restored": changes(self.manifest_rows_restored),
            "stray": self.stray,
            "temp": self.temp,
            "notes": self.notes,
        }


def _counts(tasks: list[TaskRecord]) -> dict[str, int]:
    found = Counter(t.state.value for t in tasks)
    return {state.value: found.get(state.value, 0) for state in TaskState}


def _snapshot_ids(paths: DataPaths) -> list[str]:
    if not paths.jobs_dir.is_dir():
        return []
    return sorted(
        p.name for p in paths.jobs_dir.iterdir() if p.is_dir() and list_snapshots(p / "snapshots")
    )


def resolve_job_id(paths: DataPaths, ref: str) -> str:
    """The job ``ref`` (an id or unique prefix) names, read-only: from the database when it
    can be opened, else from the snapshot folders under ``DATA/jobs`` (the database may be
    gone, or damaged, which is why one recovers)."""
    if paths.database.exists():
        try:
            with Store(paths.database) as store:
                return store.find_job(ref).id
        except (JobNotFoundError, StoreError):
            pass  # not in the database (or no usable database): look at the snapshots
    known = _snapshot_ids(paths)
    if ref in known:
        return ref
    matches = [job_id for job_id in known if job_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise JobNotFoundError(
            f"{ref!r} matches several jobs' snapshots ({', '.join(matches)}); give more of the id"
        )
    where = f"; jobs with snapshots: {', '.join(known[:10])}" if known else ""
    raise JobNotFoundError(
        f"no job matches {ref!r} in {paths.database} or in {paths.jobs_dir}{where}"
    )


def job_lock(paths: DataPaths, job_id: str) -> JobLock:
    """The job's run lock; acquiring it refuses (JobBusyError, a ConfigError) while the job
    runs in another process."""
    return JobLock(paths.job_lock(job_id), job_id)


def _scan_snapshots(folder: Path) -> tuple[list[SnapshotEntry], dict[int, Path]]:
    entries: list[SnapshotEntry] = []
    readable: dict[int, Path] = {}
    for seq, path in list_snapshots(folder):
        try:
            payload = read_snapshot(path)
            tasks = payload.get("tasks")
            written = payload.get("written_at")
            counts = payload.get("counts")
            entries.append(
                SnapshotEntry(
                    seq,
                    str(path),
                    True,
                    tasks=len(tasks) if isinstance(tasks, list) else None,
                    written_at=float(written) if isinstance(written, int | float) else None,
                    counts=(
                        {str(k): int(v) for k, v in counts.items()}
                        if isinstance(counts, dict)
                        else {}
                    ),
                )
            )
            readable.setdefault(seq, path)  # list_snapshots puts the plain .json first
        except StoreError as exc:
            entries.append(SnapshotEntry(seq, str(path), False, reason=str(exc)))
    return entries, readable


def _current(paths: DataPaths, job_id: str) -> tuple[str, dict[str, int] | None, str | None]:
    """(status, counts, state) of the job in the database as it is now. Read-only: a missing
    database is not created, a damaged one is not quarantined (apply does that)."""
    if not paths.database.exists():
        return "missing", None, None
    try:
        with Store(paths.database) as store:
            try:
                job = store.find_job(job_id, exact=True)
            except JobNotFoundError:
                return "job missing", None, None
            counts = {k.value: v for k, v in store.count_by_state(job_id).items()}
            return "ok", counts, job.state.value
    except StoreCorruptError as exc:
        return f"damaged: {exc}", None, None
    except StoreError as exc:
        return f"unusable: {exc}", None, None


def _last_words(manifest: Path) -> dict[int, dict[str, Any]]:
    """Each task's last manifest row, as ``verify`` reads it: a ``replaced`` row voids the
    rows before it (the image was set aside for a redraw)."""
    last: dict[int, dict[str, Any]] = {}
    for row in read_manifest(manifest):
        task_id = row.data.get("task")
        if isinstance(task_id, int) and "file" in row.data:
            last[task_id] = row.data
        replaced = row.data.get("replaced_task")
        if isinstance(replaced, int):
            last.pop(replaced, None)
    return last


def _row_on_disk(out: Path, row: dict[str, Any] | None) -> bool:
    if row is None:
        return False
    relative, sha = row.get("file"), row.get("sha256")
    return (
        isinstance(relative, str)
        and isinstance(sha, str)
        and file_matches(out, relative, row.get("size"), sha)
    )


def _done_from_row(task: TaskRecord, row: dict[str, Any]) -> None:
    attempt = row.get("attempt")
    task.done_attempt = attempt if isinstance(attempt, int) else max(task.attempts, 1)
    task.attempts = max(task.attempts, task.done_attempt)
    task.state = TaskState.DONE
    task.output_path = str(row["file"])
    task.sha256 = str(row["sha256"])
    task.size = int(row["size"])
    finished = row.get("finished_at")
    task.finished_at = float(finished) if isinstance(finished, int | float) else time.time()
    worker = row.get("worker")
    task.worker_id = worker if isinstance(worker, str) else task.worker_id


def _requeue(task: TaskRecord) -> None:
    task.state = TaskState.QUEUED
    task.output_path = task.sha256 = None
    task.size = task.done_attempt = None
    task.finished_at = None
    task.failures = 0
    task.not_before = 0.0


def plan_restore(paths: DataPaths, job_id: str, seq: int | None = None) -> RestorePlan:
    """What restoring ``job_id`` from snapshot ``seq`` (None: the newest readable one) would
    do. Reads only; refuses (:class:`RestoreRefusedError`) when the snapshot does not exist,
    cannot be read, or no snapshot of the job can be."""
    folder = paths.snapshots_dir(job_id)
    entries, readable = _scan_snapshots(folder)
    if not entries:
        raise RestoreRefusedError(f"job {job_id} has no snapshots in {folder}; nothing to restore")
    if seq is None:
        if not readable:
            reasons = "; ".join(f"{e.path}: {e.reason}" for e in entries)
            raise RestoreRefusedError(f"no snapshot of job {job_id} can be read: {reasons}")
        seq = max(readable)
    elif seq not in readable:
        available = ", ".join(str(s) for s in sorted(readable)) or "none"
        bad = [e for e in entries if e.seq == seq]
        why = (
            f"snapshot {seq} of job {job_id} cannot be read ({bad[0].reason})"
            if bad
            else f"job {job_id} has no snapshot {seq}"
        )
        raise RestoreRefusedError(f"{why}; readable snapshots: {available}")
    snapshot = readable[seq]
    job, tasks = snapshot_state(snapshot)
    if job.id != job_id:
        raise RestoreRefusedError(f"snapshot {snapshot} is of job {job.id}, not {job_id}")
    chosen = next(e for e in entries if e.path == str(snapshot))
    leased = chosen.counts.get(TaskState.LEASED.value, 0)
    status, current_counts, current_state = _current(paths, job_id)
    plan = RestorePlan(
        job_id=job_id,
        out_dir=job.out_dir,
        snapshot_seq=seq,
        snapshot_path=str(snapshot),
        snapshots=entries,
        database=status,
        current_counts=current_counts,
        current_state=current_state,
        snapshot_counts={},
        counts={},
        state=job.state.value,
        leases_requeued=leased,
    )
    plan.snapshot_counts = {**_counts(tasks), **chosen.counts}
    _lay_over(plan, job, tasks)
    if plan.counts.get(TaskState.QUEUED.value) and job.state in (
        JobState.FINISHED,
        JobState.INCOMPLETE,
    ):
        job.state = JobState.RUNNING  # tasks to draw again: resume must take the job up
    plan.state = job.state.value
    # New snapshots must not reuse the number of one already there (even an unreadable one).
    job.snapshot_seq = max([job.snapshot_seq, *(e.seq for e in entries)])
    plan.job = job
    return plan


def _lay_over(plan: RestorePlan, job: JobRecord, tasks: list[TaskRecord]) -> None:
    """Manifest and files over the snapshot's tasks (see the module doc for the rules)."""
    out = Path(job.out_dir)
    existing = files_under(out, skip=frozenset({REPLACED_DIR})) if out.is_dir() else set()
    last = _last_words(out / MANIFEST_NAME)
    owned: set[str] = set()
    now = time.time()
    for task in tasks:
        row = last.get(task.id)
        if task.state is TaskState.DONE:
            recorded = task.output_path
            if recorded and file_matches(out, recorded, task.size, task.sha256 or ""):
                owned.add(recorded)
                if row is None or (row.get("file"), row.get("sha256")) != (recorded, task.sha256):
                    plan.manifest_rows.append(_restored_row(job, task))
                    plan.manifest_rows_restored.append(
                        TaskChange(task.id, task.seq, recorded, "done with its file, but the "
                                   "manifest's last word on it differs: a row is added")
                    )  # fmt: skip
                continue
            if row is not None and _row_on_disk(out, row) and row.get("file") not in owned:
                _done_from_row(task, row)
                owned.add(str(row["file"]))
                plan.from_manifest.append(
                    TaskChange(task.id, task.seq, task.output_path,
                               f"the manifest is newer than the snapshot (sha256 {task.sha256})")
                )  # fmt: skip
                continue
            _damaged(plan, job, task, existing, row, now=now)
            continue
        if row is not None and _row_on_disk(out, row) and row.get("file") not in owned:
            _done_from_row(task, row)
            owned.add(str(row["file"]))
            plan.from_manifest.append(
                TaskChange(task.id, task.seq, task.output_path, "done in the manifest, "
                           f"{row.get('file')} on disk with its recorded sha256")
            )  # fmt: skip
            continue
        if row is not None:  # the manifest says done, the file does not agree
            claimed = replace(task, output_path=row.get("file"), sha256=row.get("sha256"))
            claimed.size = row.get("size") if isinstance(row.get("size"), int) else None
            claimed.done_attempt = (
                row.get("attempt") if isinstance(row.get("attempt"), int) else None
            )
            _damaged(plan, job, claimed, existing, row, now=now)
            _requeue(task)
            continue
        found = adoptable_image(job, task, existing, plan.notes)
        if found is not None and found[0].relative not in owned:
            written, disk_row = found
            _done_from_row(task, disk_row)
            owned.add(written.relative)
            plan.manifest_rows.append(disk_row)
            plan.from_disk.append(
                TaskChange(task.id, task.seq, written.relative,
                           "a valid image at its planned path that the manifest never "
                           "recorded: adopted")
            )  # fmt: skip
    owned.update(b.output_path for b in plan.set_aside if b.output_path)
    for relative in sorted(existing - owned):
        if relative == MANIFEST_NAME:
            continue
        if is_temp_file_name(relative.rsplit("/", 1)[-1]):
            plan.temp.append(relative)
        else:
            plan.stray.append(relative)
    plan.tasks = tasks
    plan.counts = _counts(tasks)


def _damaged(
    plan: RestorePlan,
    job: JobRecord,
    task: TaskRecord,
    existing: set[str],
    row: dict[str, Any] | None,
    *,
    now: float,
) -> None:
    """``task`` claims an image (its record, or its manifest row) that is not on disk with
    the recorded bytes: it is drawn again. A file with other bytes is set aside (at apply),
    never deleted; a manifest row still calling it done is voided, as "regenerate" does."""
    before = replace(task)
    recorded = task.output_path
    if recorded and recorded in existing:
        plan.changed.append(
            TaskChange(task.id, task.seq, recorded,
                       f"has other bytes than recorded (sha256 {task.sha256}, {task.size} "
                       f"bytes): set aside under {REPLACED_DIR}/ and drawn again")
        )  # fmt: skip
        plan.set_aside.append(before)
    else:
        plan.missing.append(
            TaskChange(task.id, task.seq, recorded,
                       "recorded as done, but its image is missing: queued to be drawn again")
        )  # fmt: skip
        if row is not None:
            plan.manifest_rows.append(replaced_row(job.id, before, None, now))
    _requeue(task)


def _restored_row(job: JobRecord, task: TaskRecord) -> dict[str, Any]:
    """A manifest row for a done task the manifest lost (its file checked against the
    snapshot's size and SHA-256): marked, so a reader knows it was written afterwards."""
    return {
        "job": job.id,
        "task": task.id,
        "seq": task.seq,
        "attempt": task.done_attempt,
        "chapter": task.chapter,
        "page": task.page,
        "panel": task.panel,
        "variant": task.variant,
        "file": task.output_path,
        "sha256": task.sha256,
        "size": task.size,
        "prompt": task.prompt,
        "source": task.source,
        "worker": task.worker_id,
        "finished_at": task.finished_at,
        "recovered": "restored-from-snapshot",
    }


# --- applying it --------------------------------------------------------------------------


@dataclass(slots=True)
class RestoreResult:
    plan: RestorePlan
    backup: Path | None  # the database as it was, before anything changed
    set_aside: list[str] = field(default_factory=list)  # where changed images went
    temp_removed: int = 0
    store_recovery: str | None = None  # what open_store had to do first (a damaged DB …)
    verify: VerifyReport | None = None

    @property
    def remaining(self) -> list[str]:
        """Verify findings other than the stray files recover leaves on purpose."""
        assert self.verify is not None
        stray = set(self.plan.stray)
        return [
            str(f)
            for f in self.verify.findings
            if not (f.kind is FindingKind.STRAY_FILE and f.path in stray)
        ]

    @property
    def ok(self) -> bool:
        return self.verify is not None and not self.remaining


def backup_database(paths: DataPaths, job_id: str) -> Path | None:
    """Copy the database before a restore changes it: through SQLite's backup API when it
    opens (a consistent copy even if another job is running), byte for byte (with its WAL)
    when it is damaged. None when there is no database file."""
    if not paths.database.exists():
        return None
    folder = paths.root / BACKUPS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"novelgen-{stamp}-before-recover-{job_id}.sqlite"
    counter = 1
    while target.exists():
        counter += 1
        target = folder / f"novelgen-{stamp}-{counter}-before-recover-{job_id}.sqlite"
    try:
        source = sqlite3.connect(f"{paths.database.resolve().as_uri()}?mode=ro", uri=True)
        try:
            dest = sqlite3.connect(target)
            try:
                source.backup(dest)
            finally:
                dest.close()
        finally:
            source.close()
    except sqlite3.DatabaseError:
        target.unlink(missing_ok=True)
        for suffix in ("", "-wal", "-shm"):
            extra = Path(str(paths.database) + suffix)
            if extra.exists():
                shutil.copy2(extra, str(target) + suffix)
    return target


def apply_restore(paths: DataPaths, plan: RestorePlan) -> RestoreResult:
    """Carry out ``plan`` (see the module doc for the order and why each crash point is
    safe: a crash before the database commit leaves the old rows and a plan that, made
    again, finds the files where this one left them)."""
    assert plan.job is not None
    job = plan.job
    out = Path(job.out_dir)
    result = RestoreResult(plan, backup_database(paths, job.id))
    if out.is_dir():
        result.temp_removed = remove_temp_files(out)
    now = time.time()
    for before in plan.set_aside:
        moved_to = set_aside(out, before)
        result.set_aside.append(moved_to or "")
        plan.manifest_rows.append(
            {**replaced_row(job.id, before, moved_to, now), "recovered": "changed-file"}
        )
        assert before.output_path is not None
        (out / before.output_path).unlink(missing_ok=True)
    if plan.set_aside:
        fsync_folders(list({(out / b.output_path).parent for b in plan.set_aside if b.output_path}))
    out.mkdir(parents=True, exist_ok=True)
    writer = ManifestWriter(out / MANIFEST_NAME)  # cuts a torn last line first
    try:
        job.manifest_offset = writer.append(plan.manifest_rows)
    finally:
        writer.close()
    store, recovery = open_store(paths)
    with store:
        if recovery is not None:
            result.store_recovery = recovery.describe()
        _replace_rows(store, job, plan.tasks)
        store.apply(
            [
                EventLogged(
                    time.time(),
                    "warning",
                    "restored",
                    f"job restored from snapshot {plan.snapshot_seq} by novelgen recover: "
                    f"{len(plan.from_manifest)} from the manifest, {len(plan.from_disk)} "
                    f"adopted from disk, {len(plan.missing)} missing and {len(plan.changed)} "
                    "changed image(s) queued again",
                    job_id=job.id,
                    data={"backup": str(result.backup) if result.backup else None},
                )
            ]
        )
        result.verify = verify_job(store.find_job(job.id, exact=True), store.load_tasks(job.id))
    return result


_JOB_UPDATE = (
    "UPDATE jobs SET name = ?, created_at = ?, updated_at = ?, state = ?, out_dir = ?, "
    "naming_template = ?, sources = ?, settings = ?, manifest_offset = ?, snapshot_seq = ? "
    "WHERE id = ?"
)


def _replace_rows(store: Store, job: JobRecord, tasks: list[TaskRecord]) -> None:
    """The job's row and task rows become the plan's, in one transaction.

    Tasks are written over in place rather than deleted and inserted: their attempts (with
    the conversation URLs an image can be fetched again from) stay. Attempts are then made
    to agree: one ``done`` attempt per done task (its ``done_attempt``, recorded if it never
    was), earlier ``done`` attempts of tasks drawn again become ``replaced``, and a task's
    attempt count never falls below an attempt already recorded (the next one gets a new
    number).
    """
    columns = ", ".join(TASK_FIELDS)
    marks = ", ".join("?" * len(TASK_FIELDS))
    updates = ", ".join(f"{c} = excluded.{c}" for c in TASK_FIELDS if c != "id")
    ids = {t.id for t in tasks}
    with store.transaction() as conn:
        cursor = conn.execute(
            _JOB_UPDATE,
            (
                job.name,
                job.created_at,
                time.time(),
                job.state.value,
                job.out_dir,
                job.naming_template,
                json.dumps(job.sources, ensure_ascii=False),
                json.dumps(job.settings, ensure_ascii=False),
                job.manifest_offset,
                job.snapshot_seq,
                job.id,
            ),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"job {job.id} is not in {store.path} after opening it")
        stale = [
            r[0]
            for r in conn.execute("SELECT id FROM tasks WHERE job_id = ?", (job.id,))
            if r[0] not in ids
        ]
        conn.executemany("DELETE FROM tasks WHERE id = ?", ((i,) for i in stale))
        # Free every file name first: tasks_one_file must hold after each row, not only at
        # the end.
        conn.execute("UPDATE tasks SET output_path = NULL WHERE job_id = ?", (job.id,))
        conn.executemany(
            f"INSERT INTO tasks ({columns}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET "
            f"{updates}",
            (task_values(t) for t in tasks),
        )
        in_job = "task_id IN (SELECT id FROM tasks WHERE job_id = ?)"
        now = time.time()
        conn.execute(
            f"UPDATE attempts SET ended_at = ?, outcome = 'interrupted' "
            f"WHERE ended_at IS NULL AND {in_job}",
            (now, job.id),
        )
        conn.execute(
            f"UPDATE attempts SET outcome = 'replaced' WHERE outcome = 'done' AND {in_job} "
            "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = attempts.task_id "
            "AND t.state = 'done' AND t.done_attempt = attempts.attempt)",
            (job.id,),
        )
        conn.execute(
            "UPDATE attempts SET outcome = 'done' WHERE EXISTS (SELECT 1 FROM tasks t "
            "WHERE t.id = attempts.task_id AND t.job_id = ? AND t.state = 'done' "
            "AND t.done_attempt = attempts.attempt)",
            (job.id,),
        )
        conn.execute(
            "INSERT OR IGNORE INTO attempts (task_id, attempt, started_at, ended_at, outcome, "
            "prompt_sent, style_version) SELECT id, done_attempt, finished_at, finished_at, "
            "'done', prompt, json_extract(metadata, '$.composition.version') FROM tasks "
            "WHERE job_id = ? AND state = 'done'",
            (job.id,),
        )
        conn.execute(
            "UPDATE tasks SET attempts = MAX(attempts, COALESCE((SELECT MAX(attempt) FROM "
            "attempts a WHERE a.task_id = tasks.id), 0)) WHERE job_id = ?",
            (job.id,),
        )


def recover_job(
    paths: DataPaths, ref: str, seq: int | None = None, *, apply: bool = False
) -> tuple[RestorePlan, RestoreResult | None]:
    """Plan (and with ``apply``, carry out) a restore of job ``ref`` under its lock."""
    job_id = resolve_job_id(paths, ref)
    if not list_snapshots(paths.snapshots_dir(job_id)):
        raise RestoreRefusedError(
            f"job {job_id} has no snapshots in {paths.snapshots_dir(job_id)}; nothing to "
            "restore from"
        )
    with job_lock(paths, job_id):
        plan = plan_restore(paths, job_id, seq)
        return plan, (apply_restore(paths, plan) if apply else None)
