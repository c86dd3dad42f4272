"""Checks shared by the end-to-end tests: the invariants a finished job must satisfy."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

from novelgen_desktop.output.imagecheck import inspect_image
from novelgen_desktop.output.writer import sha256_file

TEMP_SUFFIX = ".tmp"


def job_ids(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "novelgen.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY created_at")]


def assert_job_complete_and_consistent(data_dir: Path, job_id: str, expected_tasks: int) -> None:
    """Every task done exactly once, one valid file per task, manifest == DB, no temp files."""
    conn = sqlite3.connect(data_dir / "novelgen.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        (out_dir,) = conn.execute("SELECT out_dir FROM jobs WHERE id = ?", (job_id,)).fetchone()
        tasks = conn.execute(
            "SELECT id, state, output_path, sha256, size FROM tasks WHERE job_id = ?", (job_id,)
        ).fetchall()
        done_attempts = conn.execute(
            "SELECT a.task_id, COUNT(*) FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.job_id = ? AND a.outcome = 'done' GROUP BY a.task_id",
            (job_id,),
        ).fetchall()
    finally:
        conn.close()
    out = Path(out_dir)
    assert len(tasks) == expected_tasks
    states = Counter(t["state"] for t in tasks)
    assert states == {"done": expected_tasks}, states
    # Every done task has exactly one done attempt: none lost to a later verdict on the
    # same attempt, none recorded twice (the unique index also forbids that).
    assert dict(done_attempts) == {t["id"]: 1 for t in tasks}

    # Exactly one image file per task, each the recorded one, each a real image.
    images = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name != "manifest.jsonl"
    )
    temp = [p for p in images if p.endswith(TEMP_SUFFIX)]
    assert temp == [], f"temp files left: {temp[:5]}"
    recorded = sorted(t["output_path"] for t in tasks)
    assert images == recorded
    for task in tasks:
        path = out / task["output_path"]
        assert sha256_file(path) == task["sha256"]
        assert path.stat().st_size == task["size"]
        inspect_image(path.read_bytes())

    # The manifest has exactly one row per task, agreeing with the database.
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    by_task = Counter(r["task"] for r in rows)
    assert len(rows) == expected_tasks, f"{len(rows)} manifest rows"
    assert set(by_task.values()) == {1}
    db = {t["id"]: (t["output_path"], t["sha256"]) for t in tasks}
    assert {r["task"]: (r["file"], r["sha256"]) for r in rows} == db
