"""The schema: versioned migrations, WAL mode, and the unique indexes that back the
"never write an image twice" promise at the database level."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.errors import StoreCorruptError, StoreError
from novelgen_desktop.store import schema
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import (
    AttemptEnded,
    AttemptStarted,
    EventLogged,
    JobRecord,
    TaskCompleted,
    TaskRecord,
)

JobFactory = Callable[..., tuple[JobRecord, list[TaskRecord]]]
Connect = Callable[[Path], sqlite3.Connection]

EXPECTED_TABLES = {"jobs", "tasks", "attempts", "workers", "accounts", "events"}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_schema_version_matches_migrations() -> None:
    assert schema.SCHEMA_VERSION == len(schema.MIGRATIONS) >= 1


def test_fresh_database_is_migrated_to_current_version_in_wal_mode(db_path: Path) -> None:
    Store(db_path).close()
    assert db_path.is_file()
    assert user_version(db_path) == schema.SCHEMA_VERSION
    conn = sqlite3.connect(db_path)
    try:
        # journal_mode=WAL is persistent: a plain connection sees it without asking for it.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert tables >= EXPECTED_TABLES


def test_open_store_connection_uses_wal_and_foreign_keys(store: Store) -> None:
    assert store.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopening_does_not_migrate_again(
    db_path: Path, new_job: JobFactory, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_job("keep-me", tasks=2)
    store.close()

    def explode(conn: sqlite3.Connection) -> None:
        raise AssertionError("a migration ran on an up-to-date database")

    monkeypatch.setattr(schema, "MIGRATIONS", (explode,) * schema.SCHEMA_VERSION)
    with Store(db_path) as reopened:
        assert [j.id for j in reopened.list_jobs()] == ["keep-me"]
        assert len(reopened.load_tasks("keep-me")) == 2
    assert user_version(db_path) == schema.SCHEMA_VERSION


def test_migrate_reports_the_version_it_started_at(db_path: Path, raw_db: Connect) -> None:
    db_path.parent.mkdir(parents=True)
    conn = raw_db(db_path)
    try:
        assert schema.migrate(conn) == 0
        assert schema.migrate(conn) == schema.SCHEMA_VERSION
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    finally:
        conn.close()


@pytest.mark.parametrize("ahead", [1, 7])
def test_newer_database_is_refused_not_touched(db_path: Path, raw_db: Connect, ahead: int) -> None:
    Store(db_path).close()
    newer = schema.SCHEMA_VERSION + ahead
    conn = raw_db(db_path)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()

    with pytest.raises(StoreError, match="newer") as info:
        Store(db_path)
    # Refused, not "damaged": a newer database must never be quarantined.
    assert not isinstance(info.value, StoreCorruptError)
    assert str(newer) in str(info.value)
    assert user_version(db_path) == newer


def test_failed_migration_leaves_the_old_version_intact(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(db_path).close()
    before = user_version(db_path)

    def half_done_v2(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise sqlite3.OperationalError("simulated failure in the middle of a migration")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, half_done_v2))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with pytest.raises(StoreError):
        Store(db_path)

    assert user_version(db_path) == before
    with sqlite3.connect(db_path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names


def test_statement_splitter_rejects_an_incomplete_script() -> None:
    script = "CREATE TABLE a (x);\n-- a; comment\nCREATE TABLE b (y);\n"
    statements = schema._statements(script)
    assert len(statements) == 2
    assert statements[0] == "CREATE TABLE a (x);"
    assert statements[1].endswith("CREATE TABLE b (y);")
    with pytest.raises(ValueError, match="incomplete"):
        schema._statements("CREATE TABLE a (x);\nCREATE TABLE b (y")


# --- the unique indexes, written to directly ------------------------------------------------


def _insert_attempt(store: Store, task_id: int, attempt: int, outcome: str | None) -> None:
    store.execute(
        "INSERT INTO attempts (task_id, attempt, started_at, outcome) VALUES (?,?,?,?)",
        (task_id, attempt, 1.0, outcome),
    )


def test_one_done_attempt_per_task_is_enforced(store: Store, new_job: JobFactory) -> None:
    _job, tasks = new_job("j", tasks=2)
    first, second = tasks[0].id, tasks[1].id
    _insert_attempt(store, first, 1, "failed")
    _insert_attempt(store, first, 2, "failed")
    _insert_attempt(store, first, 3, "done")
    _insert_attempt(store, second, 1, "done")  # another task may have its own done attempt
    with pytest.raises(sqlite3.IntegrityError):
        _insert_attempt(store, first, 4, "done")
    # ... and an existing attempt cannot be turned into a second "done" either.
    with pytest.raises(sqlite3.IntegrityError):
        store.execute(
            "UPDATE attempts SET outcome = 'done' WHERE task_id = ? AND attempt = 1", (first,)
        )
    outcomes = store.execute(
        "SELECT attempt, outcome FROM attempts WHERE task_id = ? ORDER BY attempt", (first,)
    ).fetchall()
    assert [tuple(r) for r in outcomes] == [(1, "failed"), (2, "failed"), (3, "done")]


def test_one_output_path_per_job_is_enforced(store: Store, new_job: JobFactory) -> None:
    _a, a_tasks = new_job("a", tasks=3)
    _b, b_tasks = new_job("b", tasks=1)
    set_path = "UPDATE tasks SET output_path = ? WHERE id = ?"
    store.execute(set_path, ("1/001-01.png", a_tasks[0].id))
    # The same relative path in another job is a different file: allowed.
    store.execute(set_path, ("1/001-01.png", b_tasks[0].id))
    with pytest.raises(sqlite3.IntegrityError):
        store.execute(set_path, ("1/001-01.png", a_tasks[1].id))
    # NULL output paths (tasks not done yet) never collide.
    assert (
        store.execute(
            "SELECT COUNT(*) FROM tasks WHERE job_id = 'a' AND output_path IS NULL"
        ).fetchone()[0]
        == 2
    )


def test_one_seq_per_job_is_enforced(store: Store, new_job: JobFactory) -> None:
    _job, tasks = new_job("j", tasks=2)
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("UPDATE tasks SET seq = ? WHERE id = ?", (tasks[0].seq, tasks[1].id))


def test_tasks_must_belong_to_an_existing_job(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.execute(
            "INSERT INTO tasks (job_id, seq, prompt, planned_path, state) VALUES (?,?,?,?,?)",
            ("no-such-job", 1, "p", "x.png", "queued"),
        )


# --- the same indexes, reached through apply() ----------------------------------------------


def _completed(task_id: int, path: str, attempt: int = 1) -> TaskCompleted:
    return TaskCompleted(task_id, attempt, path, "ab" * 32, 10, 5.0, "w1", {})


def test_apply_cannot_give_two_tasks_the_same_file(store: Store, new_job: JobFactory) -> None:
    _job, tasks = new_job("j", tasks=2)
    store.apply([_completed(tasks[0].id, "same.png")])
    with pytest.raises((sqlite3.IntegrityError, StoreError)):
        store.apply(
            [
                EventLogged(1.0, "info", "marker", "must be rolled back", job_id="j"),
                _completed(tasks[1].id, "same.png"),
            ],
            manifest_offset=("j", 999),
        )
    loaded = {t.id: t for t in store.load_tasks("j")}
    assert loaded[tasks[1].id].state is TaskState.QUEUED
    assert loaded[tasks[1].id].output_path is None
    assert store.events("j") == []
    assert store.find_job("j").manifest_offset == 0


def test_apply_cannot_record_two_done_attempts(store: Store, new_job: JobFactory) -> None:
    _job, tasks = new_job("j", tasks=1)
    task_id = tasks[0].id
    store.apply(
        [
            AttemptStarted(task_id, 1, "w1", "acc", 1.0),
            AttemptStarted(task_id, 2, "w2", "acc", 2.0),
            AttemptEnded(task_id, 1, 3.0, "done"),
        ]
    )
    with pytest.raises((sqlite3.IntegrityError, StoreError)):
        store.apply([AttemptEnded(task_id, 2, 4.0, "done")])
    outcomes = [a.outcome for a in store.load_attempts(task_id)]
    assert outcomes == ["done", None]


def test_a_version_1_database_gains_the_queue_order_and_keeps_its_tasks(tmp_path: Path) -> None:
    """Databases made before the author could reorder the queue open with script order."""
    db_path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(db_path)
    schema.MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs (id, name, created_at, updated_at, state, out_dir, naming_template) "
        "VALUES ('j', 'old', 0, 0, 'running', '/tmp/out', '{seq}')"
    )
    conn.execute(
        "INSERT INTO tasks (id, job_id, seq, prompt, planned_path, state) "
        "VALUES (1, 'j', 1, 'a fox', '0001.png', 'queued')"
    )
    conn.commit()
    conn.close()
    with Store(db_path) as store:
        (task,) = store.load_tasks("j")
    assert task.prompt == "a fox" and task.queue_rank is None
    assert user_version(db_path) == schema.SCHEMA_VERSION >= 2


def test_version_5_gives_back_the_done_attempts_a_duplicate_verdict_overwrote(
    tmp_path: Path,
) -> None:
    """Task 1's attempt 2 drew its image, then a resent copy of it was recorded over it as a
    duplicate: repaired, with the task's finish time. Task 2's duplicate is a different
    attempt from the one that drew its image, and task 3 is not done: both stay as they were."""
    db_path = tmp_path / "v4.sqlite"
    conn = sqlite3.connect(db_path)
    for migration in schema.MIGRATIONS[:4]:
        migration(conn)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(
        "INSERT INTO jobs (id, name, created_at, updated_at, state, out_dir, naming_template) "
        "VALUES ('j', 'old', 0, 0, 'finished', '/tmp/out', '{seq}')"
    )
    conn.executemany(
        "INSERT INTO tasks (id, job_id, seq, prompt, planned_path, state, output_path, "
        "done_attempt, finished_at) VALUES (?, 'j', ?, 'p', ?, ?, ?, ?, ?)",
        [
            (1, 1, "1.png", "done", "1.png", 2, 50.0),
            (2, 2, "2.png", "done", "2.png", 1, 60.0),
            (3, 3, "3.png", "queued", None, None, None),
        ],
    )
    conn.executemany(
        "INSERT INTO attempts (task_id, attempt, started_at, ended_at, outcome) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (1, 1, 10.0, 20.0, "timeout"),
            (1, 2, 30.0, 90.0, "duplicate"),  # was done at 50.0
            (2, 1, 40.0, 60.0, "done"),
            (2, 2, 41.0, 70.0, "duplicate"),  # a real second image, rightly not kept
            (3, 1, 40.0, 80.0, "duplicate"),
        ],
    )
    conn.commit()
    conn.close()
    with Store(db_path):
        pass
    assert user_version(db_path) == schema.SCHEMA_VERSION >= 5
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT task_id, attempt, ended_at, outcome FROM attempts ORDER BY task_id, attempt"
        ).fetchall()
    assert rows == [
        (1, 1, 20.0, "timeout"),
        (1, 2, 50.0, "done"),
        (2, 1, 60.0, "done"),
        (2, 2, 70.0, "duplicate"),
        (3, 1, 80.0, "duplicate"),
    ]
