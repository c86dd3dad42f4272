"""The SQLite store: the source of truth for jobs, tasks, attempts, workers and events.

One :class:`Store` owns one connection. The engine applies batches of operation records
(:mod:`novelgen_desktop.store.records`) from a single writer thread; reads at start-up and from
the CLI use the same class on their own connection. WAL mode lets readers (snapshots, the
``status`` command, later the GUI) see committed state while the writer carries on.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.errors import JobNotFoundError, StoreCorruptError, StoreError
from novelgen_desktop.store import schema
from novelgen_desktop.store.records import (
    AccountCooldown,
    AttemptEnded,
    AttemptRecord,
    AttemptStarted,
    EventLogged,
    JobRecord,
    JobUpdated,
    StoreOp,
    TaskCompleted,
    TaskQueuePlaced,
    TaskRecord,
    TaskReplaced,
    TaskRequeued,
    TaskUpdated,
    WorkerSeen,
)

_TASK_COLUMNS = (
    "id, job_id, seq, prompt, planned_path, state, chapter, page, panel, variant, priority, "
    "characters, style, metadata, source, attempts, failures, not_before, last_error_kind, "
    "last_error, output_path, sha256, size, done_attempt, finished_at, worker_id, queue_rank"
)
_JOB_COLUMNS = (
    "id, name, created_at, updated_at, state, out_dir, naming_template, sources, settings, "
    "manifest_offset, snapshot_seq"
)


_DAMAGE_MARKERS = ("not a database", "malformed", "corrupt", "encrypted", "disk image")


def _means_damage(exc: sqlite3.DatabaseError) -> bool:
    """Only real damage may send a database to quarantine; "database is locked" (another
    NovelGen holds it) or a full disk must not."""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return False
    return any(marker in str(exc).lower() for marker in _DAMAGE_MARKERS)


def check_database_file(path: Path) -> None:
    """``PRAGMA quick_check`` through a read-only connection.

    Read-only on purpose: when the last read-write connection to a damaged database closes,
    SQLite checkpoints the WAL into the damaged file and deletes the WAL — destroying exactly
    the evidence (and the most recent commits) that quarantine is meant to keep.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if _means_damage(exc):
            raise StoreCorruptError(f"database {path} is damaged: {exc}") from exc
        raise StoreError(f"cannot check database {path}: {exc}") from exc
    finally:
        conn.close()
    _raise_unless_ok(rows, path)


def _raise_unless_ok(rows: list[Any], path: Path) -> None:
    messages = [str(r[0]) for r in rows]
    if messages != ["ok"]:
        raise StoreCorruptError(
            f"database {path} failed its integrity check: {'; '.join(messages[:5])}"
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _job_from_row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state=JobState(row["state"]),
        out_dir=row["out_dir"],
        naming_template=row["naming_template"],
        sources=json.loads(row["sources"]),
        settings=json.loads(row["settings"]),
        manifest_offset=row["manifest_offset"],
        snapshot_seq=row["snapshot_seq"],
    )


def _task_from_row(row: Sequence[Any]) -> TaskRecord:
    """Positional, not by name: a 10,000-task resume reads every row, and sqlite3.Row's
    name lookups were a third of that time."""
    (
        id_, job_id, seq, prompt, planned_path, state, chapter, page, panel, variant,
        priority, characters, style, metadata, source, attempts, failures, not_before,
        last_error_kind, last_error, output_path, sha256, size, done_attempt, finished_at,
        worker_id, queue_rank,
    ) = row  # fmt: skip
    return TaskRecord(
        id=id_,
        job_id=job_id,
        seq=seq,
        prompt=prompt,
        planned_path=planned_path,
        state=TaskState(state),
        chapter=chapter,
        page=page,
        panel=panel,
        variant=variant,
        priority=priority,
        characters=json.loads(characters) if characters != "[]" else [],
        style=style,
        metadata=json.loads(metadata) if metadata != "{}" else {},
        source=source,
        attempts=attempts,
        failures=failures,
        not_before=not_before,
        last_error_kind=last_error_kind,
        last_error=last_error,
        output_path=output_path,
        sha256=sha256,
        size=size,
        done_attempt=done_attempt,
        finished_at=finished_at,
        worker_id=worker_id,
        queue_rank=queue_rank,
    )


