"""Fixtures shared by the store tests: a fresh database and small record factories."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.engine.model import JobState
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import JobRecord, TaskRecord

JobFactory = Callable[..., tuple[JobRecord, list[TaskRecord]]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "novelgen.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store(db_path)
    try:
        yield opened
    finally:
        opened.close()


def make_job_record(job_id: str, *, created_at: float = 1000.0, **overrides: Any) -> JobRecord:
    fields: dict[str, Any] = {
        "id": job_id,
        "name": f"Job {job_id}",
        "created_at": created_at,
        "updated_at": created_at,
        "state": JobState.RUNNING,
        "out_dir": f"/out/{job_id}",
        "naming_template": "{seq:05d}.png",
    }
    fields.update(overrides)
    return JobRecord(**fields)


def make_task_records(job_id: str, first_id: int, count: int) -> list[TaskRecord]:
    return [
        TaskRecord(
            id=first_id + i,
            job_id=job_id,
            seq=i + 1,
            prompt=f"panel {i + 1} of {job_id}",
            planned_path=f"{i + 1:05d}.png",
        )
        for i in range(count)
    ]


@pytest.fixture
def new_job(store: Store) -> JobFactory:
    """``new_job("abc", tasks=3)`` inserts a job with ``tasks`` queued tasks."""
    created = [0.0]

    def factory(
        job_id: str, *, tasks: int = 3, **overrides: Any
    ) -> tuple[JobRecord, list[TaskRecord]]:
        created[0] += 1
        overrides.setdefault("created_at", 1000.0 + created[0])
        job = make_job_record(job_id, **overrides)
        records = make_task_records(job_id, store.next_task_id(), tasks)
        store.create_job(job, records)
        return job, records

    return factory


def table_rows(store: Store) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of every table, to diff a database before and after an operation."""
    names = [
        r[0]
        for r in store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    ]
    return {name: {tuple(r) for r in store.execute(f"SELECT * FROM {name}")} for name in names}


@pytest.fixture
def snapshot_tables() -> Callable[[Store], dict[str, set[tuple[Any, ...]]]]:
    return table_rows


def raw_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture
def raw_db() -> Callable[[Path], sqlite3.Connection]:
    """A plain sqlite3 connection (autocommit), for writing behind the Store's back."""
    return raw_connect
