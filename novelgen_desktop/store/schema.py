"""SQLite schema and its migrations.

The schema version lives in ``PRAGMA user_version``. Each migration moves the database one
version forward inside one transaction, so a crash mid-migration leaves the old version intact.
A database written by a newer NovelGen is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from novelgen_desktop.errors import StoreError

_V1 = """
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    state           TEXT NOT NULL,
    out_dir         TEXT NOT NULL,
    naming_template TEXT NOT NULL,
    sources         TEXT NOT NULL DEFAULT '[]',
    settings        TEXT NOT NULL DEFAULT '{}',
    -- Byte length of manifest.jsonl that this database already reflects; rows past it were
    -- written before a crash and are reconciled on resume.
    manifest_offset INTEGER NOT NULL DEFAULT 0,
    snapshot_seq    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    chapter       TEXT,
    page          INTEGER,
    panel         INTEGER,
    variant       INTEGER NOT NULL DEFAULT 1,
    priority      INTEGER NOT NULL DEFAULT 0,
    prompt        TEXT NOT NULL,
    characters    TEXT NOT NULL DEFAULT '[]',
    style         TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    source        TEXT,
    planned_path  TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    not_before    REAL NOT NULL DEFAULT 0,
    last_error_kind TEXT,
    last_error    TEXT,
    output_path   TEXT,
    sha256        TEXT,
    size          INTEGER,
    done_attempt  INTEGER,
    finished_at   REAL,
    worker_id     TEXT,
    UNIQUE (job_id, seq)
);
CREATE INDEX tasks_by_job_state ON tasks (job_id, state);
-- One file per task, enforced by the database itself.
CREATE UNIQUE INDEX tasks_one_file ON tasks (job_id, output_path) WHERE output_path IS NOT NULL;

CREATE TABLE attempts (
    task_id          INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    worker_id        TEXT,
    account_id       TEXT,
    started_at       REAL NOT NULL,
    ended_at         REAL,
    outcome          TEXT,
    error_kind       TEXT,
    error_message    TEXT,
    conversation_url TEXT,
    image_id         TEXT,
    prompt_sent      TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;
-- At most one successful attempt per task: a duplicate result cannot become a second `done`.
CREATE UNIQUE INDEX attempts_one_done ON attempts (task_id) WHERE outcome = 'done';

CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    account_id TEXT,
    kind       TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    info       TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    cooldown_until REAL NOT NULL DEFAULT 0,
    reason         TEXT
);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    ts        REAL NOT NULL,
    job_id    TEXT,
    level     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    worker_id TEXT,
    task_id   INTEGER,
    message   TEXT NOT NULL,
    data      TEXT
);
CREATE INDEX events_by_job ON events (job_id, id);
"""


def _statements(script: str) -> list[str]:
    """Split a script into statements the way SQLite does (semicolons in comments are fine)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in schema: {current.strip()[:60]}")
    return statements


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    for statement in _statements(_V1):
        conn.execute(statement)


def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    """The author's queue order (move to top/up/down/bottom): NULL keeps script order."""
    conn.execute("ALTER TABLE tasks ADD COLUMN queue_rank REAL")


def _migrate_to_v3(conn: sqlite3.Connection) -> None:
    """The style bible version each attempt was composed with (NULL: no bible)."""
    conn.execute("ALTER TABLE attempts ADD COLUMN style_version TEXT")


def _migrate_to_v4(conn: sqlite3.Connection) -> None:
    """Feature flags: the experiment variants each attempt ran under (JSON object flag →
    variant, NULL: none) and the flag set's version, so variants can be compared afterwards."""
    conn.execute("ALTER TABLE attempts ADD COLUMN variants TEXT")
    conn.execute("ALTER TABLE attempts ADD COLUMN flags_version INTEGER")


def _migrate_to_v5(conn: sqlite3.Connection) -> None:
    """Repair the attempts that a duplicate verdict overwrote. Before this version, a worker
    that resent the image of an attempt already kept (the hub was killed between writing and
    acknowledging it) had that attempt's ``done`` replaced by ``duplicate``, leaving a done
    task without its done attempt, missing from every attempt-based figure (flag reports,
    per-worker counts). The task's ``done_attempt`` and ``finished_at`` say which attempt drew
    the image and when."""
    conn.execute(
        "UPDATE attempts SET outcome = 'done', ended_at = ("
        "  SELECT finished_at FROM tasks WHERE tasks.id = attempts.task_id) "
        "WHERE outcome = 'duplicate' AND EXISTS ("
        "  SELECT 1 FROM tasks t WHERE t.id = attempts.task_id AND t.state = 'done' "
        "  AND t.done_attempt = attempts.attempt AND t.finished_at IS NOT NULL) "
        "AND NOT EXISTS ("
        "  SELECT 1 FROM attempts d WHERE d.task_id = attempts.task_id AND d.outcome = 'done')"
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_to_v1,
    _migrate_to_v2,
    _migrate_to_v3,
    _migrate_to_v4,
    _migrate_to_v5,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` to :data:`SCHEMA_VERSION`; return the version it started at."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {current}, newer than this NovelGen understands "
            f"({SCHEMA_VERSION}); upgrade NovelGen or use another --data-dir"
        )
    for version in range(current, SCHEMA_VERSION):
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return int(current)
