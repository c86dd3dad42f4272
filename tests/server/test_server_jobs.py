"""The client role over real sockets: a real JobService behind the hub, simulated workers
(``run_sim_workers``) doing the work, and a protocol client submitting, following,
listing and controlling jobs (docs/protocol.md, "Client")."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from server_testkit import (
    FAST_RUN_SETTINGS,
    FAST_SIM,
    TOKEN,
    JobClient,
    png_for,
    recv_message,
    send_result,
    start_service_hub,
    worker_connection,
)

from novelgen_desktop.engine.model import ErrorKind, JobState
from novelgen_desktop.engine.service import JobService
from novelgen_desktop.engine.writer import WriterSettings
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.sim.remote import RemoteFaults, RemoteSimWorker, run_sim_workers
from novelgen_desktop.sim.worker import SimBehaviour
from tests.integration.helpers import assert_job_complete_and_consistent

SLOW_ENOUGH = SimBehaviour(latency_median=0.04, latency_sigma=0.0, reuse_images=8, image_size=64)
"""About 25 images per second per worker: time to pause or stop a job in the middle."""


@dataclass
class Stack:
    data_dir: Path
    service: JobService
    hub: Hub
    url: str
    stop_workers: asyncio.Event = field(default_factory=asyncio.Event)
    worker_tasks: list[asyncio.Task[list[RemoteSimWorker]]] = field(default_factory=list)

    def workers(
        self,
        count: int,
        behaviour: SimBehaviour = FAST_SIM,
        *,
        prefix: str = "sim",
        remotes: list[RemoteSimWorker] | None = None,
    ) -> asyncio.Task[list[RemoteSimWorker]]:
        task = asyncio.create_task(
            run_sim_workers(
                self.url,
                TOKEN,
                count,
                behaviour,
                stop=self.stop_workers,
                workers=remotes,
                backoff_initial=0.05,
                backoff_max=0.2,
                prefix=prefix,
            )
        )
        self.worker_tasks.append(task)
        return task

    async def stop(self) -> None:
        self.stop_workers.set()
        if not self.hub.is_stopping:
            await asyncio.wait_for(self.hub.stop(), 20)
        for task in self.worker_tasks:
            await asyncio.wait_for(task, 10)


@asynccontextmanager
async def stack(data_dir: Path, **hub_options: Any) -> AsyncIterator[Stack]:
    service, hub, url = await start_service_hub(data_dir, **hub_options)
    s = Stack(data_dir, service, hub, url)
    try:
        yield s
    finally:
        await s.stop()


def db_rows(data_dir: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
        return conn.execute(sql, args).fetchall()


def task_states(data_dir: Path, job_id: str) -> Counter[str]:
    rows = db_rows(data_dir, "SELECT state FROM tasks WHERE job_id = ?", job_id)
    return Counter(str(r[0]) for r in rows)


async def until(predicate: object, timeout: float = 10.0) -> None:
    """Poll a condition of the service (no event to wait on) until it holds."""
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def prompts(n: int, word: str = "panel") -> list[str]:
    return [f"{word} {i}: a lighthouse at dusk, ink" for i in range(1, n + 1)]


# -- submit → subscribe → finished ---------------------------------------------------------


def test_submit_inline_follow_to_finished_files_consistent(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            s.workers(3)
            texts = prompts(12)
            submitted = await client.submit("Inline job", [*texts[:5], "   ", *texts[5:], "\t\n"])
            assert submitted.tasks == 12
            assert submitted.skipped == 2
            assert submitted.re == "req-1"
            await client.subscribe(submitted.job_id)
            final = await client.progress_until(submitted.job_id, {"finished"})
            assert (final.total, final.done, final.failed_terminal) == (12, 12, 0)
            assert final.percent == 100.0
            running = [
                p for p in client.messages if isinstance(p, m.JobProgress) and p.state == "running"
            ]
            assert all(p.job_id == submitted.job_id and p.total == 12 for p in running)
            dones = [p.done for p in running] + [final.done]
            assert dones == sorted(dones), "done never goes backwards"
            await until(lambda: s.service.active_job is None)
            job_id = submitted.job_id
        assert_job_complete_and_consistent(data_dir, job_id, 12)
        stored = db_rows(data_dir, "SELECT prompt FROM tasks WHERE job_id = ? ORDER BY seq", job_id)
        assert [r[0] for r in stored] == texts

    asyncio.run(scenario())


def test_list_jobs_newest_first_state_filter_and_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stack(tmp_path / "data") as s, JobClient.connect(s.url) as client:
            # No workers: every job stays queued ("running") until paused or cancelled.
            ids = [(await client.submit(f"job {i}", prompts(i + 1))).job_id for i in range(4)]
            assert len(set(ids)) == 4
            assert isinstance(await client.control(ids[1], "pause"), m.Ack)
            assert isinstance(await client.control(ids[2], "cancel"), m.Ack)

            answer = await client.request(m.ListJobs(request_id="all"))
            assert isinstance(answer, m.Jobs)
            assert [j.job_id for j in answer.jobs] == ids[::-1]
            assert [j.state for j in answer.jobs] == ["running", "cancelled", "paused", "running"]
            assert [j.total for j in answer.jobs] == [4, 3, 2, 1]
            assert [j.name for j in answer.jobs] == ["job 3", "job 2", "job 1", "job 0"]
            created = [j.created_at for j in answer.jobs]
            assert created == sorted(created, reverse=True)
            cancelled = answer.jobs[1]
            assert (cancelled.done, cancelled.failed_terminal) == (0, 3)

            answer = await client.request(
                m.ListJobs(request_id="live", states=(JobState.RUNNING, JobState.PAUSED))
            )
            assert isinstance(answer, m.Jobs)
            assert [j.job_id for j in answer.jobs] == [ids[3], ids[1], ids[0]]

            answer = await client.request(m.ListJobs(request_id="two", limit=2))
            assert isinstance(answer, m.Jobs)
            assert [j.job_id for j in answer.jobs] == [ids[3], ids[2]]

            answer = await client.request(
                m.ListJobs(request_id="none", states=(JobState.FINISHED,))
            )
            assert isinstance(answer, m.Jobs) and answer.jobs == ()

    asyncio.run(scenario())


# -- control ---------------------------------------------------------------------------------


def test_pause_stops_dispatch_then_resume_finishes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    remotes = [RemoteSimWorker(backoff_initial=0.05, backoff_max=0.2) for _ in range(2)]

    async def scenario() -> str:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            s.workers(2, SLOW_ENOUGH, remotes=remotes)
            submitted = await client.submit("pausable", prompts(60))
            job_id = submitted.job_id
            await client.subscribe(job_id)
            await client.wait_for(
                lambda x: isinstance(x, m.JobProgress) and x.state == "running" and x.done >= 3
            )
            assert isinstance(await client.control(job_id, "pause"), m.Ack)
            paused = await client.progress_until(job_id, {"paused"})
            # In-flight attempts finish, then the runner lets go of the job.
            await until(lambda: s.service.active_job is None)
            started = sum(r.attempts for r in remotes)
            done = task_states(data_dir, job_id)["done"]
            assert 3 <= paused.done <= done < 60
            assert started < 60
            # Nothing more is dispatched while paused (the workers stay connected and idle).
            mark = len(client.messages)
            with contextlib.suppress(TimeoutError):
                await client.wait_for(
                    lambda x: isinstance(x, m.JobProgress) and x.state != "paused",
                    timeout=0.5,
                    start=mark,
                )
                raise AssertionError("a paused job changed state on its own")
            assert sum(r.attempts for r in remotes) == started
            assert task_states(data_dir, job_id)["done"] == done
            listed = await client.request(m.ListJobs(request_id="ls"))
            assert isinstance(listed, m.Jobs) and listed.jobs[0].state == "paused"

            mark = len(client.messages)
            assert isinstance(await client.control(job_id, "resume"), m.Ack)
            final = await client.progress_until(job_id, {"finished"}, start=mark)
            assert final.done == 60
            await until(lambda: s.service.active_job is None)
            return job_id

    job_id = asyncio.run(scenario())
    assert_job_complete_and_consistent(data_dir, job_id, 60)


def test_cancel_keeps_finished_images_and_cancels_the_rest(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            s.workers(2, SLOW_ENOUGH)
            submitted = await client.submit("cancellable", prompts(60))
            job_id = submitted.job_id
            await client.subscribe(job_id)
            await client.wait_for(lambda x: isinstance(x, m.JobProgress) and x.done >= 3)
            assert isinstance(await client.control(job_id, "cancel"), m.Ack)
            await client.progress_until(job_id, {"cancelled"})
            await until(lambda: s.service.active_job is None)
            states = task_states(data_dir, job_id)
            assert set(states) == {"done", "cancelled"}, states
            assert 3 <= states["done"] < 60
            assert states["done"] + states["cancelled"] == 60
            # Finished images are kept: one file per done task, each the recorded one.
            (out_dir,) = db_rows(data_dir, "SELECT out_dir FROM jobs WHERE id = ?", job_id)[0]
            out = Path(str(out_dir))
            recorded = db_rows(
                data_dir,
                "SELECT output_path FROM tasks WHERE job_id = ? AND state = 'done'",
                job_id,
            )
            files = sorted(
                p.relative_to(out).as_posix()
                for p in out.rglob("*")
                if p.is_file() and p.name != "manifest.jsonl"
            )
            assert files == sorted(str(r[0]) for r in recorded)
            # A cancelled job cannot be cancelled again, nor resumed.
            again = await client.control(job_id, "cancel")
            assert isinstance(again, m.Error) and again.code == "bad_field"
            assert again.field == "action"
            listed = await client.request(m.ListJobs(request_id="ls"))
            assert isinstance(listed, m.Jobs) and listed.jobs[0].state == "cancelled"

    asyncio.run(scenario())


def test_unknown_job_is_refused_with_its_request_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stack(tmp_path / "data") as s, JobClient.connect(s.url) as client:
            for action in ("pause", "resume", "cancel"):
                request = m.Control(
                    request_id=f"ctl-{action}",
                    job_id="no-such-job",
                    action=m.ControlAction(action),
                )
                error = await client.request(request)
                assert isinstance(error, m.Error), error
                assert (error.code, error.re) == ("unknown_job", f"ctl-{action}")
            error = await client.request(m.Subscribe(request_id="sub-1", job_ids=("nope",)))
            assert isinstance(error, m.Error)
            assert (error.code, error.re, error.field) == ("unknown_job", "sub-1", "job_ids[0]")
            # The connection still serves requests.
            answer = await client.request(m.ListJobs(request_id="after"))
            assert isinstance(answer, m.Jobs)

    asyncio.run(scenario())


# -- submit with a path, naming templates -----------------------------------------------------


def test_submit_paths_and_naming_templates(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a cat"}\n{"prompt": "a dog"\n{"prompt": "a bird"}\n')
    script = tmp_path / "script.txt"
    script.write_text("A lighthouse in a storm\nThe keeper's kitchen\nA gull on the rail\n")

    async def scenario() -> None:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            error = await client.request(
                m.Submit(request_id="bad-file", name="broken", path=str(broken))
            )
            assert isinstance(error, m.Error), error
            assert (error.code, error.re, error.field) == ("bad_field", "bad-file", "path")
            assert f"{broken}:2" in error.message, error.message

            error = await client.request(
                m.Submit(request_id="missing", name="missing", path=str(tmp_path / "nope.txt"))
            )
            assert isinstance(error, m.Error) and error.code == "bad_field"
            assert error.field == "path"

            error = await client.request(
                m.Submit(request_id="relative", name="relative", path="scripts/script.txt")
            )
            assert isinstance(error, m.Error), error
            assert (error.code, error.re, error.field) == ("bad_field", "relative", "path")

            error = await client.request(
                m.Submit(request_id="rel-out", name="o", prompts=("x",), out_dir="out/here")
            )
            assert isinstance(error, m.Error) and error.field == "out_dir"

            for template in ("{nope}", "{page", "../{seq}"):
                error = await client.request(
                    m.Submit(request_id="naming", name="n", prompts=("x",), naming=template)
                )
                assert isinstance(error, m.Error), (template, error)
                assert (error.code, error.field) == ("bad_field", "naming"), error

            error = await client.request(m.Submit(request_id="blank", name="b", prompts=(" ",)))
            assert isinstance(error, m.Error) and error.field == "prompts"

            listed = await client.request(m.ListJobs(request_id="ls"))
            assert isinstance(listed, m.Jobs) and listed.jobs == (), "no job from a refusal"

            s.workers(2)
            submitted = await client.request(
                m.Submit(
                    request_id="good", name="from a file", path=str(script), naming="{seq}-{slug}"
                )
            )
            assert isinstance(submitted, m.Submitted), submitted
            assert (submitted.tasks, submitted.skipped) == (3, 0)
            await client.subscribe(submitted.job_id)
            await client.progress_until(submitted.job_id, {"finished"})
            await until(lambda: s.service.active_job is None)
            assert_job_complete_and_consistent(data_dir, submitted.job_id, 3)
            rows = db_rows(
                data_dir,
                "SELECT prompt, output_path FROM tasks WHERE job_id = ? ORDER BY seq",
                submitted.job_id,
            )
            assert [r[0] for r in rows] == script.read_text().splitlines()
            assert all(str(r[1]).split("/")[-1][0].isdigit() for r in rows), rows

    asyncio.run(scenario())


# -- error groups ---------------------------------------------------------------------------------


def test_errors_frames_group_failures_by_kind_with_counts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    flaky = SimBehaviour(
        latency_median=0.02,
        latency_sigma=0.0,
        reuse_images=8,
        image_size=64,
        failure_rate=0.3,
        seed=7,
    )

    def check(errors: m.Message, by_kind: dict[str, int]) -> None:
        assert isinstance(errors, m.Errors)
        grouped: Counter[str] = Counter()
        for group in errors.groups:
            grouped[group.kind] += group.count
            assert 1 <= len(group.task_ids) <= min(20, group.count)
            assert group.kind in {"page_error", "network", "timeout"}
        assert dict(grouped) == by_kind
        counts = [g.count for g in errors.groups]
        assert counts == sorted(counts, reverse=True), "most frequent first"

    async def scenario() -> None:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            s.workers(3, flaky)
            submitted = await client.submit("flaky", prompts(150))
            job_id = submitted.job_id
            await client.subscribe(job_id)
            final = await client.progress_until(job_id, {"finished", "incomplete"})
            assert final.done + final.failed_terminal == 150
            end = client.messages.index(final)
            live = [x for x in client.messages[:end] if isinstance(x, m.Errors)]
            assert live, "errors frames arrive while the job runs"
            assert all(x.job_id == job_id for x in live)
            await until(lambda: s.service.active_job is None)
            failed = db_rows(
                data_dir,
                "SELECT a.error_kind, COUNT(*) FROM attempts a JOIN tasks t ON t.id = a.task_id "
                "WHERE t.job_id = ? AND a.outcome != 'done' GROUP BY a.error_kind",
                job_id,
            )
            by_kind = {str(kind): int(str(n)) for kind, n in failed}
            total = sum(by_kind.values())
            assert total >= 5, by_kind  # 30 % of ≥150 attempts failed
            for frame in live:  # each a consistent (possibly partial) picture
                assert sum(g.count for g in frame.groups) <= total
            # A new subscription is sent the groups as they stand. (Whether the old stream
            # catches up by itself: test_errors_stream_catches_up_with_the_last_failures.)
            mark = len(client.messages)
            await client.subscribe(job_id)
            again = await client.wait_for(lambda x: isinstance(x, m.Errors), start=mark)
            check(again, by_kind)

    asyncio.run(scenario())


def test_errors_stream_catches_up_with_the_last_failures(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    slow_commits = replace(
        FAST_RUN_SETTINGS, writer=WriterSettings(flush_interval=30.0, fsync=False)
    )

    async def worker(url: str, client: JobClient) -> None:
        """Fails its first attempt; holds the next until the client was sent an errors
        frame; then draws everything."""
        async with worker_connection(url, "one-failure") as ws:
            first = True
            while True:
                message = await recv_message(ws)
                if not isinstance(message, m.Assign):
                    continue
                if first:
                    first = False
                    error = m.TaskError(
                        task_id=message.task_id,
                        attempt=message.attempt,
                        kind=ErrorKind.PAGE_ERROR,
                        message="the page broke",
                    )
                    await ws.send(m.encode(error))
                    continue
                await client.wait_for(lambda x: isinstance(x, m.Errors))
                await send_result(ws, message, png_for(message))

    async def scenario() -> None:
        service, hub, url = await start_service_hub(data_dir, run=slow_commits)
        try:
            async with JobClient.connect(url) as client:
                submitted = await client.submit("one failure", ["panel one", "panel two"])
                await client.subscribe(submitted.job_id)
                serving = asyncio.create_task(worker(url, client))
                try:
                    await client.progress_until(submitted.job_id, {"finished"})
                    assert (await service.error_groups(submitted.job_id))[0].count == 1
                    # The stream runs every 0.25 s: within 3 s it has sent the real picture.
                    deadline = time.monotonic() + 3
                    latest: m.Errors | None = None
                    while time.monotonic() < deadline:
                        frames = [x for x in client.messages if isinstance(x, m.Errors)]
                        latest = frames[-1] if frames else None
                        if latest is not None and sum(g.count for g in latest.groups) == 1:
                            break
                        await asyncio.sleep(0.05)
                    assert latest is not None
                    assert [(g.kind, g.count) for g in latest.groups] == [("page_error", 1)]
                finally:
                    serving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await serving
        finally:
            await asyncio.wait_for(hub.stop(), 20)

    asyncio.run(scenario())


# -- workers come later; the hub stops; late results ---------------------------------------------


def test_worker_connecting_after_submit_gets_the_work(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            submitted = await client.submit("waits for workers", prompts(8))
            await client.subscribe(submitted.job_id)
            first = await client.progress_until(submitted.job_id, {"running"})
            assert first.done == 0
            assert s.service.active_job is None, "no worker: the job waits in the queue"
            s.workers(1, prefix="late")
            await client.progress_until(submitted.job_id, {"finished"})
            await until(lambda: s.service.active_job is None)
            workers = db_rows(
                data_dir,
                "SELECT DISTINCT a.worker_id FROM attempts a JOIN tasks t ON t.id = a.task_id "
                "WHERE t.job_id = ?",
                submitted.job_id,
            )
            assert workers == [("late-1",)]
            assert_job_complete_and_consistent(data_dir, submitted.job_id, 8)

    asyncio.run(scenario())


def test_hub_stop_says_bye_and_a_new_hub_resumes_the_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    remotes = [RemoteSimWorker(backoff_initial=0.05, backoff_max=0.2) for _ in range(2)]

    async def first_run() -> tuple[str, dict[int, str]]:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            workers = s.workers(2, SLOW_ENOUGH, remotes=remotes)
            submitted = await client.submit("interrupted", prompts(80))
            await client.subscribe(submitted.job_id)
            await client.wait_for(lambda x: isinstance(x, m.JobProgress) and x.done >= 5)
            await asyncio.wait_for(s.hub.stop(), 20)
            bye = await client.wait_for(lambda x: isinstance(x, m.Bye), timeout=5)
            assert isinstance(bye, m.Bye) and bye.reason == "shutdown"
            # The simulated tabs exit on the hub's bye (their stop event is never set).
            await asyncio.wait_for(workers, 10)
            assert [r.bye_reason for r in remotes] == ["shutdown", "shutdown"]
            assert all(r.unacked == {} for r in remotes), "every delivered image was acked"
            done = db_rows(
                data_dir,
                "SELECT id, sha256 FROM tasks WHERE job_id = ? AND state = 'done'",
                submitted.job_id,
            )
            assert 5 <= len(done) < 80
            return submitted.job_id, {int(str(i)): str(h) for i, h in done}

    async def second_run(job_id: str) -> None:
        async with stack(data_dir) as s, JobClient.connect(s.url) as client:
            listed = await client.request(m.ListJobs(request_id="ls"))
            assert isinstance(listed, m.Jobs) and [j.job_id for j in listed.jobs] == [job_id]
            s.workers(2)
            await client.subscribe(job_id)
            final = await client.progress_until(job_id, {"finished"})
            assert final.done == 80
            await until(lambda: s.service.active_job is None)

    job_id, done_before = asyncio.run(first_run())
    asyncio.run(second_run(job_id))
    assert_job_complete_and_consistent(data_dir, job_id, 80)
    after = {
        int(str(i)): str(h)
        for i, h in db_rows(data_dir, "SELECT id, sha256 FROM tasks WHERE job_id = ?", job_id)
    }
    assert {i: after[i] for i in done_before} == done_before, "nothing finished was redone"


def test_late_result_after_the_grace_is_kept_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    steady = SimBehaviour(latency_median=0.03, latency_sigma=0.0, reuse_images=8, image_size=64)
    leaver = RemoteSimWorker(
        backoff_initial=0.05,
        backoff_max=0.2,
        faults=RemoteFaults(disconnect_every=1, away=1.0),
    )
    healthy = RemoteSimWorker(backoff_initial=0.05, backoff_max=0.2)

    async def scenario() -> str:
        async with stack(data_dir, restart_grace=0.3) as s, JobClient.connect(s.url) as client:
            s.workers(1, steady, prefix="leaver", remotes=[leaver])
            await s.hub.wait_for_workers(1, timeout=5)
            submitted = await client.submit("late results", prompts(60))
            await client.subscribe(submitted.job_id)
            await until(lambda: leaver.disconnects >= 1)
            s.workers(1, steady, prefix="healthy", remotes=[healthy])
            final = await client.progress_until(submitted.job_id, {"finished"}, timeout=30)
            assert final.done == 60
            await until(lambda: s.service.active_job is None)
            return submitted.job_id

    job_id = asyncio.run(scenario())
    assert leaver.disconnects >= 1
    assert_job_complete_and_consistent(data_dir, job_id, 60)
    outcomes = Counter(
        str(r[0])
        for r in db_rows(
            data_dir,
            "SELECT a.outcome FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ?",
            job_id,
        )
    )
    assert outcomes["done"] == 60
    assert outcomes["superseded"] + outcomes["duplicate"] >= 1, outcomes
