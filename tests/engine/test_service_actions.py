"""The author's actions through the job service, on a stored job and on the running one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from novelgen_desktop.engine.joblock import JobLock
from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.engine.scheduler import QueueMove
from novelgen_desktop.engine.service import JobService, specs_from_prompts
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.sim.worker import SimBehaviour, SimulatedWorker
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import EventLogged

FAST = SimBehaviour(latency_median=0.005, latency_sigma=0.0, image_size=32, reuse_images=4)


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return resolve_data_dir(tmp_path / "data")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


async def order_of(service: JobService, job_id: str) -> list[int]:
    rows = [r for r in await service.task_rows(job_id) if r.queue_position is not None]
    return [r.task_id for r in sorted(rows, key=lambda r: r.queue_position or 0)]


def test_moves_on_a_waiting_job_are_stored_and_decide_the_dispatch_order(
    paths: DataPaths,
) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts([f"panel {i}" for i in range(1, 7)])
            job, _ = await service.submit("order", specs)
            ids = await order_of(service, job.id)
            assert await service.move_tasks(job.id, [ids[4]], QueueMove.TOP) == 1
            await service.move_tasks(job.id, [ids[0]], QueueMove.BOTTOM)
            await service.move_tasks(job.id, [ids[3]], QueueMove.UP)
            expected = [ids[4], ids[1], ids[3], ids[2], ids[5], ids[0]]
            assert await order_of(service, job.id) == expected
            await service.change_priority(job.id, [ids[5]], +1)
            expected = [ids[5], ids[4], ids[1], ids[3], ids[2], ids[0]]
            assert await order_of(service, job.id) == expected
            # One worker, one at a time: the images are made in exactly that order.
            service.add_worker(SimulatedWorker("w1", "a1", FAST))

            async def finished() -> bool:
                return (await service.view(job.id)).state is JobState.FINISHED

            await until(finished)
        finally:
            await service.stop()
        with Store(paths.database) as store:
            attempts = [
                row[0]
                for row in store.execute(
                    "SELECT task_id FROM attempts ORDER BY started_at, task_id"
                ).fetchall()
            ]
        assert attempts == expected

    run(scenario)


def test_queue_moves_survive_a_restart(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        specs, _ = specs_from_prompts(["a", "b", "c"])
        job, _ = await service.submit("kept", specs)
        ids = await order_of(service, job.id)
        await service.move_tasks(job.id, [ids[2]], QueueMove.TOP)
        await service.stop()
        again = JobService(paths)
        await again.start()
        try:
            assert await order_of(again, job.id) == [ids[2], ids[0], ids[1]]
        finally:
            await again.stop()

    run(scenario)


def test_actions_on_the_running_job_reach_its_scheduler_and_the_log(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        events: list[EventLogged] = []
        service.on_event(events.append)
        await service.start()
        try:
            specs, _ = specs_from_prompts([f"panel {i}" for i in range(40)])
            job, _ = await service.submit("live", specs)
            slow = SimBehaviour(latency_median=0.05, latency_sigma=0.0, image_size=32)
            service.add_worker(SimulatedWorker("w1", "a1", slow))

            async def running() -> bool:
                return service.runner is not None and (await service.view(job.id)).done > 0

            await until(running)
            order = await order_of(service, job.id)
            last = order[-1]
            assert await service.move_tasks(job.id, [last], QueueMove.TOP) == 1
            assert (await order_of(service, job.id))[0] == last
            assert service.runner is not None
            assert service.runner.scheduler.queue_order()[0] == last
            service.hold_worker("w1", True)
            assert "w1" in service.runner.scheduler.held_workers
            done_then = (await service.view(job.id)).done
            await asyncio.sleep(0.3)
            assert (await service.view(job.id)).done <= done_then + 1  # its one attempt
            service.hold_worker("w1", False)

            async def finished() -> bool:
                return (await service.view(job.id)).state is JobState.FINISHED

            await until(finished)
        finally:
            await service.stop()
        kinds = [e.kind for e in events]
        for kind in ("job_submitted", "job_started", "queue_moved", "worker_paused"):
            assert kind in kinds
        assert kinds[-1] == "job_finished"

    run(scenario)


def test_edit_a_refused_prompt_and_requeue_it_on_a_finished_job(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts(["a forbidden thing", "a fine thing"])
            job, _ = await service.submit("refusals", specs)
            refuse = SimBehaviour(latency_median=0.005, latency_sigma=0.0, refusal_rate=1.0)
            service.add_worker(SimulatedWorker("w1", "a1", refuse))

            async def ended() -> bool:
                return (await service.view(job.id)).state is JobState.INCOMPLETE

            await until(ended)
            rows = await service.task_rows(job.id)
            assert {r.state for r in rows} == {TaskState.REFUSED}
            with pytest.raises(ConfigError, match="empty"):
                await service.edit_prompt(job.id, rows[0].task_id, "   ")
            service.workers.clear()
            service.add_worker(SimulatedWorker("w2", "a2", FAST))
            await service.edit_prompt(job.id, rows[0].task_id, "a harmless thing")
            revived = await service.retry_all_dead(job.id, include_refused=True)
            assert revived == [rows[1].task_id]

            async def finished() -> bool:
                return (await service.view(job.id)).state is JobState.FINISHED

            await until(finished)
            with pytest.raises(ConfigError, match="only a refused, dead or cancelled"):
                await service.edit_prompt(job.id, rows[0].task_id, "again")
            after = {r.task_id: r for r in await service.task_rows(job.id)}
            assert after[rows[0].task_id].prompt == "a harmless thing"
            assert all(r.state is TaskState.DONE for r in after.values())
        finally:
            await service.stop()

    run(scenario)


def test_a_job_held_by_another_process_is_refused_with_its_reason(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts(["a", "b"])
            job, _ = await service.submit("busy", specs)
            ids = await order_of(service, job.id)
            with JobLock(paths.job_lock(job.id), job.id), pytest.raises(ConfigError):
                await service.move_tasks(job.id, [ids[1]], QueueMove.TOP)
            assert await order_of(service, job.id) == ids  # nothing changed
            await service.cancel(job.id)
            with pytest.raises(ConfigError, match="cancelled"):
                await service.move_tasks(job.id, [ids[1]], QueueMove.TOP)
        finally:
            await service.stop()

    run(scenario)
