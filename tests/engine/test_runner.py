"""In-process JobRunner runs with hand-written fake workers.

Each test builds a small job with :func:`create_job`, runs it under ``asyncio.run`` with a
hard timeout, then checks what reached the disk and the database: the task and attempt rows,
the events, the manifest and the image files (via the shared integration helpers).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.engine.jobs import JobOptions, create_job
from novelgen_desktop.engine.model import (
    Assignment,
    ErrorKind,
    JobState,
    TaskState,
    WorkerFailure,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.recovery import open_store, reconcile_job
from novelgen_desktop.engine.runner import JobRunner, RunSettings, RunStatus, RunSummary
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.worker import Worker, WorkerCrashed
from novelgen_desktop.engine.writer import WriterSettings
from novelgen_desktop.output.imagecheck import inspect_image
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.sim.render import corrupt_image, render_panel_png
from novelgen_desktop.store.records import JobRecord, TaskRecord
from novelgen_desktop.store.snapshot import list_snapshots, read_snapshot
from tests.integration.helpers import assert_job_complete_and_consistent, job_ids

IMAGE_SIZE = 32
PNG = render_panel_png("a lighthouse on a cliff", width=IMAGE_SIZE, height=IMAGE_SIZE, seed=1)
RUN_TIMEOUT = 20.0


# --- building blocks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    at: float  # time.monotonic() when execute() started
    task_id: int
    attempt: int


Script = Callable[["FakeWorker", Assignment], Awaitable[WorkerOutcome | None]]


class FakeWorker:
    """Implements the Worker protocol; ``script`` decides each outcome (None = a good image)."""

    kind = "fake"

    def __init__(
        self,
        worker_id: str,
        account_id: str | None = None,
        *,
        script: Script | None = None,
        latency: float = 0.003,
        restart_ok: bool = True,
    ) -> None:
        self.worker_id = worker_id
        self.account_id = account_id or f"acct-{worker_id}"
        self.script = script
        self.latency = latency
        self.restart_ok = restart_ok
        self.calls: list[Call] = []
        self.restarts = 0

    async def execute(self, assignment: Assignment) -> WorkerOutcome:
        self.calls.append(Call(time.monotonic(), assignment.task_id, assignment.attempt))
        if self.script is not None:
            outcome = await self.script(self, assignment)
            if outcome is not None:
                return outcome
        await asyncio.sleep(self.latency)
        return good(assignment)

    async def restart(self) -> bool:
        self.restarts += 1
        await asyncio.sleep(0.01)
        return self.restart_ok


def good(a: Assignment) -> WorkerResult:
    return WorkerResult(
        a.task_id,
        a.attempt,
        PNG,
        conversation_url=f"https://chatgpt.com/c/fake-{a.task_id}-{a.attempt}",
        image_id=f"img-{a.task_id}-{a.attempt}",
        mime="image/png",
    )


def run_settings(**policy: Any) -> RunSettings:
    base: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "lease_seconds": 30.0,
        "max_failures": 5,
        "min_cooldown": 0.5,  # the tests announce resets of a second or two
    }
    base.update(policy)
    return RunSettings(
        policy=SchedulerPolicy(**base),
        writer=WriterSettings(flush_interval=0.01, snapshot_every=5, snapshot_min_interval=0),
        reaper_interval=0.05,
        stop_grace=5.0,
        progress_interval=0.05,
    )


@dataclass
class Job:
    paths: DataPaths
    record: JobRecord
    tasks: list[TaskRecord]

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def out_dir(self) -> Path:
        return Path(self.record.out_dir)

    def task_id(self, index: int) -> int:
        """Id of the task at 0-based script position ``index``."""
        return self.tasks[index].id

    def runner(
        self, workers: list[FakeWorker], settings: RunSettings | None = None, **kw: Any
    ) -> JobRunner:
        typed: list[Worker] = list(workers)
        return JobRunner(
            self.paths, self.record, self.tasks, typed, settings or run_settings(), **kw
        )

    # --- reading back what was recorded ---

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.paths.database)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def job_state(self) -> str:
        return self.query("SELECT state FROM jobs WHERE id = ?", (self.id,))[0]["state"]

    def task_rows(self) -> dict[int, sqlite3.Row]:
        rows = self.query("SELECT * FROM tasks WHERE job_id = ? ORDER BY seq", (self.id,))
        return {r["id"]: r for r in rows}

    def attempts(self, task_id: int | None = None) -> list[sqlite3.Row]:
        if task_id is not None:
            return self.query(
                "SELECT * FROM attempts WHERE task_id = ? ORDER BY attempt", (task_id,)
            )
        return self.query(
            "SELECT a.* FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? "
            "ORDER BY a.task_id, a.attempt",
            (self.id,),
        )

    def events(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM events WHERE job_id = ? ORDER BY id", (self.id,))

    def manifest(self) -> list[dict[str, Any]]:
        path = self.out_dir / "manifest.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def image_files(self) -> list[str]:
        return sorted(
            p.relative_to(self.out_dir).as_posix()
            for p in self.out_dir.rglob("*")
            if p.is_file() and p.name != "manifest.jsonl"
        )


@pytest.fixture
def paths(isolated_data_dir: Path) -> DataPaths:
    return DataPaths(isolated_data_dir).ensure()


@pytest.fixture
def make_job(paths: DataPaths, tmp_path: Path) -> Iterator[Callable[..., Job]]:
    def make(n: int, *, chapters: int = 1, name: str = "runner test") -> Job:
        specs = [
            PromptSpec(
                text=f"panel {i}: a lighthouse on a cliff at dusk, view {i}",
                source=SourceLocation("script.txt", i + 1),
                chapter=str(i % chapters + 1),
                page=i // 4 + 1,
                panel=i % 4 + 1,
            )
            for i in range(n)
        ]
        store, _recovery = open_store(paths)
        try:
            record, tasks = create_job(
                store, paths, specs, JobOptions(name=name, out_root=tmp_path / "out")
            )
        finally:
            store.close()
        return Job(paths, record, tasks)

    yield make


def run(runner: JobRunner, timeout: float = RUN_TIMEOUT) -> RunSummary:
    return asyncio.run(asyncio.wait_for(runner.run(), timeout))


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def calls_per_task(workers: list[FakeWorker]) -> Counter[int]:
    return Counter(c.task_id for w in workers for c in w.calls)


# --- the happy path ---------------------------------------------------------------------------


def test_all_done(make_job: Callable[..., Job], paths: DataPaths) -> None:
    job = make_job(24, chapters=2)
    workers = [FakeWorker(f"w{i}") for i in range(3)]
    statuses: list[RunStatus] = []
    summary = run(job.runner(workers, on_progress=statuses.append))

    assert summary.state is JobState.FINISHED
    assert summary.counts[TaskState.DONE] == 24
    assert summary.stopped_early is False
    assert summary.duplicates_dropped == 0
    assert job.job_state() == "finished"
    assert_job_complete_and_consistent(paths.root, job.id, 24)
    assert job_ids(paths.root) == [job.id]

    # One attempt per task, each done, by the worker that drew it.
    attempts = job.attempts()
    assert len(attempts) == 24
    assert {a["outcome"] for a in attempts} == {"done"}
    assert all(a["ended_at"] >= a["started_at"] for a in attempts)
    assert sum(len(w.calls) for w in workers) == 24
    manifest = job.manifest()
    assert len(manifest) == 24
    assert {r["worker"] for r in manifest} <= {"w0", "w1", "w2"}
    assert all((r["width"], r["height"], r["format"]) == (32, 32, "png") for r in manifest)
    assert {r["source"] for r in manifest} == {f"script.txt:{i}" for i in range(1, 25)}
    # Files follow the default template: chapter folders, page-panel names.
    assert {p.split("/")[0] for p in job.image_files()} == {"1", "2"}

    # Periodic snapshots (every 5 completions) plus the final one, the newest complete.
    snapshots = list_snapshots(paths.snapshots_dir(job.id))
    assert len(snapshots) >= 3
    newest = read_snapshot(snapshots[0][1])
    assert newest["counts"]["done"] == 24
    assert {t["state"] for t in newest["tasks"]} == {"done"}

    # Workers are registered; progress was reported and ended complete.
    registered = job.query("SELECT id FROM workers ORDER BY id")
    assert [r["id"] for r in registered] == ["w0", "w1", "w2"]
    assert statuses and statuses[-1].progress.done == 24
    assert statuses[-1].counts[TaskState.DONE] == 24


def test_nothing_left_to_do_returns_at_once(make_job: Callable[..., Job]) -> None:
    job = make_job(10)
    run(job.runner([FakeWorker("w1")]))
    store, _ = open_store(job.paths)
    try:
        report = reconcile_job(store, store.find_job(job.id))
        record = store.find_job(job.id)
    finally:
        store.close()
    again = FakeWorker("w2")
    runner = JobRunner(job.paths, record, report.tasks, [again], run_settings())
    summary = run(runner, timeout=5)
    assert summary.state is JobState.FINISHED
    assert again.calls == []
    assert job.job_state() == "finished"


# --- failures ---------------------------------------------------------------------------------

TRANSIENT = [ErrorKind.PAGE_ERROR, ErrorKind.NETWORK, ErrorKind.TIMEOUT]


def test_transient_failures_are_retried(make_job: Callable[..., Job], paths: DataPaths) -> None:
    job = make_job(21)
    flaky = {job.task_id(i) for i in range(0, 21, 3)}

    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if a.task_id in flaky and a.attempt <= 2:
            kind = TRANSIENT[(a.task_id + a.attempt) % 3]
            return WorkerFailure(a.task_id, a.attempt, kind, f"boom {a.attempt}")
        return None

    workers = [FakeWorker(f"w{i}", script=script) for i in range(3)]
    summary = run(job.runner(workers))

    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 21)
    tasks = job.task_rows()
    per_task = calls_per_task(workers)
    for task_id in flaky:
        attempts = job.attempts(task_id)
        assert [a["outcome"] for a in attempts] == ["failed", "failed", "done"]
        assert [a["error_kind"] for a in attempts] == [
            TRANSIENT[(task_id + 1) % 3].value,
            TRANSIENT[(task_id + 2) % 3].value,
            None,
        ]
        assert [a["error_message"] for a in attempts[:2]] == ["boom 1", "boom 2"]
        assert tasks[task_id]["failures"] == 2
        assert tasks[task_id]["attempts"] == 3
        assert tasks[task_id]["done_attempt"] == 3
        assert per_task[task_id] == 3
    for task_id in set(tasks) - flaky:
        assert per_task[task_id] == 1
        assert tasks[task_id]["failures"] == 0


def test_refusals_are_terminal_and_not_retried(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job = make_job(12)
    refused = {job.task_id(i) for i in (2, 5, 7)}

    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if a.task_id in refused:
            return WorkerFailure(a.task_id, a.attempt, ErrorKind.REFUSED, "content policy")
        return None

    workers = [FakeWorker("w1", script=script), FakeWorker("w2", script=script)]
    summary = run(job.runner(workers))

    assert summary.state is JobState.INCOMPLETE
    assert summary.counts[TaskState.REFUSED] == 3
    assert summary.counts[TaskState.DONE] == 9
    assert job.job_state() == "incomplete"
    per_task = calls_per_task(workers)
    assert all(per_task[t] == 1 for t in refused)
    tasks = job.task_rows()
    for task_id in refused:
        assert tasks[task_id]["state"] == "refused"
        assert tasks[task_id]["output_path"] is None
        assert tasks[task_id]["last_error_kind"] == "refused"
        (attempt,) = job.attempts(task_id)
        assert (attempt["outcome"], attempt["error_kind"]) == ("refused", "refused")
    assert len(job.manifest()) == 9
    assert len(job.image_files()) == 9
    refused_events = [e for e in job.events() if e["kind"] == "task_refused"]
    assert {e["task_id"] for e in refused_events} == refused


def test_task_failing_every_time_is_dead_after_max_failures(
    make_job: Callable[..., Job],
) -> None:
    job = make_job(10)
    doomed = job.task_id(4)

    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if a.task_id == doomed:
            return WorkerFailure(a.task_id, a.attempt, ErrorKind.NETWORK, "Network error")
        return None

    workers = [FakeWorker("w1", script=script), FakeWorker("w2", script=script)]
    summary = run(job.runner(workers, run_settings(max_failures=3)))

    assert summary.state is JobState.INCOMPLETE
    assert summary.counts[TaskState.DEAD] == 1
    assert summary.counts[TaskState.DONE] == 9
    assert calls_per_task(workers)[doomed] == 3
    row = job.task_rows()[doomed]
    assert (row["state"], row["failures"], row["attempts"]) == ("dead", 3, 3)
    assert row["last_error_kind"] == "network"
    attempts = job.attempts(doomed)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert {a["error_kind"] for a in attempts} == {"network"}
    dead_events = [e for e in job.events() if e["kind"] == "task_dead"]
    assert [e["task_id"] for e in dead_events] == [doomed]
    assert "3 failure(s)" in dead_events[0]["message"]


def test_rate_limit_cools_the_account_down(make_job: Callable[..., Job]) -> None:
    job = make_job(60)
    reported_at: list[float] = []

    async def limited_once(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if len(worker.calls) == 1:
            reported_at.append(time.time())
            return WorkerFailure(
                a.task_id,
                a.attempt,
                ErrorKind.RATE_LIMITED,
                "You've hit the plus plan limit for image generation requests. "
                "You can create more images when the limit resets in 2 seconds.",
            )
        return None

    a_worker = FakeWorker("wa", "account-A", script=limited_once, latency=0.04)
    b_worker = FakeWorker("wb", "account-B", latency=0.04)
    summary = run(job.runner([a_worker, b_worker]))

    assert summary.state is JobState.FINISHED
    limited_task = a_worker.calls[0].task_id
    start = a_worker.calls[0].at
    # Account A rested ~2 s: its next assignment came no earlier.
    assert len(a_worker.calls) >= 2
    gap = a_worker.calls[1].at - start
    assert 1.9 <= gap < 4.0, gap
    # Account B kept working meanwhile.
    during = [c for c in b_worker.calls if start < c.at < start + 1.9]
    assert len(during) >= 10
    # The rate limit is recorded, but it is not a failure of the task.
    (first, *rest) = job.attempts(limited_task)
    assert (first["outcome"], first["error_kind"]) == ("rate_limited", "rate_limited")
    assert [r["outcome"] for r in rest] == ["done"]
    row = job.task_rows()[limited_task]
    assert (row["state"], row["failures"]) == ("done", 0)
    cooldown = job.query("SELECT * FROM accounts WHERE id = 'account-A'")
    assert len(cooldown) == 1
    assert cooldown[0]["cooldown_until"] == pytest.approx(reported_at[0] + 2.0, abs=0.5)
    assert "resets in 2 seconds" in cooldown[0]["reason"]
    assert job.query("SELECT * FROM accounts WHERE id = 'account-B'") == []
    events = [e for e in job.events() if e["kind"] == "rate_limited"]
    assert len(events) == 1 and json.loads(events[0]["data"])["account"] == "account-A"


def test_explicit_retry_after_wins_over_the_wording(make_job: Callable[..., Job]) -> None:
    job = make_job(30)

    async def limited_once(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if len(worker.calls) == 1:
            return WorkerFailure(
                a.task_id, a.attempt, ErrorKind.RATE_LIMITED, "resets in 2 hours", retry_after=0.5
            )
        return None

    a_worker = FakeWorker("wa", "account-A", script=limited_once, latency=0.02)
    b_worker = FakeWorker("wb", "account-B", latency=0.02)
    summary = run(job.runner([a_worker, b_worker]))
    assert summary.state is JobState.FINISHED
    gap = a_worker.calls[1].at - a_worker.calls[0].at
    assert 0.45 <= gap < 1.5, gap


@pytest.mark.parametrize("corruption", ["truncate", "html", "empty", "json"])
def test_invalid_images_are_not_written_and_retried(
    make_job: Callable[..., Job], paths: DataPaths, corruption: str
) -> None:
    job = make_job(12)
    broken = {job.task_id(i) for i in range(0, 12, 2)}

    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if a.task_id in broken and a.attempt == 1:
            return WorkerResult(a.task_id, a.attempt, corrupt_image(PNG, corruption))
        return None

    workers = [FakeWorker("w1", script=script), FakeWorker("w2", script=script)]
    summary = run(job.runner(workers))

    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 12)
    tasks = job.task_rows()
    for task_id in broken:
        attempts = job.attempts(task_id)
        assert [(a["outcome"], a["error_kind"]) for a in attempts] == [
            ("failed", "invalid_image"),
            ("done", None),
        ]
        assert tasks[task_id]["failures"] == 1
        assert tasks[task_id]["done_attempt"] == 2
        info = inspect_image((job.out_dir / tasks[task_id]["output_path"]).read_bytes())
        assert (info.width, info.height) == (32, 32)


def test_jpeg_result_is_saved_as_jpg(make_job: Callable[..., Job], paths: DataPaths) -> None:
    from novelgen_desktop.sim.render import render_panel_jpeg

    jpeg = render_panel_jpeg("a ship", width=32, height=32)
    job = make_job(4)

    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        return WorkerResult(a.task_id, a.attempt, jpeg)

    run(job.runner([FakeWorker("w1", script=script)]))
    assert_job_complete_and_consistent(paths.root, job.id, 4)
    assert all(p.endswith(".jpg") for p in job.image_files())
    assert {r["format"] for r in job.manifest()} == {"jpeg"}


# --- duplicate and late results ---------------------------------------------------------------


def _lease_race(
    make_job: Callable[..., Job], *, late_first: bool
) -> tuple[Job, RunSummary, int, list[FakeWorker]]:
    """Attempt 1 of one task outlives its 0.3 s lease, so attempt 2 goes to another worker.

    ``late_first``: attempt 1's result arrives while attempt 2 is still running (and wins);
    otherwise attempt 2 completes first and attempt 1's late result is a duplicate.
    """
    job = make_job(10)
    slow = job.task_id(0)
    holder: dict[str, Any] = {}

    def done() -> bool:
        runner: JobRunner = holder["runner"]
        return runner.scheduler.tasks[slow].state is TaskState.DONE

    async def main() -> RunSummary:
        started2 = asyncio.Event()

        async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
            if a.task_id != slow:
                return None
            if a.attempt == 1:
                if late_first:
                    await asyncio.wait_for(started2.wait(), 10)  # attempt 2 is running now
                else:
                    await wait_until(done)  # attempt 2 has been written and counted
                return good(a)
            if a.attempt == 2:
                started2.set()
                if late_first:
                    await wait_until(done)  # attempt 1 won meanwhile
                return good(a)
            raise AssertionError(f"unexpected attempt {a.attempt}")

        workers = [FakeWorker("w1", script=script), FakeWorker("w2", script=script)]
        holder["workers"] = workers
        runner = job.runner(workers, run_settings(lease_seconds=0.3))
        holder["runner"] = runner
        return await asyncio.wait_for(runner.run(), RUN_TIMEOUT)

    summary = asyncio.run(main())
    return job, summary, slow, holder["workers"]


def test_late_result_after_retry_completed_is_dropped(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job, summary, slow, workers = _lease_race(make_job, late_first=False)

    assert summary.state is JobState.FINISHED
    assert summary.duplicates_dropped == 1
    assert_job_complete_and_consistent(paths.root, job.id, 10)
    assert calls_per_task(workers)[slow] == 2
    first, second = job.attempts(slow)
    assert first["outcome"] == "duplicate"
    assert second["outcome"] == "done"
    row = job.task_rows()[slow]
    assert row["done_attempt"] == 2
    (manifest_row,) = [r for r in job.manifest() if r["task"] == slow]
    assert manifest_row["attempt"] == 2
    assert manifest_row["conversation_url"].endswith(f"-{slow}-2")
    assert any(e["kind"] == "duplicate_result" for e in job.events())


def test_late_result_arriving_first_wins(make_job: Callable[..., Job], paths: DataPaths) -> None:
    job, summary, slow, workers = _lease_race(make_job, late_first=True)

    assert summary.state is JobState.FINISHED
    # Attempt 2 is called off the moment attempt 1 delivers: no second image is produced.
    assert summary.duplicates_dropped == 0
    assert_job_complete_and_consistent(paths.root, job.id, 10)
    assert calls_per_task(workers)[slow] == 2
    first, second = job.attempts(slow)
    assert first["outcome"] == "done"  # paid for, so kept even though its lease had expired
    assert second["outcome"] == "superseded"
    called_off = [e for e in job.events() if e["kind"] == "attempt_called_off"]
    assert [e["task_id"] for e in called_off] == [slow]
    row = job.task_rows()[slow]
    assert row["done_attempt"] == 1
    (manifest_row,) = [r for r in job.manifest() if r["task"] == slow]
    assert manifest_row["attempt"] == 1


def test_result_for_an_attempt_never_issued_is_dropped(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job = make_job(6)

    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if len(worker.calls) == 1:  # a confused peer answers for attempt 7
            return WorkerResult(a.task_id, 7, PNG)
        return None

    worker = FakeWorker("w1", script=script)
    summary = run(job.runner([worker], run_settings(lease_seconds=0.3)))
    assert summary.duplicates_dropped == 1
    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 6)


# --- workers crashing -------------------------------------------------------------------------


def crash_on(call_numbers: set[int]) -> Script:
    async def script(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if len(worker.calls) in call_numbers:
            raise WorkerCrashed(f"{worker.worker_id} tab crashed")
        return None

    return script


def test_crashed_worker_restarts(make_job: Callable[..., Job], paths: DataPaths) -> None:
    job = make_job(20)
    crashing = FakeWorker("w1", script=crash_on({2}))
    steady = FakeWorker("w2")
    summary = run(job.runner([crashing, steady]))

    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 20)
    assert crashing.restarts == 1
    assert len(crashing.calls) > 2  # it kept working after coming back
    lost = [a for a in job.attempts() if a["error_kind"] == "worker_lost"]
    assert len(lost) == 1
    assert lost[0]["task_id"] == crashing.calls[1].task_id
    assert lost[0]["worker_id"] == "w1"
    assert job.task_rows()[lost[0]["task_id"]]["failures"] == 1
    assert [e["worker_id"] for e in job.events() if e["kind"] == "worker_crashed"] == ["w1"]


def test_worker_that_does_not_come_back_is_removed(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job = make_job(15)
    gone = FakeWorker("w1", script=crash_on({1}), restart_ok=False)
    others = [FakeWorker("w2"), FakeWorker("w3")]
    runner = job.runner([gone, *others])
    summary = run(runner)

    assert summary.state is JobState.FINISHED
    assert summary.stopped_early is False
    assert_job_complete_and_consistent(paths.root, job.id, 15)
    assert len(gone.calls) == 1 and gone.restarts == 1
    assert set(runner.workers) == {"w2", "w3"}
    (lost,) = [a for a in job.attempts() if a["error_kind"] == "worker_lost"]
    assert lost["task_id"] == gone.calls[0].task_id


def test_runner_stops_when_every_worker_is_gone(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job = make_job(10)
    workers = [
        FakeWorker("w1", script=crash_on({1}), restart_ok=False),
        FakeWorker("w2", script=crash_on({1}), restart_ok=False),
    ]
    summary = run(job.runner(workers), timeout=10)  # returning at all is the point

    assert summary.stopped_early is True
    assert summary.state is JobState.RUNNING
    assert summary.counts[TaskState.DONE] == 0
    assert summary.counts[TaskState.QUEUED] == 10
    assert job.job_state() == "running"
    assert [e["level"] for e in job.events() if e["kind"] == "no_workers"] == ["error"]
    assert len([a for a in job.attempts() if a["error_kind"] == "worker_lost"]) == 2
    assert job.image_files() == []

    # Nothing is lost: healthy workers finish the job later.
    store, _ = open_store(paths)
    try:
        record = store.find_job(job.id)
        report = reconcile_job(store, record)
        record = store.find_job(job.id)
    finally:
        store.close()
    again = JobRunner(paths, record, report.tasks, [FakeWorker("w3")], run_settings())
    assert run(again).state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 10)


# --- control: stop, pause, resume, cancel -----------------------------------------------------


def test_request_stop_then_resume_finishes(make_job: Callable[..., Job], paths: DataPaths) -> None:
    job = make_job(40)
    workers = [FakeWorker("w1", latency=0.02), FakeWorker("w2", latency=0.02)]
    runner = job.runner(workers)
    timing: dict[str, float] = {}

    async def main() -> RunSummary:
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: runner.scheduler.counts()[TaskState.DONE] >= 10)
        timing["stop"] = time.monotonic()
        runner.request_stop()
        summary = await asyncio.wait_for(task, RUN_TIMEOUT)
        timing["returned"] = time.monotonic()
        return summary

    summary = asyncio.run(main())
    assert summary.stopped_early is True
    assert summary.state is JobState.RUNNING
    done_first = summary.counts[TaskState.DONE]
    assert 10 <= done_first < 40
    assert summary.counts[TaskState.LEASED] == 0  # in-flight work finished within the grace
    assert job.job_state() == "running"
    assert len(job.manifest()) == done_first
    assert len(job.image_files()) == done_first

    store, _ = open_store(paths)
    try:
        record = store.find_job(job.id)
        report = reconcile_job(store, record)
        record = store.find_job(job.id)
    finally:
        store.close()
    assert sum(t.state is TaskState.DONE for t in report.tasks) == done_first
    second = [FakeWorker("w3"), FakeWorker("w4")]
    summary2 = run(JobRunner(paths, record, report.tasks, second, run_settings()))
    assert summary2.state is JobState.FINISHED
    assert sum(len(w.calls) for w in second) == 40 - done_first  # nothing drawn twice
    assert_job_complete_and_consistent(paths.root, job.id, 40)
    assert job.job_state() == "finished"


def test_pause_stops_dispatch_and_resume_restarts_it(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job = make_job(30)
    workers = [FakeWorker("w1", latency=0.01), FakeWorker("w2", latency=0.01)]
    runner = job.runner(workers)
    marks: dict[str, float] = {}
    paused_status: list[RunStatus] = []

    async def main() -> RunSummary:
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: runner.scheduler.counts()[TaskState.DONE] >= 5)
        runner.pause()
        marks["paused"] = time.monotonic()
        await asyncio.sleep(0.3)
        paused_status.append(runner.status())
        marks["resumed"] = time.monotonic()
        runner.resume()
        return await asyncio.wait_for(task, RUN_TIMEOUT)

    summary = asyncio.run(main())
    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 30)
    calls = [c for w in workers for c in w.calls]
    assert not [c for c in calls if marks["paused"] <= c.at < marks["resumed"]]
    assert [c for c in calls if c.at >= marks["resumed"]]
    assert paused_status[0].paused is True
    assert paused_status[0].counts[TaskState.DONE] < 30
    kinds = [e["kind"] for e in job.events()]
    assert kinds.index("job_paused") < kinds.index("job_resumed")


def test_cancel_cancels_queued_tasks(make_job: Callable[..., Job], paths: DataPaths) -> None:
    job = make_job(30)
    workers = [FakeWorker("w1", latency=0.02), FakeWorker("w2", latency=0.02)]
    runner = job.runner(workers)
    marks: dict[str, float] = {}

    async def main() -> RunSummary:
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: runner.scheduler.counts()[TaskState.DONE] >= 5)
        runner.cancel()
        marks["cancelled"] = time.monotonic()
        return await asyncio.wait_for(task, RUN_TIMEOUT)

    summary = asyncio.run(main())
    assert summary.state is JobState.CANCELLED
    assert job.job_state() == "cancelled"
    done, cancelled = summary.counts[TaskState.DONE], summary.counts[TaskState.CANCELLED]
    assert done + cancelled == 30
    assert cancelled >= 20
    assert not [c for w in workers for c in w.calls if c.at > marks["cancelled"]]
    rows = job.task_rows().values()
    assert Counter(r["state"] for r in rows) == {"done": done, "cancelled": cancelled}
    # In-flight attempts at the moment of cancelling were kept, not thrown away.
    assert sorted(r["output_path"] for r in rows if r["state"] == "done") == job.image_files()
    assert len(job.manifest()) == done
    assert any(e["kind"] == "job_cancelled" for e in job.events())


# --- output errors ----------------------------------------------------------------------------


def test_unwritable_output_folder_fails_attempts_cleanly(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    job = make_job(12, chapters=2)
    blocker = job.out_dir / "2"  # chapter 2's folder is a regular file: nothing can go in it
    blocker.write_text("not a folder")
    chapter2 = {t.id for t in job.tasks if t.chapter == "2"}
    assert len(chapter2) == 6

    workers = [FakeWorker("w1"), FakeWorker("w2")]
    summary = run(job.runner(workers, run_settings(max_failures=2)))

    assert summary.state is JobState.INCOMPLETE
    assert summary.counts[TaskState.DONE] == 6
    assert summary.counts[TaskState.DEAD] == 6
    assert blocker.read_text() == "not a folder"
    tasks = job.task_rows()
    for task_id in chapter2:
        assert (tasks[task_id]["state"], tasks[task_id]["failures"]) == ("dead", 2)
        assert tasks[task_id]["last_error_kind"] == "output_error"
        assert [(a["outcome"], a["error_kind"]) for a in job.attempts(task_id)] == [
            ("failed", "output_error")
        ] * 2
    errors = [e for e in job.events() if e["kind"] == "output_error"]
    assert len(errors) == 12
    assert {e["level"] for e in errors} == {"error"}
    assert all(str(blocker) in e["message"] for e in errors)
    images = [p for p in job.image_files() if p != "2"]  # the blocker itself is not an image
    assert len(images) == 6
    assert {p.split("/")[0] for p in images} == {"1"}
    assert len(job.manifest()) == 6


def test_image_already_on_disk_is_adopted_not_drawn_again(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    """An image already at the planned path (a crash after rename, before the record) is
    adopted by reconcile and never drawn again."""
    job = make_job(8)
    first = job.tasks[0]
    target = job.out_dir / first.planned_path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(PNG)
    store, _ = open_store(paths)
    try:
        report = reconcile_job(store, job.record)
        record = store.find_job(job.id)
    finally:
        store.close()
    assert report.from_disk == 1
    worker = FakeWorker("w1")
    summary = run(JobRunner(paths, record, report.tasks, [worker], run_settings()))
    assert summary.state is JobState.FINISHED
    assert first.id not in {c.task_id for c in worker.calls}
    assert len(worker.calls) == 7
    assert_job_complete_and_consistent(paths.root, job.id, 8)


# --- durability at the end of a run -----------------------------------------------------------


def test_records_queued_just_before_the_end_are_never_dropped(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    """A run that ends right after a group commit was handed to the writer thread must still
    commit it. Each short run below has a good chance of ending in that window; every one
    must leave the database agreeing with what the run reported."""
    for _ in range(25):
        job = make_job(1)
        worker = FakeWorker("w1", latency=0.0)
        summary = run(job.runner([worker]), timeout=10)
        assert summary.state is JobState.FINISHED
        rows = job.task_rows()
        assert [r["state"] for r in rows.values()] == ["done"], "run said finished, DB disagrees"
        assert [a["outcome"] for a in job.attempts()] == ["done"]
        assert len(job.manifest()) == 1
    assert len(job_ids(paths.root)) == 25


def test_records_waiting_for_a_busy_writer_thread_survive_the_end_of_the_run(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    """Deterministic form of the race above: the writer thread is busy (a slow fsync) when
    the job ends, so the last periodic commit is still queued for it at shutdown."""
    job = make_job(1)
    worker = FakeWorker("w1", latency=0.05)
    runner = job.runner([worker])

    async def main() -> RunSummary:
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0)  # run() has started the writer
        runner.writer._executor.submit(time.sleep, 0.3)  # the store thread is stuck for 0.3 s
        return await asyncio.wait_for(task, RUN_TIMEOUT)

    summary = asyncio.run(main())
    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 1)
    # The attempt that produced the image, and the worker that drew it, are on record.
    assert [(a["outcome"], a["worker_id"]) for a in job.attempts()] == [("done", "w1")]
    assert [r["id"] for r in job.query("SELECT id FROM workers")] == ["w1"]


def test_stop_now_does_not_wait_for_slow_attempts_and_requeues_them(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    """A second Ctrl-C: attempts that would take a minute are cut off, not waited for, and
    their tasks are back in the queue (not left 'leased') when run() returns."""
    job = make_job(6)
    workers = [FakeWorker("w1", latency=60.0), FakeWorker("w2", latency=60.0)]
    runner = JobRunner(
        paths, job.record, job.tasks, workers, replace(run_settings(), stop_grace=1000.0)
    )

    async def main() -> RunSummary:
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: len(runner.scheduler.leases) == 2)
        runner.request_stop()  # first: would wait up to stop_grace (1000 s) ...
        await asyncio.sleep(0.05)
        assert not task.done()
        runner.request_stop(now=True)  # ... second: stop now
        return await asyncio.wait_for(task, 30)

    summary = asyncio.run(main())
    assert summary.stopped_early is True
    assert summary.counts[TaskState.DONE] == 0
    store, _ = open_store(paths)
    try:
        states = store.count_by_state(job.id)
        outcomes = store.execute(
            "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome"
        ).fetchall()
    finally:
        store.close()
    assert states[TaskState.LEASED] == 0
    assert states[TaskState.QUEUED] == 6
    assert dict(outcomes) == {"interrupted": 2}


def test_full_disk_stops_the_job_without_counting_failures(
    make_job: Callable[..., Job], paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC is the machine's fault, not the prompts': stop, keep every task retryable."""
    import errno as errno_module

    from novelgen_desktop.engine import runner as runner_module
    from novelgen_desktop.output.writer import OutputWriteError

    real_write = runner_module.write_image_atomically
    writes = {"n": 0}

    def write_until_full(*args: Any, **kwargs: Any) -> Any:
        writes["n"] += 1
        if writes["n"] > 3:
            raise OutputWriteError(
                "cannot write x.png: [Errno 28] No space left on device", errno_module.ENOSPC
            )
        return real_write(*args, **kwargs)

    monkeypatch.setattr(runner_module, "write_image_atomically", write_until_full)
    job = make_job(20)
    summary = run(job.runner([FakeWorker("w1"), FakeWorker("w2")]))

    assert summary.stopped_early is True
    assert summary.stop_reason is not None and "disk is full" in summary.stop_reason
    assert summary.state is JobState.RUNNING  # resumable
    assert summary.counts[TaskState.DONE] == 3
    assert summary.counts[TaskState.DEAD] == 0
    assert all(t["failures"] == 0 for t in job.task_rows().values())
    assert any(e["kind"] == "disk_full" for e in job.events())


