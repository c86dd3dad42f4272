"""The Store: atomic job creation, job lookup, batched writes, and telling damage from
ordinary trouble (a lock) when a database is opened."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.engine.model import ErrorKind, JobState, TaskState
from novelgen_desktop.errors import JobNotFoundError, StoreCorruptError, StoreError
from novelgen_desktop.store import database
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import (
    AccountCooldown,
    AttemptEnded,
    AttemptStarted,
    EventLogged,
    JobRecord,
    JobUpdated,
    StoreOp,
    TaskCompleted,
    TaskRecord,
    TaskUpdated,
    WorkerSeen,
)

JobFactory = Callable[..., tuple[JobRecord, list[TaskRecord]]]
Tables = dict[str, set[tuple[Any, ...]]]
Dump = Callable[[Store], Tables]

SHA = "0123456789abcdef" * 4


def diff(before: Tables, after: Tables) -> dict[str, tuple[set[Any], set[Any]]]:
    """Per table: (rows removed, rows added). Tables without changes are left out."""
    out = {}
    for name in before.keys() | after.keys():
        removed = before.get(name, set()) - after.get(name, set())
        added = after.get(name, set()) - before.get(name, set())
        if removed or added:
            out[name] = (removed, added)
    return out


def task_row(store: Store, task_id: int) -> sqlite3.Row:
    row = store.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    assert row is not None
    return row


def attempt_row(store: Store, task_id: int, attempt: int) -> sqlite3.Row:
    row = store.execute(
        "SELECT * FROM attempts WHERE task_id = ? AND attempt = ?", (task_id, attempt)
    ).fetchone()
    assert row is not None
    return row


# --- create_job -------------------------------------------------------------------------------


def test_create_job_round_trips_job_and_tasks(store: Store) -> None:
    job = JobRecord(
        id="round-trip",
        name="Le phare — épisode 1",
        created_at=1.5,
        updated_at=2.5,
        state=JobState.PAUSED,
        out_dir="/tmp/out/round-trip",
        naming_template="{chapter}/{page:03d}.png",
        sources=["a.md", "b.csv"],
        settings={"workers": 3, "nested": {"x": [1, 2]}},
        manifest_offset=17,
        snapshot_seq=4,
    )
    tasks = [
        TaskRecord(
            id=10,
            job_id="round-trip",
            seq=1,
            prompt="Ein Leuchtturm 🌊 at dusk",
            planned_path="1/001.png",
            chapter="Prologue",
            page=1,
            panel=2,
            variant=2,
            priority=-3,
            characters=["Ada", "Zoë"],
            style="ink",
            metadata={"caption": "Wind.", "sfx": ["WHOOSH"]},
            source="a.md:3",
        ),
        TaskRecord(id=11, job_id="round-trip", seq=2, prompt="plain", planned_path="00002.png"),
    ]
    store.create_job(job, tasks)
    assert store.find_job("round-trip") == job
    assert store.load_tasks("round-trip") == tasks
    assert list(store.iter_tasks("round-trip")) == tasks
    assert store.next_task_id() == 12


def test_create_job_is_atomic_when_a_task_row_is_rejected(store: Store) -> None:
    job = JobRecord("half", "Half", 1.0, 1.0, JobState.RUNNING, "/out", "{seq:05d}.png")
    tasks = [
        TaskRecord(id=1, job_id="half", seq=1, prompt="a", planned_path="1.png"),
        TaskRecord(id=2, job_id="half", seq=2, prompt="b", planned_path="2.png"),
        TaskRecord(id=3, job_id="half", seq=2, prompt="c", planned_path="3.png"),  # dup seq
    ]
    with pytest.raises(sqlite3.IntegrityError):
        store.create_job(job, tasks)
    assert store.list_jobs() == []
    assert store.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0
    with pytest.raises(JobNotFoundError):
        store.find_job("half")
    # The store is still usable afterwards (no transaction left open).
    store.create_job(job, tasks[:2])
    assert [t.id for t in store.load_tasks("half")] == [1, 2]


def test_create_job_with_an_existing_id_changes_nothing(
    store: Store, new_job: JobFactory, snapshot_tables: Dump
) -> None:
    new_job("dup", tasks=2)
    before = snapshot_tables(store)
    job = JobRecord("dup", "Other", 5.0, 5.0, JobState.RUNNING, "/elsewhere", "{seq:05d}.png")
    with pytest.raises(sqlite3.IntegrityError):
        store.create_job(
            job, [TaskRecord(id=99, job_id="dup", seq=9, prompt="x", planned_path="x.png")]
        )
    assert snapshot_tables(store) == before


def test_list_and_latest_job(store: Store, new_job: JobFactory) -> None:
    new_job("old", state=JobState.FINISHED)
    new_job("mid", state=JobState.PAUSED)
    new_job("new", state=JobState.FINISHED)
    assert [j.id for j in store.list_jobs()] == ["new", "mid", "old"]
    latest = store.latest_job()
    assert latest is not None and latest.id == "new"
    unfinished = store.latest_job(unfinished=True)
    assert unfinished is not None and unfinished.id == "mid"


# --- find_job ---------------------------------------------------------------------------------


def test_find_job_exact_and_unique_prefix(store: Store, new_job: JobFactory) -> None:
    new_job("lighthouse-20261123-7f3a")
    new_job("harbour-20261123-0b1c")
    assert store.find_job("lighthouse-20261123-7f3a").id == "lighthouse-20261123-7f3a"
    assert store.find_job("light").id == "lighthouse-20261123-7f3a"
    assert store.find_job("h").id == "harbour-20261123-0b1c"


def test_find_job_exact_id_wins_over_a_longer_match(store: Store, new_job: JobFactory) -> None:
    new_job("abc")
    new_job("abc-2")
    assert store.find_job("abc").id == "abc"
    assert store.find_job("abc-").id == "abc-2"


def test_find_job_ambiguous_prefix_lists_the_candidates(store: Store, new_job: JobFactory) -> None:
    new_job("story-20261123-aaaa")
    new_job("story-20261123-bbbb")
    new_job("other-20261123-cccc")
    with pytest.raises(JobNotFoundError) as info:
        store.find_job("story")
    message = str(info.value)
    assert "story-20261123-aaaa" in message
    assert "story-20261123-bbbb" in message
    assert "other-20261123-cccc" not in message
    assert "several" in message


def test_find_job_unknown_lists_known_jobs(store: Store, new_job: JobFactory) -> None:
    new_job("alpha-1")
    new_job("beta-2")
    with pytest.raises(JobNotFoundError) as info:
        store.find_job("gamma")
    message = str(info.value)
    assert "'gamma'" in message
    assert "alpha-1" in message and "beta-2" in message


def test_find_job_with_no_jobs_says_so(store: Store) -> None:
    with pytest.raises(JobNotFoundError, match="no jobs yet"):
        store.find_job("anything")


@pytest.mark.parametrize("pattern", ["a_c", "a%", "%", "_", "a\\"])
def test_find_job_treats_like_wildcards_literally(
    store: Store, new_job: JobFactory, pattern: str
) -> None:
    new_job("abc-1")
    new_job("a-bc-2")
    with pytest.raises(JobNotFoundError):
        store.find_job(pattern)


def test_find_job_matches_literal_underscore_prefix(store: Store, new_job: JobFactory) -> None:
    new_job("a_c-1")
    new_job("abc-1")
    assert store.find_job("a_").id == "a_c-1"


# --- apply: each operation changes exactly what it should ------------------------------------


def test_apply_attempt_started(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    _job, tasks = new_job("j", tasks=2)
    task = tasks[0]
    before = snapshot_tables(store)
    store.apply(
        [
            AttemptStarted(
                task.id,
                1,
                "w1",
                "acc1",
                10.0,
                prompt_sent="sent",
                style_version="3+ab",
                variants={"fresh_chat": "control"},
                flags_version=7,
            )
        ]
    )
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"attempts", "tasks"}
    removed, added = changes["attempts"]
    assert removed == set() and len(added) == 1
    row = attempt_row(store, task.id, 1)
    assert dict(row) == {
        "task_id": task.id,
        "attempt": 1,
        "worker_id": "w1",
        "account_id": "acc1",
        "started_at": 10.0,
        "ended_at": None,
        "outcome": None,
        "error_kind": None,
        "error_message": None,
        "conversation_url": None,
        "image_id": None,
        "prompt_sent": "sent",
        "style_version": "3+ab",
        "variants": '{"fresh_chat": "control"}',
        "flags_version": 7,
    }
    removed, added = changes["tasks"]
    assert len(removed) == len(added) == 1  # only this task
    loaded = store.load_tasks("j")
    assert loaded[0].state is TaskState.LEASED
    assert loaded[0].attempts == 1
    assert loaded[0].worker_id == "w1"
    assert loaded[1] == tasks[1]


def test_apply_attempt_started_never_lowers_the_attempt_count(
    store: Store, new_job: JobFactory
) -> None:
    _job, tasks = new_job("j", tasks=1)
    task_id = tasks[0].id
    store.apply([AttemptStarted(task_id, 3, "w1", "a", 1.0)])
    store.apply([AttemptStarted(task_id, 2, "w2", "a", 2.0)])  # a late, out-of-order start
    assert store.load_tasks("j")[0].attempts == 3


def test_apply_attempt_ended(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    _job, tasks = new_job("j", tasks=1)
    task_id = tasks[0].id
    store.apply(
        [
            AttemptStarted(task_id, 1, "w1", "a", 1.0),
            AttemptEnded(task_id, 1, 1.5, "failed", conversation_url="https://c/1"),
        ]
    )
    store.apply([AttemptStarted(task_id, 2, "w1", "a", 2.0)])
    before = snapshot_tables(store)
    store.apply(
        [
            AttemptEnded(
                task_id, 1, 3.0, "failed", ErrorKind.TIMEOUT, "took too long", image_id="img"
            )
        ]
    )
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"attempts"}
    row = attempt_row(store, task_id, 1)
    assert row["ended_at"] == 3.0
    assert row["outcome"] == "failed"
    assert row["error_kind"] == "timeout"
    assert row["error_message"] == "took too long"
    assert row["conversation_url"] == "https://c/1"  # kept: the op did not carry one
    assert row["image_id"] == "img"
    assert attempt_row(store, task_id, 2)["ended_at"] is None
    assert store.load_tasks("j")[0].state is TaskState.LEASED  # tasks are not touched


def test_a_done_attempt_is_final(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    """A worker that never heard its image was kept sends the same attempt again after the
    hub's restart; the hub drops it as a duplicate, and that verdict (or any later ending of
    the attempt) leaves the attempt that drew the image done. Other attempts still end."""
    _job, tasks = new_job("j", tasks=1)
    task_id = tasks[0].id
    store.apply(
        [
            AttemptStarted(task_id, 1, "w1", "a", 1.0),
            AttemptStarted(task_id, 2, "w2", "a", 1.5),
            AttemptEnded(task_id, 1, 2.0, "done", image_id="img"),
            TaskCompleted(task_id, 1, "00001.png", SHA, 11, 2.0, "w1", {}),
        ]
    )
    before = snapshot_tables(store)
    store.apply([AttemptEnded(task_id, 1, 5.0, "duplicate", image_id="other")])
    store.apply([AttemptEnded(task_id, 1, 6.0, "failed", ErrorKind.TIMEOUT, "late")])
    store.apply([AttemptEnded(task_id, 1, 7.0, "done")])  # the same image, adopted again
    assert snapshot_tables(store) == before
    store.apply([AttemptEnded(task_id, 2, 8.0, "superseded")])
    assert attempt_row(store, task_id, 2)["outcome"] == "superseded"
    row = attempt_row(store, task_id, 1)
    assert (row["ended_at"], row["outcome"], row["image_id"]) == (2.0, "done", "img")


def test_a_done_attempt_whose_start_was_never_committed_is_recorded(
    store: Store, new_job: JobFactory
) -> None:
    """Recovery adopts an image that a killed run wrote before its AttemptStarted committed:
    the done attempt is recorded anyway; a failure of such an attempt is not invented."""
    _job, tasks = new_job("j", tasks=2)
    store.apply([AttemptEnded(tasks[0].id, 1, 7.0, "done", image_id="img")])
    store.apply([AttemptEnded(tasks[1].id, 1, 7.0, "failed", ErrorKind.TIMEOUT, "slow")])
    row = attempt_row(store, tasks[0].id, 1)
    assert (row["started_at"], row["ended_at"], row["outcome"]) == (7.0, 7.0, "done")
    assert row["image_id"] == "img" and row["worker_id"] is None
    assert row["prompt_sent"] == tasks[0].prompt and row["style_version"] is None
    assert store.load_attempts(tasks[1].id) == []


def test_an_adopted_attempt_of_a_composed_task_records_its_prompt_and_bible_version(
    store: Store,
) -> None:
    """What the lost AttemptStarted would have said: the task's (composed) prompt and the
    style bible version it was composed with."""
    from tests.store.conftest import make_job_record, make_task_records

    [task] = make_task_records("styled", store.next_task_id(), 1)
    task.prompt = "Maren waits.\n\nCharacters:\n- Maren: a woman of 24"
    task.metadata = {"composition": {"version": "3+0123456789ab", "description": "x"}}
    store.create_job(make_job_record("styled"), [task])
    store.apply([AttemptEnded(task.id, 2, 9.0, "done")])
    row = attempt_row(store, task.id, 2)
    assert (row["prompt_sent"], row["style_version"]) == (task.prompt, "3+0123456789ab")


def test_apply_task_updated(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    _job, tasks = new_job("j", tasks=2)
    task_id = tasks[0].id
    store.apply([TaskUpdated(task_id, TaskState.QUEUED, 1, 50.0, ErrorKind.NETWORK, "reset")])
    before = snapshot_tables(store)
    store.apply([TaskUpdated(task_id, TaskState.DEAD, 5, 0.0)])
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"tasks"}
    assert len(changes["tasks"][1]) == 1
    task = store.load_tasks("j")[0]
    assert task.state is TaskState.DEAD
    assert task.failures == 5
    assert task.not_before == 0.0
    # An update without an error keeps the last one (it still explains why the task died).
    assert task.last_error_kind == "network"
    assert task.last_error == "reset"
    assert store.load_tasks("j")[1] == tasks[1]


def test_apply_task_updated_never_reopens_a_done_task(
    store: Store, new_job: JobFactory, snapshot_tables: Dump
) -> None:
    _job, tasks = new_job("j", tasks=1)
    task_id = tasks[0].id
    store.apply([TaskCompleted(task_id, 1, "00001.png", SHA, 123, 9.0, "w1", {})])
    before = snapshot_tables(store)
    store.apply([TaskUpdated(task_id, TaskState.QUEUED, 1, 99.0, ErrorKind.LEASE_EXPIRED, "x")])
    assert snapshot_tables(store) == before


def test_apply_task_completed(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    _job, tasks = new_job("j", tasks=2)
    task_id = tasks[1].id
    before = snapshot_tables(store)
    store.apply(
        [TaskCompleted(task_id, 2, "00002.png", SHA, 4567, 12.5, "w9", {"task": task_id})],
        manifest_offset=("j", 321),
    )
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"tasks", "jobs"}
    task = store.load_tasks("j")[1]
    assert task.state is TaskState.DONE
    assert (task.output_path, task.sha256, task.size) == ("00002.png", SHA, 4567)
    assert (task.done_attempt, task.finished_at, task.worker_id) == (2, 12.5, "w9")
    assert store.load_tasks("j")[0] == tasks[0]
    assert store.find_job("j").manifest_offset == 321


def test_apply_job_updated(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    new_job("j")
    new_job("other")
    before = snapshot_tables(store)
    old = store.find_job("j")
    store.apply([JobUpdated("j", JobState.PAUSED)])
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"jobs"}
    assert len(changes["jobs"][1]) == 1
    job = store.find_job("j")
    assert job.state is JobState.PAUSED
    assert job.updated_at > old.updated_at
    assert store.find_job("other").state is JobState.RUNNING


def test_apply_account_cooldown_upserts(store: Store, snapshot_tables: Dump) -> None:
    before = snapshot_tables(store)
    store.apply([AccountCooldown("acc1", 100.0, "rate limit")])
    store.apply([AccountCooldown("acc2", 50.0)])
    store.apply([AccountCooldown("acc1", 200.0, "again")])
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"accounts"}
    rows = store.execute("SELECT id, cooldown_until, reason FROM accounts ORDER BY id")
    assert [tuple(r) for r in rows] == [("acc1", 200.0, "again"), ("acc2", 50.0, None)]


def test_apply_worker_seen_keeps_first_seen(store: Store, snapshot_tables: Dump) -> None:
    before = snapshot_tables(store)
    store.apply([WorkerSeen("w1", "acc1", "browser", 10.0, {"tab": 1})])
    store.apply([WorkerSeen("w1", "acc2", "browser", 20.0, {"tab": 2})])
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"workers"}
    row = store.execute("SELECT * FROM workers").fetchone()
    assert row["id"] == "w1"
    assert row["account_id"] == "acc2"
    assert row["first_seen"] == 10.0
    assert row["last_seen"] == 20.0
    assert row["info"] == '{"tab":2}'


def test_apply_event_logged(store: Store, new_job: JobFactory, snapshot_tables: Dump) -> None:
    new_job("j")
    before = snapshot_tables(store)
    store.apply(
        [
            EventLogged(1.0, "info", "started", "first", job_id="j"),
            EventLogged(
                2.0,
                "warning",
                "slow",
                "second",
                job_id="j",
                worker_id="w",
                task_id=1,
                data={"ü": [1, None]},
            ),
            EventLogged(3.0, "info", "other", "elsewhere", job_id="other"),
        ]
    )
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"events"}
    events = store.events("j")
    assert [e["message"] for e in events] == ["first", "second"]
    assert events[0]["data"] is None
    assert events[1]["data"] == {"ü": [1, None]}
    assert (events[1]["worker_id"], events[1]["task_id"], events[1]["level"]) == ("w", 1, "warning")
    # limit keeps the newest, still in chronological order
    assert [e["message"] for e in store.events("j", limit=1)] == ["second"]


def test_apply_empty_batch_only_moves_the_manifest_offset(
    store: Store, new_job: JobFactory, snapshot_tables: Dump
) -> None:
    new_job("j")
    before = snapshot_tables(store)
    store.apply([], manifest_offset=("j", 77))
    changes = diff(before, snapshot_tables(store))
    assert set(changes) == {"jobs"}
    assert store.find_job("j").manifest_offset == 77


# --- apply: a duplicate completion rolls back the whole batch ---------------------------------


def test_task_completed_twice_in_one_batch_rolls_back_everything(
    store: Store, new_job: JobFactory, snapshot_tables: Dump
) -> None:
    _job, tasks = new_job("j", tasks=2)
    a, b = tasks[0].id, tasks[1].id
    before = snapshot_tables(store)
    batch: list[StoreOp] = [
        AttemptStarted(b, 1, "w1", "acc", 1.0),
        AccountCooldown("acc", 1e12, "limit"),
        WorkerSeen("w1", "acc", "sim", 1.0),
        TaskCompleted(a, 1, "00001.png", SHA, 1, 2.0, "w1", {}),
        EventLogged(2.0, "info", "done", "one", job_id="j"),
        TaskCompleted(a, 2, "00001-again.png", SHA, 1, 3.0, "w2", {}),
    ]
    with pytest.raises(StoreError, match=f"task {a} completed twice"):
        store.apply(batch, manifest_offset=("j", 500))
    assert snapshot_tables(store) == before


def test_task_completed_again_in_a_later_batch_keeps_the_first(
    store: Store, new_job: JobFactory, snapshot_tables: Dump
) -> None:
    _job, tasks = new_job("j", tasks=2)
    a, b = tasks[0].id, tasks[1].id
    store.apply(
        [TaskCompleted(a, 1, "00001.png", SHA, 11, 2.0, "w1", {})], manifest_offset=("j", 10)
    )
    before = snapshot_tables(store)
    with pytest.raises(StoreError, match="completed twice"):
        store.apply(
            [
                TaskCompleted(b, 1, "00002.png", SHA, 22, 3.0, "w1", {}),
                TaskCompleted(a, 3, "other.png", "f" * 64, 99, 4.0, "w2", {}),
            ],
            manifest_offset=("j", 20),
        )
    assert snapshot_tables(store) == before
    first = store.load_tasks("j")[0]
    assert (first.output_path, first.size, first.done_attempt) == ("00001.png", 11, 1)
    assert store.load_tasks("j")[1].state is TaskState.QUEUED
    assert store.find_job("j").manifest_offset == 10
    # The connection is not stuck in a transaction: the next batch commits normally.
    store.apply([TaskCompleted(b, 1, "00002.png", SHA, 22, 3.0, "w1", {})])
    assert store.load_tasks("j")[1].state is TaskState.DONE


def test_task_completed_for_an_unknown_task_is_an_error(store: Store, new_job: JobFactory) -> None:
    new_job("j", tasks=1)
    with pytest.raises(StoreError):
        store.apply([TaskCompleted(12345, 1, "x.png", SHA, 1, 1.0, None, {})])


# --- requeue_leased, retry_dead ---------------------------------------------------------------


def test_requeue_leased_closes_open_attempts_as_interrupted(
    store: Store, new_job: JobFactory
) -> None:
    _job, tasks = new_job("j", tasks=4)
    _other, other_tasks = new_job("other", tasks=1)
    leased1, leased2, failed_once, done = (t.id for t in tasks)
    store.apply(
        [
            AttemptStarted(leased1, 1, "w1", "a", 1.0),
            AttemptStarted(failed_once, 1, "w2", "a", 1.0),
            AttemptEnded(failed_once, 1, 2.0, "failed", ErrorKind.TIMEOUT, "slow"),
            TaskUpdated(failed_once, TaskState.QUEUED, 1, 5.0, ErrorKind.TIMEOUT, "slow"),
            AttemptStarted(leased2, 2, "w2", "a", 3.0),
            AttemptStarted(done, 1, "w3", "a", 1.0),
            AttemptEnded(done, 1, 2.0, "done"),
            TaskCompleted(done, 1, "00004.png", SHA, 5, 2.0, "w3", {}),
            AttemptStarted(other_tasks[0].id, 1, "w4", "a", 1.0),
        ]
    )
    assert store.requeue_leased("j", now=100.0) == 2

    states = {t.id: t.state for t in store.load_tasks("j")}
    assert states == {
        leased1: TaskState.QUEUED,
        leased2: TaskState.QUEUED,
        failed_once: TaskState.QUEUED,
        done: TaskState.DONE,
    }
    assert (
        attempt_row(store, leased1, 1)["outcome"],
        attempt_row(store, leased1, 1)["ended_at"],
    ) == (
        "interrupted",
        100.0,
    )
    assert attempt_row(store, leased2, 2)["outcome"] == "interrupted"
    # Closed attempts keep their own outcome and end time; an interruption is not a failure.
    assert tuple(attempt_row(store, failed_once, 1))[5:8] == (2.0, "failed", "timeout")
    assert attempt_row(store, done, 1)["outcome"] == "done"
    assert store.load_tasks("j")[0].failures == 0
    # Another job's lease is not this job's business.
    assert store.load_tasks("other")[0].state is TaskState.LEASED
    assert attempt_row(store, other_tasks[0].id, 1)["ended_at"] is None
    # Nothing left to do the second time.
    assert store.requeue_leased("j", now=200.0) == 0
    assert attempt_row(store, leased1, 1)["ended_at"] == 100.0


def _set_states(store: Store, job_id: str, states: list[TaskState]) -> list[int]:
    ids = [t.id for t in store.load_tasks(job_id)]
    store.apply(
        [
            TaskUpdated(task_id, state, 4, 50.0, ErrorKind.PAGE_ERROR, "boom")
            for task_id, state in zip(ids, states, strict=True)
            if state is not TaskState.DONE
        ]
        + [
            TaskCompleted(task_id, 1, f"{task_id}.png", SHA, 1, 1.0, None, {})
            for task_id, state in zip(ids, states, strict=True)
            if state is TaskState.DONE
        ]
    )
    return ids


def test_retry_dead_without_refused(store: Store, new_job: JobFactory) -> None:
    new_job("j", tasks=4, state=JobState.INCOMPLETE)
    states = [TaskState.DEAD, TaskState.REFUSED, TaskState.DONE, TaskState.DEAD]
    ids = _set_states(store, "j", states)
    assert store.retry_dead("j") == 2
    after = {t.id: t for t in store.load_tasks("j")}
    for task_id in (ids[0], ids[3]):
        assert after[task_id].state is TaskState.QUEUED
        assert after[task_id].failures == 0
        assert after[task_id].not_before == 0
    assert after[ids[1]].state is TaskState.REFUSED
    assert after[ids[1]].failures == 4
    assert after[ids[2]].state is TaskState.DONE
    assert store.find_job("j").state is JobState.RUNNING


def test_retry_dead_with_refused(store: Store, new_job: JobFactory) -> None:
    new_job("j", tasks=3, state=JobState.INCOMPLETE)
    new_job("other", tasks=1, state=JobState.INCOMPLETE)
    ids = _set_states(store, "j", [TaskState.DEAD, TaskState.REFUSED, TaskState.CANCELLED])
    _set_states(store, "other", [TaskState.DEAD])
    assert store.retry_dead("j", include_refused=True) == 2
    after = {t.id: t.state for t in store.load_tasks("j")}
    assert after == {
        ids[0]: TaskState.QUEUED,
        ids[1]: TaskState.QUEUED,
        ids[2]: TaskState.CANCELLED,
    }
    assert store.load_tasks("other")[0].state is TaskState.DEAD
    assert store.find_job("other").state is JobState.INCOMPLETE


def test_retry_dead_with_nothing_to_retry_leaves_the_job_alone(
    store: Store, new_job: JobFactory
) -> None:
    new_job("j", tasks=2, state=JobState.FINISHED)
    _set_states(store, "j", [TaskState.DONE, TaskState.REFUSED])
    before = store.find_job("j")
    assert store.retry_dead("j") == 0
    assert store.find_job("j") == before


# --- cooldowns, error_summary ----------------------------------------------------------------


def test_cooldowns_only_lists_the_future(store: Store) -> None:
    store.apply(
        [
            AccountCooldown("past", 99.0),
            AccountCooldown("now", 100.0),
            AccountCooldown("future", 100.5, "limit"),
            AccountCooldown("far", 1e9),
        ]
    )
    assert store.cooldowns(100.0) == {"future": 100.5, "far": 1e9}
    assert store.cooldowns(1e10) == {}


def test_error_summary_groups_and_orders_by_count(store: Store, new_job: JobFactory) -> None:
    _job, tasks = new_job("j", tasks=3)
    _other, other_tasks = new_job("other", tasks=1)
    ops: list[StoreOp] = []
    attempt = 0

    def failed(task_id: int, kind: ErrorKind | None, message: str | None) -> None:
        nonlocal attempt
        attempt += 1
        ops.append(AttemptStarted(task_id, attempt, "w", "a", float(attempt)))
        outcome = "failed" if kind else "done"
        ops.append(AttemptEnded(task_id, attempt, float(attempt), outcome, kind, message))

    for _ in range(3):
        failed(tasks[0].id, ErrorKind.TIMEOUT, "no answer")
    failed(tasks[1].id, ErrorKind.TIMEOUT, "no answer")
    failed(tasks[1].id, ErrorKind.PAGE_ERROR, "oops")
    failed(tasks[2].id, ErrorKind.PAGE_ERROR, "oops")
    failed(tasks[2].id, ErrorKind.TIMEOUT, "different text")
    failed(tasks[2].id, ErrorKind.NETWORK, None)
    failed(tasks[2].id, None, None)  # the done attempt: not an error
    for _ in range(9):
        failed(other_tasks[0].id, ErrorKind.REFUSED, "elsewhere")
    store.apply(ops)

    summary = store.error_summary("j")
    assert summary[0] == ("timeout", "no answer", 4)
    assert summary[1] == ("page_error", "oops", 2)
    assert sorted(summary[2:]) == [("network", "", 1), ("timeout", "different text", 1)]
    assert [count for _k, _m, count in summary] == sorted(
        (count for _k, _m, count in summary), reverse=True
    )
    assert store.error_summary("nobody") == []


# --- opening damaged, locked and odd files ---------------------------------------------------


def _healthy_database(path: Path) -> bytes:
    """A checkpointed database with enough rows to span many pages; returns its bytes."""
    with Store(path) as store:
        job = JobRecord("big", "Big", 1.0, 1.0, JobState.RUNNING, "/out", "{seq:05d}.png")
        tasks = [
            TaskRecord(
                id=i, job_id="big", seq=i, prompt="p " * 200 + str(i), planned_path=f"{i}.png"
            )
            for i in range(1, 301)
        ]
        store.create_job(job, tasks)
        store.checkpoint()
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return path.read_bytes()


def _page_size(data: bytes) -> int:
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size


def _damage(data: bytes, how: str) -> bytes:
    page = _page_size(data)
    pages = len(data) // page
    assert pages > 8
    if how == "random-bytes":
        return os.urandom(len(data))
    if how == "truncated-half":
        return data[: len(data) // 2]
    if how == "truncated-to-header":
        return data[:100]
    if how == "truncated-mid-page":
        return data[: page * 3 + 123]
    if how == "zeroed-pages":
        damaged = bytearray(data)
        damaged[page : page * 3] = bytes(page * 2)
        return bytes(damaged)
    if how == "zeroed-tail-pages":
        damaged = bytearray(data)
        damaged[page * (pages - 4) :] = bytes(len(data) - page * (pages - 4))
        return bytes(damaged)
    if how == "text-file":
        return b"this is not a database at all\n" * 200
    raise AssertionError(how)


DAMAGE = [
    "random-bytes",
    "truncated-half",
    "truncated-to-header",
    "truncated-mid-page",
    "zeroed-pages",
    "zeroed-tail-pages",
    "text-file",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_file_raises_store_corrupt_error(db_path: Path, how: str) -> None:
    data = _healthy_database(db_path)
    db_path.write_bytes(_damage(data, how))
    with pytest.raises(StoreCorruptError) as info:
        Store(db_path)
    assert str(db_path) in str(info.value)


def test_healthy_checkpointed_database_opens(db_path: Path) -> None:
    _healthy_database(db_path)
    with Store(db_path) as store:
        assert len(store.load_tasks("big")) == 300


def test_empty_file_is_a_new_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    with Store(db_path) as store:
        assert store.list_jobs() == []


def test_locked_database_is_not_reported_as_damage(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(db_path).close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO accounts (id) VALUES ('holder')")

        real_connect = sqlite3.connect

        def impatient_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            kwargs["timeout"] = 0.05  # instead of 30 s
            return real_connect(*args, **kwargs)

        monkeypatch.setattr(database.sqlite3, "connect", impatient_connect)
        with pytest.raises(StoreError) as info:
            Store(db_path)
        assert not isinstance(info.value, StoreCorruptError)
        assert "locked" in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    monkeypatch.undo()
    with Store(db_path) as store:  # and nothing was harmed
        assert store.cooldowns(-1.0) == {}


@pytest.mark.parametrize(
    ("exc", "damage"),
    [
        (sqlite3.OperationalError("database is locked"), False),
        (sqlite3.OperationalError("database table is locked"), False),
        (sqlite3.OperationalError("database schema is locked: main"), False),
        (sqlite3.OperationalError("database or disk is full"), False),
        (sqlite3.OperationalError("disk I/O error"), False),
        (sqlite3.OperationalError("unable to open database file"), False),
        (sqlite3.DatabaseError("file is not a database"), True),
        (sqlite3.DatabaseError("database disk image is malformed"), True),
        (sqlite3.DatabaseError("file is encrypted or is not a database"), True),
        (sqlite3.DatabaseError("Database Disk Image Is Malformed"), True),
        (sqlite3.OperationalError("malformed database schema (tasks)"), True),
    ],
)
def test_means_damage(exc: sqlite3.DatabaseError, damage: bool) -> None:
    assert database._means_damage(exc) is damage


def test_quick_check_passes_on_a_healthy_store(store: Store) -> None:
    store.quick_check()
