"""An image made for an attempt issued before the hub restarted is not thrown away: the worker
resends it to the new hub process, which checks in the store that the attempt was this
worker's, and keeps it — judged as a late result if the job runs, parked at the task's planned
path (adopted by the job's next run) if not. Paid once, drawn once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from server_testkit import TOKEN, png_for, recv_message, send_result, worker_connection

from novelgen_desktop.engine.model import JobState
from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.service import JobService, ServiceSettings, specs_from_prompts
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub
from tests.integration.helpers import assert_job_complete_and_consistent

QUICK = ServiceSettings(
    run=RunSettings(
        policy=SchedulerPolicy(backoff_base=0.01), stop_grace=0.2, wait_for_workers=True
    )
)


@asynccontextmanager
async def hub_process(data: Path) -> AsyncIterator[tuple[JobService, str]]:
    """One 'hub process': a job service and a hub on the data dir, stopped on exit."""
    service = JobService(resolve_data_dir(data), QUICK)
    await service.start()
    hub = Hub(TOKEN, service=service)
    port = await hub.start("127.0.0.1", 0)
    try:
        yield service, f"ws://127.0.0.1:{port}/"
    finally:
        await hub.stop()


async def _serve_all(ws: object, service: JobService, job_id: str) -> list[m.Assign]:
    """Answer every assign until the job is finished; the assigns seen."""
    seen: list[m.Assign] = []

    async def answer() -> None:
        while True:
            message = await recv_message(ws)  # type: ignore[arg-type]
            if isinstance(message, m.Assign):
                seen.append(message)
                await send_result(ws, message, png_for(message))  # type: ignore[arg-type]

    answering = asyncio.create_task(answer())
    try:
        async with asyncio.timeout(20):
            while (await service.view(job_id)).state is not JobState.FINISHED:
                await asyncio.sleep(0.02)
    finally:
        answering.cancel()
    return seen


def _attempts(data: Path, task_id: str) -> list[tuple[int, str | None, str | None]]:
    with sqlite3.connect(data / "novelgen.sqlite") as conn:
        return conn.execute(
            "SELECT attempt, outcome, worker_id FROM attempts WHERE task_id = ? ORDER BY attempt",
            (int(task_id),),
        ).fetchall()


def test_image_of_an_attempt_from_before_a_restart_is_kept_by_the_running_job(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"

    async def scenario() -> tuple[str, m.Assign, list[m.Assign]]:
        async with hub_process(data) as (service, url):
            job, _ = await service.submit("restart", specs_from_prompts(["one", "two"])[0])
            async with worker_connection(url, "tab-1") as ws:
                first = await asyncio.wait_for(recv_message(ws), 10)
                assert isinstance(first, m.Assign)
        # The hub went away with attempt 1 in flight; tab-1 finished drawing meanwhile.
        async with hub_process(data) as (service, url), worker_connection(url, "tab-1") as ws:
            await send_result(ws, first, png_for(first))
            ack = await asyncio.wait_for(recv_message(ws), 10)
            while not isinstance(ack, m.Ack):
                ack = await asyncio.wait_for(recv_message(ws), 10)
            assert (ack.task_id, ack.attempt, ack.outcome) == (
                first.task_id,
                first.attempt,
                "accepted",
            )
            seen = await _serve_all(ws, service, job.id)
        return job.id, first, seen

    job_id, first, seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert_job_complete_and_consistent(data, job_id, 2)
    attempts = _attempts(data, first.task_id)
    assert (1, "done", "tab-1") in attempts
    redrawn = [a for a in seen if a.task_id == first.task_id]
    assert all(o != "done" for n, o, _w in attempts if n != 1), (attempts, redrawn)


def test_image_for_a_job_that_is_not_running_is_parked_and_adopted(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def scenario() -> tuple[str, m.Assign, list[m.Assign]]:
        async with hub_process(data) as (service, url):
            job, _ = await service.submit("paused", specs_from_prompts(["one", "two"])[0])
            async with worker_connection(url, "tab-1") as ws:
                first = await asyncio.wait_for(recv_message(ws), 10)
                assert isinstance(first, m.Assign)
                await service.pause(job.id)
        async with hub_process(data) as (service, url):
            assert (await service.view(job.id)).state is JobState.PAUSED
            async with worker_connection(url, "tab-1") as ws:
                await send_result(ws, first, png_for(first))
                ack = await asyncio.wait_for(recv_message(ws), 10)
                assert isinstance(ack, m.Ack) and ack.outcome == "accepted"
                await service.resume(job.id)
                seen = await _serve_all(ws, service, job.id)
        return job.id, first, seen

    job_id, first, seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert_job_complete_and_consistent(data, job_id, 2)
    assert [a.task_id for a in seen] != [] and first.task_id not in [a.task_id for a in seen]


def test_another_workers_attempt_is_still_refused_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def scenario() -> m.Message:
        async with hub_process(data) as (service, url):
            await service.submit("owner", specs_from_prompts(["one"])[0])
            async with worker_connection(url, "tab-1") as ws:
                first = await asyncio.wait_for(recv_message(ws), 10)
                assert isinstance(first, m.Assign)
        async with hub_process(data) as (_service, url), worker_connection(url, "impostor") as ws:
            await send_result(ws, first, png_for(first))
            return await asyncio.wait_for(recv_message(ws), 10)

    answer = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(answer, m.Error) and answer.code == "unknown_task"