def test_a_failing_store_stops_the_run_and_is_reported(
    make_job: Callable[..., Job], paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If progress cannot be recorded, the run stops at once with a StoreError instead of
    drawing images nobody will count."""
    from novelgen_desktop.errors import StoreError
    from novelgen_desktop.store.database import Store

    real_apply = Store.apply
    calls = {"n": 0}

    def apply_then_fail(self: Store, ops: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise StoreError("disk I/O error")
        real_apply(self, ops, **kwargs)

    monkeypatch.setattr(Store, "apply", apply_then_fail)
    job = make_job(200)
    workers = [FakeWorker("w1", latency=0.01), FakeWorker("w2", latency=0.01)]
    runner = job.runner(workers)
    with pytest.raises(StoreError, match="progress could not be recorded"):
        run(runner)
    drawn = sum(len(w.calls) for w in workers)
    assert drawn < 200, "the run went on drawing after the store failed"


def test_late_result_delivered_after_the_lease_expired_is_kept_once(
    make_job: Callable[..., Job], paths: DataPaths
) -> None:
    """A worker that crashed with the image and came back delivers it late (through the hub):
    the runner judges it at once (the hub's ack) and writes it once; a repeat is a duplicate."""
    job = make_job(3)
    slow_release = asyncio.Event()

    async def hang_first(worker: FakeWorker, a: Assignment) -> WorkerOutcome | None:
        if len(worker.calls) == 1:
            await slow_release.wait()  # never answers in time: the lease expires
            raise WorkerCrashed("tab died holding the image")
        return None

    slow = FakeWorker("slow", script=hang_first)
    runner = job.runner([slow], run_settings(lease_seconds=0.2))
    verdicts: list[str] = []

    async def main() -> RunSummary:
        task = asyncio.create_task(runner.run())
        await wait_until(lambda: len(slow.calls) >= 1)
        first = slow.calls[0]
        await wait_until(
            lambda: (
                first.task_id not in runner.scheduler.leases
                or runner.scheduler.leases[first.task_id].attempt != first.attempt
            )
        )
        late = good(Assignment(first.task_id, first.attempt, "p", 0.0))
        verdicts.append(runner.deliver_late(slow, late))
        verdicts.append(runner.deliver_late(slow, late))  # the worker resends: duplicate
        verdicts.append(runner.deliver_late(slow, good(Assignment(999, 1, "p", 0.0))))
        await wait_until(lambda: runner.scheduler.tasks[first.task_id].state is TaskState.DONE)
        # Written and acknowledged; a worker that missed the acknowledgement sends it again.
        verdicts.append(runner.deliver_late(slow, late))
        slow_release.set()
        return await asyncio.wait_for(task, RUN_TIMEOUT)

    summary = asyncio.run(main())
    assert verdicts == ["accepted", "duplicate", "unknown", "duplicate"]
    assert summary.state is JobState.FINISHED
    assert_job_complete_and_consistent(paths.root, job.id, 3)
