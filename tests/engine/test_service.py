"""The job service without sockets: queue order, waiting for workers, control, views."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from novelgen_desktop.engine.joblock import JobLock
from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.service import JobService, ServiceSettings, specs_from_prompts
from novelgen_desktop.errors import ConfigError, JobNotFoundError
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.sim.worker import SimBehaviour, SimulatedWorker
from tests.integration.helpers import assert_job_complete_and_consistent

FAST = SimBehaviour(latency_median=0.005, latency_sigma=0.0, image_size=32, reuse_images=4)


def worker(name: str, behaviour: SimBehaviour = FAST) -> SimulatedWorker:
    return SimulatedWorker(name, f"account-{name}", behaviour)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


async def state_of(service: JobService, job_id: str) -> JobState:
    return (await service.view(job_id)).state


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return resolve_data_dir(tmp_path / "data")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_specs_from_prompts_skips_blank_ones_and_keeps_order() -> None:
    specs, skipped = specs_from_prompts(["  a  ", "", " \n", "b"])
    assert [s.text for s in specs] == ["a", "b"]
    assert [s.source.line for s in specs] == [1, 4]
    assert skipped == 2


def test_a_job_waits_for_workers_then_runs_to_the_end(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts([f"panel {i}" for i in range(12)])
            job, count = await service.submit("waits", specs)
            assert count == 12
            await asyncio.sleep(0.3)
            view = await service.view(job.id)
            assert view.state is JobState.RUNNING and view.done == 0 and not view.active
            service.add_worker(worker("w1"))
            service.add_worker(worker("w2"))

            async def finished() -> bool:
                return await state_of(service, job.id) is JobState.FINISHED

            await until(finished)
        finally:
            await service.stop()
        assert_job_complete_and_consistent(paths.root, job.id, 12)

    run(scenario)


def test_jobs_run_one_at_a_time_by_priority_then_submission(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        started: list[str] = []

        def note() -> None:
            active = service.active_job
            if active is not None and (not started or started[-1] != active.id):
                started.append(active.id)

        service.on_change(note)
        try:
            specs, _ = specs_from_prompts([f"p{i}" for i in range(3)])
            low, _ = await service.submit("low", specs, priority=0)
            high, _ = await service.submit("high", specs, priority=5)
            later, _ = await service.submit("later", specs, priority=0)
            service.add_worker(worker("w1"))

            async def all_done() -> bool:
                views = await service.list_jobs()
                return all(v.state is JobState.FINISHED for v in views)

            await until(all_done)
            listed = [v.job_id for v in await service.list_jobs()]
        finally:
            await service.stop()
        assert started == [high.id, low.id, later.id]
        assert listed == [later.id, high.id, low.id]  # newest first

    run(scenario)


def test_cancel_a_job_with_no_worker_left_ends_it(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts([f"p{i}" for i in range(5)])
            job, _ = await service.submit("orphan", specs)
            await service.cancel(job.id)
            assert await state_of(service, job.id) is JobState.CANCELLED
            with pytest.raises(ConfigError, match="already cancelled"):
                await service.cancel(job.id)
            with pytest.raises(ConfigError, match="only a running or paused job"):
                await service.resume(job.id)
            with pytest.raises(JobNotFoundError):
                await service.pause("no-such-job")
            with pytest.raises(JobNotFoundError):  # programs name jobs exactly: no prefixes
                await service.pause(job.id[:6])
            with pytest.raises(JobNotFoundError):
                await service.view(job.id.upper())
        finally:
            await service.stop()

    run(scenario)


def test_pause_the_running_job_lets_the_next_one_run_and_resume_finishes_it(
    paths: DataPaths,
) -> None:
    slow = SimBehaviour(latency_median=0.05, latency_sigma=0.0, image_size=32, reuse_images=4)

    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            first, _ = await service.submit("first", specs_from_prompts(["a"] * 40)[0])
            second, _ = await service.submit("second", specs_from_prompts(["b"] * 3)[0])
            service.add_worker(worker("w1", slow))

            async def some_done() -> bool:
                return (await service.view(first.id)).done >= 3

            await until(some_done)
            await service.pause(first.id)

            async def second_finished() -> bool:
                return await state_of(service, second.id) is JobState.FINISHED

            await until(second_finished)
            paused = await service.view(first.id)
            assert paused.state is JobState.PAUSED and paused.done < 40
            await service.resume(first.id)

            async def first_finished() -> bool:
                return await state_of(service, first.id) is JobState.FINISHED

            await until(first_finished)
        finally:
            await service.stop()
        assert_job_complete_and_consistent(paths.root, first.id, 40)
        assert_job_complete_and_consistent(paths.root, second.id, 3)

    run(scenario)


def test_a_job_locked_by_another_process_is_skipped_not_run_twice(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            locked, _ = await service.submit("locked", specs_from_prompts(["x"] * 2)[0])
            free, _ = await service.submit("free", specs_from_prompts(["y"] * 2)[0])
            with JobLock(paths.job_lock(locked.id), locked.id):
                service.add_worker(worker("w1"))

                async def free_done() -> bool:
                    return await state_of(service, free.id) is JobState.FINISHED

                await until(free_done)
                assert (await service.view(locked.id)).done == 0
        finally:
            await service.stop()

    run(scenario)


def test_error_groups_and_live_view(paths: DataPaths) -> None:
    failing = SimBehaviour(
        latency_median=0.0, latency_sigma=0.0, image_size=32, reuse_images=4, rate_limit_every=3,
        rate_limit_reset=0.0,
    )  # fmt: skip

    async def scenario() -> None:
        quick = RunSettings(
            policy=SchedulerPolicy(min_cooldown=0.05, backoff_base=0.05), wait_for_workers=True
        )
        service = JobService(paths, ServiceSettings(run=quick))
        await service.start()
        try:
            job, _ = await service.submit("errs", specs_from_prompts(["z"] * 9)[0])
            service.add_worker(worker("w1", failing))

            async def finished() -> bool:
                return await state_of(service, job.id) is JobState.FINISHED

            await until(finished, 60)
            groups = await service.error_groups(job.id)
        finally:
            await service.stop()
        (group,) = groups
        assert group.kind == "rate_limited" and group.count >= 3
        assert group.task_ids and group.last_at is not None and group.last_at <= time.time()

    run(scenario)


def test_submit_refuses_a_bad_template_and_nothing_is_created(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            with pytest.raises(ConfigError):
                await service.submit("bad", specs_from_prompts(["a"])[0], naming="{nope}")
            assert await service.list_jobs() == []
        finally:
            await service.stop()

    run(scenario)


def test_counts_in_views_match_the_store(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            job, _ = await service.submit("counts", specs_from_prompts(["c"] * 4)[0])
            service.add_worker(worker("w1"))

            async def finished() -> bool:
                return await state_of(service, job.id) is JobState.FINISHED

            await until(finished)
            view = await service.view(job.id)
            counts = service.store.count_by_state(job.id)
        finally:
            await service.stop()
        assert (view.total, view.done, view.percent) == (4, 4, 100.0)
        assert counts[TaskState.DONE] == 4

    run(scenario)
