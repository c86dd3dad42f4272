"""A worker drops mid-task, is not back within the grace period, its task goes to another
worker; then its image arrives after all. The image is accepted once and the other worker is
told to cancel its now useless attempt: one image, paid for once."""

from __future__ import annotations

import asyncio
import sqlite3
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


def test_late_result_is_accepted_once_and_the_duplicate_attempt_is_cancelled(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"

    async def scenario() -> str:
        settings = ServiceSettings(
            run=RunSettings(policy=SchedulerPolicy(backoff_base=0.01), wait_for_workers=True)
        )
        service = JobService(resolve_data_dir(data), settings)
        await service.start()
        hub = Hub(TOKEN, restart_grace=0.3, service=service)
        port = await hub.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/"
        try:
            job, _ = await service.submit("late", specs_from_prompts(["the one panel"])[0])
            async with worker_connection(url, "tab-a") as a:
                first = await asyncio.wait_for(recv_message(a), 10)
                assert isinstance(first, m.Assign) and first.attempt == 1
            # tab-a is gone longer than the grace period: the task goes back to the queue.
            async with worker_connection(url, "tab-b") as b:
                second = await asyncio.wait_for(recv_message(b), 10)
                assert isinstance(second, m.Assign)
                assert (second.task_id, second.attempt) == (first.task_id, 2)
                # tab-a comes back (a new process: it holds nothing) with attempt 1's image.
                async with worker_connection(url, "tab-a") as a_again:
                    await send_result(a_again, first, png_for(first))
                    ack = await asyncio.wait_for(recv_message(a_again), 10)
                    assert isinstance(ack, m.Ack) and ack.outcome == "accepted"
                    cancel = await asyncio.wait_for(recv_message(b), 10)
                    assert isinstance(cancel, m.Cancel)
                    assert (cancel.task_id, cancel.attempt) == (first.task_id, 2)
                    # tab-b's image arrives anyway (it was already drawn): a duplicate.
                    await send_result(b, second, png_for(second))
                    duplicate = await asyncio.wait_for(recv_message(b), 10)
                    assert isinstance(duplicate, m.Ack) and duplicate.outcome == "duplicate"
                    async with asyncio.timeout(10):
                        while (await service.view(job.id)).state is not JobState.FINISHED:
                            await asyncio.sleep(0.02)
            return job.id
        finally:
            await hub.stop()

    job_id = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert_job_complete_and_consistent(data, job_id, 1)
    with sqlite3.connect(data / "novelgen.sqlite") as conn:
        outcomes = conn.execute("SELECT attempt, outcome FROM attempts ORDER BY attempt").fetchall()
    assert outcomes[0] == (1, "done")
    assert outcomes[1][0] == 2 and outcomes[1][1] in ("superseded", "duplicate")
