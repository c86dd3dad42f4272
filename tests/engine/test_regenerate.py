"""Regenerate a finished panel: the old image is set aside (never deleted), the task is drawn
again at its planned path, and the store, the manifest and the files agree afterwards —
whether the job was finished (the stored job changes) or running (its runner changes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from novelgen_desktop.engine.model import Assignment, JobState, TaskState
from novelgen_desktop.engine.replaced import REPLACED_DIR
from novelgen_desktop.engine.service import JobService, specs_from_prompts
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.output.writer import sha256_file
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.sim.render import render_panel_png
from novelgen_desktop.sim.worker import SimBehaviour, SimulatedWorker
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import MANIFEST_NAME
from novelgen_desktop.store.records import TaskRecord

FAST = SimBehaviour(latency_median=0.01, latency_sigma=0.0, image_size=32)


class RedrawingWorker(SimulatedWorker):
    """Draws a different picture for each attempt, like ChatGPT: the stock simulator draws
    the same one for the same prompt, and a new image must be told from the old one."""

    def _render(self, assignment: Assignment) -> bytes:
        return render_panel_png(
            assignment.prompt,
            width=self.behaviour.image_size,
            height=self.behaviour.image_size,
            seed=f"{assignment.task_id}:{assignment.attempt}",
            label=f"attempt {assignment.attempt}",
        )


def worker(name: str, behaviour: SimBehaviour = FAST) -> RedrawingWorker:
    return RedrawingWorker(name, f"account-{name}", behaviour)


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return resolve_data_dir(tmp_path / "data")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


async def finished(service: JobService, job_id: str) -> None:
    async def done() -> bool:
        view = await service.view(job_id)
        return view.state is JobState.FINISHED and not view.active

    await until(done)


def stored(paths: DataPaths, job_id: str) -> tuple[Path, dict[int, TaskRecord], list[tuple]]:
    """(output folder, tasks by id, attempts as (task, attempt, outcome)) from the store."""
    with Store(paths.database, check=False) as store:
        job = store.find_job(job_id, exact=True)
        tasks = {t.id: t for t in store.load_tasks(job_id)}
        attempts = [
            tuple(r)
            for r in store.execute(
                "SELECT a.task_id, a.attempt, a.outcome FROM attempts a "
                "JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? ORDER BY 1, 2",
                (job_id,),
            )
        ]
    return Path(job.out_dir), tasks, attempts


def manifest_rows(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / MANIFEST_NAME).read_text().splitlines()]


def assert_consistent_after_regenerating(
    paths: DataPaths, job_id: str, regenerated: int, old_sha: str
) -> None:
    """Every task done once, files == store == the manifest's last word on each task, and
    the regenerated task's old image kept under .replaced with its old bytes."""
    out_dir, tasks, attempts = stored(paths, job_id)
    assert {t.state for t in tasks.values()} == {TaskState.DONE}
    done = [(task, attempt) for task, attempt, outcome in attempts if outcome == "done"]
    assert sorted(task for task, _ in done) == sorted(tasks), "exactly one done attempt each"
    replaced = [(task, attempt) for task, attempt, outcome in attempts if outcome == "replaced"]
    assert [task for task, _ in replaced] == [regenerated]
    assert tasks[regenerated].done_attempt == replaced[0][1] + 1  # drawn again, next attempt

    # The images outside .replaced are exactly the recorded ones, each with its recorded hash.
    images = sorted(
        p.relative_to(out_dir).as_posix()
        for p in out_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME and REPLACED_DIR not in p.parts
    )
    assert images == sorted(t.output_path or "" for t in tasks.values())
    for task in tasks.values():
        assert task.output_path is not None
        assert sha256_file(out_dir / task.output_path) == task.sha256
    new = tasks[regenerated]
    assert new.output_path is not None and new.sha256 != old_sha
    assert new.output_path.split(".")[0] == new.planned_path.split(".")[0]  # the planned path

    # The old image is kept, byte for byte, and the manifest says where it went.
    kept = [p for p in (out_dir / REPLACED_DIR).rglob("*") if p.is_file()]
    assert len(kept) == 1 and sha256_file(kept[0]) == old_sha
    rows = manifest_rows(out_dir)
    notes = [r for r in rows if r.get("replaced_task") == regenerated]
    assert len(notes) == 1
    assert notes[0]["moved_to"] == kept[0].relative_to(out_dir).as_posix()
    assert notes[0]["sha256"] == old_sha
    last = {r["task"]: r for r in rows if "task" in r}  # the last row of each task wins
    assert {k: (r["file"], r["sha256"]) for k, r in last.items()} == {
        t.id: (t.output_path, t.sha256) for t in tasks.values()
    }