TASK_FIELDS = tuple(c.strip() for c in _TASK_COLUMNS.split(","))


def task_values(task: TaskRecord) -> tuple[Any, ...]:
    """A task as the positional values of an INSERT over ``_TASK_COLUMNS``."""
    return (
        task.id,
        task.job_id,
        task.seq,
        task.prompt,
        task.planned_path,
        task.state.value,
        task.chapter,
        task.page,
        task.panel,
        task.variant,
        task.priority,
        _dumps(task.characters),
        task.style,
        _dumps(task.metadata),
        task.source,
        task.attempts,
        task.failures,
        task.not_before,
        task.last_error_kind,
        task.last_error,
        task.output_path,
        task.sha256,
        task.size,
        task.done_attempt,
        task.finished_at,
        task.worker_id,
        task.queue_rank,
    )


class Store:
    """One connection to the database at ``path``.

    Opening runs ``PRAGMA quick_check`` when ``check=True``: a damaged file raises
    :class:`StoreCorruptError` so the caller can quarantine it and rebuild from snapshots.
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if check and path.exists():
            check_database_file(path)
        try:
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:  # pragma: no cover - unusual: unreadable path
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode is durable against process crashes (SIGKILL); only a power
            # loss can drop the last commits, and the image files + manifest cover that.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=30000")
            schema.migrate(self._conn)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _means_damage(exc):
                raise StoreCorruptError(f"database {path} is damaged: {exc}") from exc
            raise StoreError(f"cannot use database {path}: {exc}") from exc
        except StoreError:
            self._conn.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def quick_check(self) -> None:
        """Check the open database (``check_database_file`` checks one before opening)."""
        _raise_unless_ok(self._conn.execute("PRAGMA quick_check").fetchall(), self.path)

    def checkpoint(self) -> None:
        """Fold the WAL back into the main file (on clean shutdown, and as a cleanup step)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # --- jobs -----------------------------------------------------------------------------

    def create_job(self, job: JobRecord, tasks: Sequence[TaskRecord]) -> None:
        """Insert a job and all its tasks atomically: a job is never half-imported."""
        placeholders = ", ".join("?" * len(_TASK_COLUMNS.split(",")))
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    job.name,
                    job.created_at,
                    job.updated_at,
                    job.state.value,
                    job.out_dir,
                    job.naming_template,
                    _dumps(job.sources),
                    _dumps(job.settings),
                    job.manifest_offset,
                    job.snapshot_seq,
                ),
            )
            conn.executemany(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({placeholders})",
                (task_values(t) for t in tasks),
            )

    def next_task_id(self) -> int:
        (value,) = self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM tasks").fetchone()
        return int(value)

    def list_jobs(self) -> list[JobRecord]:
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY created_at DESC"
        ).fetchall()
        return [_job_from_row(r) for r in rows]

    def find_job(self, job_ref: str, *, exact: bool = False) -> JobRecord:
        """Find a job by exact id or (unless ``exact``: programs name jobs by their id) unique
        id prefix; errors list the candidates."""
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_ref,)
        ).fetchone()
        if row is not None:
            return _job_from_row(row)
        if exact:
            raise JobNotFoundError(f"no job has the id {job_ref!r}")
        escaped = job_ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
            (escaped + "%",),
        ).fetchall()
        if len(rows) == 1:
            return _job_from_row(rows[0])
        if not rows:
            known = [j.id for j in self.list_jobs()[:10]]
            hint = f"; known jobs: {', '.join(known)}" if known else "; there are no jobs yet"
            raise JobNotFoundError(f"no job matches {job_ref!r}{hint}")
        ids = ", ".join(r["id"] for r in rows)
        raise JobNotFoundError(f"{job_ref!r} matches several jobs ({ids}); give more of the id")

    def latest_job(self, *, unfinished: bool = False) -> JobRecord | None:
        where = "WHERE state IN ('running', 'paused')" if unfinished else ""
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        return _job_from_row(row) if row else None

    def set_job_state(self, job_id: str, state: JobState) -> None:
        self._conn.execute(
            "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?",
            (state.value, time.time(), job_id),
        )

    def set_job_settings(self, job_id: str, settings: dict[str, Any]) -> None:
        self._conn.execute(
            "UPDATE jobs SET settings = ?, updated_at = ? WHERE id = ?",
            (_dumps(settings), time.time(), job_id),
        )

    def set_snapshot_seq(self, job_id: str, seq: int) -> None:
        self._conn.execute("UPDATE jobs SET snapshot_seq = ? WHERE id = ?", (seq, job_id))

    # --- tasks ----------------------------------------------------------------------------

    def _task_rows(self, job_id: str) -> sqlite3.Cursor:
        cursor = self._conn.cursor()
        cursor.row_factory = None  # plain tuples: several times faster than sqlite3.Row
        return cursor.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE job_id = ? ORDER BY seq", (job_id,)
        )

    def load_task(self, task_id: int) -> TaskRecord | None:
        cursor = self._conn.cursor()
        cursor.row_factory = None
        row = cursor.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        found = row.fetchone()
        return _task_from_row(found) if found is not None else None

    def load_tasks(self, job_id: str) -> list[TaskRecord]:
        return [_task_from_row(r) for r in self._task_rows(job_id)]

    def iter_tasks(self, job_id: str) -> Iterator[TaskRecord]:
        for row in self._task_rows(job_id):
            yield _task_from_row(row)

    def iter_task_dicts(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Tasks as plain JSON-ready dicts (snapshots, exports), without dataclass overhead."""
        for row in self._task_rows(job_id):
            item = dict(zip(TASK_FIELDS, row, strict=True))
            item["characters"] = json.loads(item["characters"])
            item["metadata"] = json.loads(item["metadata"])
            yield item

    def count_by_state(self, job_id: str) -> dict[TaskState, int]:
        rows = self._conn.execute(
            "SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state", (job_id,)
        ).fetchall()
        counts = dict.fromkeys(TaskState, 0)
        for state, count in rows:
            counts[TaskState(state)] = count
        return counts

    def attempt_owner(self, task_id: int, attempt: int) -> tuple[str | None, str] | None:
        """(worker id, job id) of a recorded attempt; None if it was never recorded."""
        row = self._conn.execute(
            "SELECT a.worker_id, t.job_id FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE a.task_id = ? AND a.attempt = ?",
            (task_id, attempt),
        ).fetchone()
        return (row[0], row[1]) if row is not None else None

    def load_attempts(self, task_id: int) -> list[AttemptRecord]:
        rows = self._conn.execute(
            "SELECT task_id, attempt, worker_id, account_id, started_at, ended_at, outcome, "
            "error_kind, error_message, conversation_url, image_id FROM attempts "
            "WHERE task_id = ? ORDER BY attempt",
            (task_id,),
        ).fetchall()
        return [AttemptRecord(*tuple(r)) for r in rows]

    def requeue_leased(self, job_id: str, now: float) -> int:
        """Leases cannot survive a restart of the desktop: put them back in the queue.

        The attempt that held the lease is closed as ``interrupted`` (not a failure of the
        task: the program stopped, the prompt did nothing wrong).
        """
        with self.transaction() as conn:
            conn.execute(
                "UPDATE attempts SET ended_at = ?, outcome = 'interrupted' "
                "WHERE ended_at IS NULL AND task_id IN "
                "(SELECT id FROM tasks WHERE job_id = ?)",
                (now, job_id),
            )
            cursor = conn.execute(
                "UPDATE tasks SET state = 'queued' WHERE job_id = ? AND state = 'leased'",
                (job_id,),
            )
            return cursor.rowcount

    def retry_dead(self, job_id: str, *, include_refused: bool = False) -> int:
        states = ("dead", "refused") if include_refused else ("dead",)
        marks = ",".join("?" * len(states))
        with self.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE tasks SET state = 'queued', failures = 0, not_before = 0 "
                f"WHERE job_id = ? AND state IN ({marks})",
                (job_id, *states),
            )
            if cursor.rowcount:
                conn.execute(
                    "UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ?",
                    (time.time(), job_id),
                )
            return cursor.rowcount

    def cancel_job(self, job_id: str) -> int:
        """Cancel every unfinished task (finished images stay) and the job itself."""
        with self.transaction() as conn:
            now = time.time()
            conn.execute(
                "UPDATE attempts SET ended_at = ?, outcome = 'cancelled' WHERE ended_at IS NULL "
                "AND task_id IN (SELECT id FROM tasks WHERE job_id = ?)",
                (now, job_id),
            )
            cursor = conn.execute(
                "UPDATE tasks SET state = 'cancelled' WHERE job_id = ? "
                "AND state IN ('queued', 'leased')",
                (job_id,),
            )
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE id = ?", (now, job_id)
            )
            return cursor.rowcount

    # --- accounts, events -----------------------------------------------------------------

    def cooldowns(self, now: float) -> dict[str, float]:
        rows = self._conn.execute(
            "SELECT id, cooldown_until FROM accounts WHERE cooldown_until > ?", (now,)
        ).fetchall()
        return {r["id"]: r["cooldown_until"] for r in rows}

    def events(self, job_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT ts, level, kind, worker_id, task_id, message, data FROM events "
            "WHERE job_id = ? ORDER BY id DESC LIMIT ?",
            (job_id, limit),
        ).fetchall()
        return [
            {**dict(r), "data": json.loads(r["data"]) if r["data"] else None}
            for r in reversed(rows)
        ]

    def recent_events(self, *, limit: int = 500) -> list[dict[str, Any]]:
        """The newest events of every job (and of none), oldest first: the desktop's log."""
        rows = self._conn.execute(
            "SELECT ts, job_id, level, kind, worker_id, task_id, message, data FROM events "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {**dict(r), "data": json.loads(r["data"]) if r["data"] else None}
            for r in reversed(rows)
        ]

    def task_progress_rows(
        self, job_id: str, task_ids: Sequence[int] | None = None
    ) -> list[tuple[Any, ...]]:
        """The columns of the task table that change while a job runs, without the prompt
        and JSON fields: (id, state, attempts, failures, priority, queue_rank, seq,
        worker_id, last_error_kind, last_error, output_path, finished_at, duration).
        ``task_ids`` limits it to those tasks (the ones whose live state moved)."""
        sql = (
            "SELECT t.id, t.state, t.attempts, t.failures, t.priority, t.queue_rank, t.seq, "
            "t.worker_id, t.last_error_kind, t.last_error, t.output_path, t.finished_at, "
            "(SELECT a.ended_at - a.started_at FROM attempts a WHERE a.task_id = t.id "
            "AND a.outcome = 'done' AND a.ended_at IS NOT NULL) "
            "FROM tasks t WHERE t.job_id = ?"
        )
        cursor = self._conn.cursor()
        cursor.row_factory = None
        if task_ids is None:
            return cursor.execute(sql, (job_id,)).fetchall()
        rows: list[tuple[Any, ...]] = []
        ids = list(task_ids)
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += cursor.execute(f"{sql} AND t.id IN ({marks})", (job_id, *chunk)).fetchall()
        return rows

    def error_summary(self, job_id: str) -> list[tuple[str, str, int]]:
        """Failed attempts grouped by (kind, message), most frequent first."""
        rows = self._conn.execute(
            "SELECT a.error_kind, COALESCE(a.error_message, ''), COUNT(*) AS n "
            "FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.job_id = ? AND a.error_kind IS NOT NULL "
            "GROUP BY a.error_kind, a.error_message ORDER BY n DESC LIMIT 50",
            (job_id,),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def error_groups(
        self, job_id: str, limit: int = 100, samples: int = 20
    ) -> list[tuple[str, str, int, float | None, list[int]]]:
        """Failed attempts grouped by (kind, message), most frequent first: kind, message,
        count, when the last one ended, and up to ``samples`` task ids (most recent first)."""
        groups = self._conn.execute(
            "SELECT a.error_kind, COALESCE(a.error_message, '') AS msg, COUNT(*) AS n, "
            "MAX(a.ended_at) FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.job_id = ? AND a.error_kind IS NOT NULL "
            "GROUP BY a.error_kind, msg ORDER BY n DESC, a.error_kind LIMIT ?",
            (job_id, limit),
        ).fetchall()
        result = []
        for kind, message, count, last_at in groups:
            ids = [
                r[0]
                for r in self._conn.execute(
                    "SELECT a.task_id FROM attempts a JOIN tasks t ON t.id = a.task_id "
                    "WHERE t.job_id = ? AND a.error_kind = ? "
                    "AND COALESCE(a.error_message, '') = ? "
                    "GROUP BY a.task_id ORDER BY MAX(a.ended_at) DESC LIMIT ?",
                    (job_id, kind, message, samples),
                )
            ]
            result.append((kind, message, count, last_at, ids))
        return result

    def failed_attempts(self, job_id: str) -> int:
        """How many attempts of the job ended with an error (a cheap change marker)."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.job_id = ? AND a.error_kind IS NOT NULL",
            (job_id,),
        ).fetchone()
        return int(row[0])

    # --- batched writes -------------------------------------------------------------------

    def apply(
        self, ops: Iterable[StoreOp], *, manifest_offset: tuple[str, int] | None = None
    ) -> None:
        """Apply a batch of operations in one transaction (one fsync of the WAL)."""
        with self.transaction() as conn:
            for op in ops:
                try:
                    _apply_one(conn, op)
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"refused to record {type(op).__name__}: {exc}") from exc
            if manifest_offset is not None:
                job_id, offset = manifest_offset
                conn.execute("UPDATE jobs SET manifest_offset = ? WHERE id = ?", (offset, job_id))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Escape hatch for tests and tools that read something specific."""
        return self._conn.execute(sql, params)


def _apply_one(conn: sqlite3.Connection, op: StoreOp) -> None:
    match op:
        case AttemptStarted():
            conn.execute(
                "INSERT INTO attempts (task_id, attempt, worker_id, account_id, started_at, "
                "prompt_sent, style_version, variants, flags_version) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    op.task_id,
                    op.attempt,
                    op.worker_id,
                    op.account_id,
                    op.started_at,
                    op.prompt_sent,
                    op.style_version,
                    json.dumps(op.variants, sort_keys=True) if op.variants else None,
                    op.flags_version,
                ),
            )
            conn.execute(
                "UPDATE tasks SET state = 'leased', attempts = MAX(attempts, ?), worker_id = ? "
                "WHERE id = ?",
                (op.attempt, op.worker_id, op.task_id),
            )
        case AttemptEnded():
            # A done attempt is final. A worker that never heard its image was kept (the hub
            # was killed between writing and acknowledging it) sends the same attempt again;
            # the hub rightly drops it as a duplicate, and that verdict must not overwrite the
            # attempt that drew the task's image.
            ended = conn.execute(
                "UPDATE attempts SET ended_at = ?, outcome = ?, error_kind = ?, "
                "error_message = ?, conversation_url = COALESCE(?, conversation_url), "
                "image_id = COALESCE(?, image_id) "
                "WHERE task_id = ? AND attempt = ? AND outcome IS NOT 'done'",
                (
                    op.ended_at,
                    op.outcome,
                    op.error_kind.value if op.error_kind else None,
                    op.error_message,
                    op.conversation_url,
                    op.image_id,
                    op.task_id,
                    op.attempt,
                ),
            )
            if ended.rowcount == 0 and op.outcome == "done":
                # An image adopted after a crash whose attempt start was never committed:
                # record the attempt anyway (start unknown: the end stands in for it), so
                # every done task has its done attempt. What was sent is the task's prompt,
                # fixed at creation, and so is the style bible version it was composed with.
                conn.execute(
                    "INSERT OR IGNORE INTO attempts (task_id, attempt, started_at, ended_at, "
                    "outcome, conversation_url, image_id, prompt_sent, style_version) "
                    "SELECT ?, ?, ?, ?, ?, ?, ?, prompt, "
                    "json_extract(metadata, '$.composition.version') FROM tasks WHERE id = ?",
                    (
                        op.task_id,
                        op.attempt,
                        op.ended_at,
                        op.ended_at,
                        op.outcome,
                        op.conversation_url,
                        op.image_id,
                        op.task_id,
                    ),
                )
        case TaskUpdated():
            conn.execute(
                "UPDATE tasks SET state = ?, failures = ?, not_before = ?, "
                "last_error_kind = COALESCE(?, last_error_kind), "
                "last_error = COALESCE(?, last_error) WHERE id = ? AND state != 'done'",
                (
                    op.state.value,
                    op.failures,
                    op.not_before,
                    op.error_kind.value if op.error_kind else None,
                    op.error,
                    op.task_id,
                ),
            )
        case TaskCompleted():
            cursor = conn.execute(
                "UPDATE tasks SET state = 'done', output_path = ?, sha256 = ?, size = ?, "
                "done_attempt = ?, finished_at = ?, worker_id = ? "
                "WHERE id = ? AND state != 'done'",
                (
                    op.output_path,
                    op.sha256,
                    op.size,
                    op.attempt,
                    op.finished_at,
                    op.worker_id,
                    op.task_id,
                ),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"task {op.task_id} completed twice (attempt {op.attempt})")
        case TaskQueuePlaced():
            conn.execute(
                "UPDATE tasks SET priority = ?, queue_rank = ? WHERE id = ?",
                (op.priority, op.queue_rank, op.task_id),
            )
        case TaskRequeued():
            conn.execute(
                "UPDATE tasks SET state = 'queued', failures = 0, not_before = 0, "
                "prompt = COALESCE(?, prompt) "
                "WHERE id = ? AND state IN ('dead', 'refused', 'cancelled')",
                (op.prompt, op.task_id),
            )
        case JobUpdated():
            conn.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?",
                (op.state.value, time.time(), op.job_id),
            )
        case AccountCooldown():
            conn.execute(
                "INSERT INTO accounts (id, cooldown_until, reason) VALUES (?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET "
                "cooldown_until = MAX(cooldown_until, excluded.cooldown_until), "
                "reason = excluded.reason",
                (op.account_id, op.until, op.reason),
            )
        case WorkerSeen():
            conn.execute(
                "INSERT INTO workers (id, account_id, kind, first_seen, last_seen, info) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "account_id = excluded.account_id, last_seen = excluded.last_seen, "
                "info = excluded.info",
                (op.worker_id, op.account_id, op.kind, op.seen_at, op.seen_at, _dumps(op.info)),
            )
        case EventLogged():
            conn.execute(
                "INSERT INTO events (ts, job_id, level, kind, worker_id, task_id, message, data) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    op.ts,
                    op.job_id,
                    op.level,
                    op.kind,
                    op.worker_id,
                    op.task_id,
                    op.message,
                    _dumps(op.data) if op.data is not None else None,
                ),
            )
        case TaskReplaced():
            conn.execute(
                "UPDATE attempts SET outcome = 'replaced' WHERE task_id = ? AND outcome = 'done'",
                (op.task_id,),
            )
            cursor = conn.execute(
                "UPDATE tasks SET state = 'queued', failures = 0, not_before = 0, "
                "output_path = NULL, sha256 = NULL, size = NULL, done_attempt = NULL, "
                "finished_at = NULL WHERE id = ? AND state = 'done'",
                (op.task_id,),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"task {op.task_id} is not done: there is no image to replace")