def test_regenerate_a_finished_job_requeues_the_task_and_runs_the_job_again(
    paths: DataPaths,
) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        events: list[str] = []
        service.on_event(lambda e: events.append(e.kind))
        try:
            specs, _ = specs_from_prompts(["a fox", "a whale", "a lighthouse"])
            job, _ = await service.submit("three", specs)
            service.add_worker(worker("w1"))
            await finished(service, job.id)
            out_dir, tasks, _ = stored(paths, job.id)
            target = sorted(tasks)[1]
            old = tasks[target]
            assert old.output_path is not None and old.sha256 is not None
            # Held: the job cannot start again, so its stored state can be looked at.
            service.hold_worker("w1", True)

            replaced = await service.regenerate_task(job.id, target)

            assert replaced.old_path == old.output_path
            assert replaced.moved_to is not None and replaced.moved_to.startswith(REPLACED_DIR)
            assert not (out_dir / old.output_path).exists()
            assert sha256_file(out_dir / replaced.moved_to) == old.sha256
            _, tasks, attempts = stored(paths, job.id)
            task = tasks[target]
            assert task.state is TaskState.QUEUED
            assert (task.output_path, task.sha256, task.size) == (None, None, None)
            assert (task.done_attempt, task.finished_at) == (None, None)
            assert (target, old.done_attempt, "replaced") in attempts
            assert (await service.view(job.id)).done == 2
            assert "task_regenerated" in events
            rows = {r.task_id: r for r in await service.task_rows(job.id)}
            assert rows[target].state is TaskState.QUEUED and rows[target].output_path is None

            service.hold_worker("w1", False)
            await finished(service, job.id)
        finally:
            await service.stop()
        assert_consistent_after_regenerating(paths, job.id, target, old.sha256)

    run(scenario)


def test_regenerate_in_the_running_job_goes_through_its_runner(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts([f"panel {i}" for i in range(6)])
            job, _ = await service.submit("six", specs)
            service.add_worker(worker("w1", SimBehaviour(latency_median=0.05, image_size=32)))

            async def first_done() -> bool:
                return (await service.view(job.id)).done >= 1

            await until(first_done)
            service.hold_worker("w1", True)  # the job stays running, nothing new dispatched
            runner = service.runner
            assert runner is not None and service.active_job is not None
            assert service.active_job.id == job.id
            done_task = next(
                r.task_id for r in await service.task_rows(job.id) if r.state is TaskState.DONE
            )
            await runner.writer.flush()
            out_dir, tasks, _ = stored(paths, job.id)
            old = tasks[done_task]
            assert old.sha256 is not None and old.output_path is not None
            before = await service.view(job.id)

            replaced = await service.regenerate_task(job.id, done_task)

            assert service.runner is runner  # changed live, not by stopping the job
            assert runner.scheduler.tasks[done_task].state is TaskState.QUEUED
            after = await service.view(job.id)
            assert after.active and after.done == before.done - 1
            assert replaced.moved_to is not None
            assert sha256_file(out_dir / replaced.moved_to) == old.sha256
            assert not (out_dir / old.output_path).exists()
            await runner.writer.flush()
            _, tasks, attempts = stored(paths, job.id)
            assert tasks[done_task].state is TaskState.QUEUED
            assert (done_task, old.done_attempt, "replaced") in attempts

            with pytest.raises(ConfigError, match="only a finished image"):
                await service.regenerate_task(job.id, done_task)  # queued now: nothing to redo

            service.hold_worker("w1", False)
            await finished(service, job.id)
        finally:
            await service.stop()
        assert_consistent_after_regenerating(paths, job.id, done_task, old.sha256)

    run(scenario)


def test_a_task_without_an_image_or_a_missing_file_is_handled(paths: DataPaths) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts(["one", "two"])
            job, _ = await service.submit("two", specs)
            first, second = sorted(t.task_id for t in await service.task_rows(job.id))
            with pytest.raises(ConfigError, match=r"task .* is queued: only a finished image"):
                await service.regenerate_task(job.id, first)
            with pytest.raises(ConfigError, match="not in job"):
                await service.regenerate_task(job.id, 10_000)
            service.add_worker(worker("w1"))
            await finished(service, job.id)
            service.hold_worker("w1", True)
            out_dir, tasks, _ = stored(paths, job.id)
            path = tasks[second].output_path
            assert path is not None
            (out_dir / path).unlink()  # the author deleted it by hand

            replaced = await service.regenerate_task(job.id, second)

            assert replaced.moved_to is None  # nothing to keep; the task is requeued anyway
            _, tasks, _ = stored(paths, job.id)
            assert tasks[second].state is TaskState.QUEUED

            await service.cancel(job.id)
            with pytest.raises(ConfigError, match="cancelled"):
                await service.regenerate_task(job.id, first)
        finally:
            await service.stop()

    run(scenario)


def test_regenerate_while_the_job_winds_down_waits_then_changes_the_stored_job(
    paths: DataPaths,
) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts([f"panel {i}" for i in range(8)])
            job, _ = await service.submit("eight", specs)
            slow = SimBehaviour(latency_median=0.3, latency_sigma=0.0, image_size=32)
            service.add_worker(worker("w1", slow))

            async def first_done() -> bool:
                return (await service.view(job.id)).done >= 1

            await until(first_done)
            runner = service.runner
            assert runner is not None
            done_task = next(
                r.task_id for r in await service.task_rows(job.id) if r.state is TaskState.DONE
            )
            await service.pause(job.id)  # an attempt is in flight: the runner winds down
            assert runner.winding_down and service.runner is runner

            replaced = await service.regenerate_task(job.id, done_task)

            assert service.runner is None  # it waited for the run to end
            assert replaced.moved_to is not None
            _, tasks, attempts = stored(paths, job.id)
            assert tasks[done_task].state is TaskState.QUEUED
            assert (await service.view(job.id)).state is JobState.PAUSED  # stays paused
            assert [(a[0], a[2]) for a in attempts if a[2] == "replaced"] == [
                (done_task, "replaced")
            ]
            await service.resume(job.id)
            await finished(service, job.id)
            _, tasks, _ = stored(paths, job.id)
            assert {t.state for t in tasks.values()} == {TaskState.DONE}
        finally:
            await service.stop()

    run(scenario)
