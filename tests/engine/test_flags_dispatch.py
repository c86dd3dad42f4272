"""What each feature flag does to dispatch (docs/flags.md), read at every decision.

The scheduler's kill switches are tested as rules on the pure scheduler; the per-task flags
(reference images, fresh chat, experiments) through a real JobService with simulated tabs
that remember what they were asked, and the attempt rows the store recorded.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from novelgen_desktop.engine.model import ChatStrategy, JobState
from novelgen_desktop.engine.scheduler import Scheduler, SchedulerPolicy, TaskSlot
from novelgen_desktop.engine.service import JobService
from novelgen_desktop.flags.document import FlagSetting, Variant
from novelgen_desktop.flags.flagset import FixedFlags, FlagSet, task_unit
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.prompts import parse_text
from novelgen_desktop.store.database import Store
from novelgen_desktop.style import StyleBible, load_style_bible
from tests.engine.recording_worker import RecordingWorker
from tests.style.style_testutil import write_png

BIBLE = """
[bible]
name = "Hallow Point"

[style]
medium = "ink and watercolour"

[characters.Maren]
description = "a tall woman of forty in a red wool coat"
references = ["maren.png"]
"""
SCRIPT = "".join(
    f"PAGE {page}\n" + "".join(f"Panel {n}\n@Maren looks out, {page}.{n}.\n" for n in (1, 2, 3))
    for page in (1, 2, 3, 4)
)


def off(*names: str) -> FlagSet:
    return FlagSet(overrides={name: FlagSetting(value=False) for name in names})


# --- the scheduler's switches -----------------------------------------------------------------


def scheduler(tasks: int, workers: int, sequences: list[str | None] | None = None) -> Scheduler:
    s = Scheduler(SchedulerPolicy(), rng=random.Random(0))
    seqs = sequences or [None] * tasks
    s.load(TaskSlot(id=i, seq=i, sequence=seqs[i - 1]) for i in range(1, tasks + 1))
    for n in range(1, workers + 1):
        s.add_worker(f"w{n}", f"a{n}")
    return s


def test_single_worker_mode_gives_work_to_one_worker_only() -> None:
    s = scheduler(6, 3)
    s.single_worker = True
    first = s.next_assignment("w1", 0.0)
    assert first is not None
    assert s.next_assignment("w2", 0.0) is None and s.next_assignment("w3", 0.0) is None
    assert s.offer_result(first.task_id, first.attempt)
    s.confirm_done(first.task_id, first.attempt)
    # With w1 idle again, it is still the one: the longest-connected worker able to work.
    assert s.next_assignment("w2", 1.0) is None
    assert s.next_assignment("w1", 1.0) is not None


def test_single_worker_mode_moves_on_when_that_worker_cannot_work() -> None:
    s = scheduler(4, 3)
    s.single_worker = True
    s.block_worker("w1", "login required")
    assert s.next_assignment("w3", 0.0) is None  # w2 is next in line, not w3
    assert s.next_assignment("w2", 0.0) is not None


def test_single_worker_mode_passes_over_a_worker_that_is_not_ready() -> None:
    """A tab reconnecting or closing (the runner's view, not the scheduler's) is not the
    one tab: otherwise nobody would work until it came back or was given up."""
    s = scheduler(4, 3)
    s.single_worker = True
    s.not_ready = frozenset({"w1"})
    assert s.next_assignment("w2", 0.0) is not None
    assert s.next_assignment("w3", 0.0) is None


def test_leaving_single_worker_mode_lets_everyone_work_again() -> None:
    s = scheduler(4, 3)
    s.single_worker = True
    assert s.next_assignment("w1", 0.0) is not None
    assert s.next_assignment("w2", 0.0) is None
    s.single_worker = False
    assert s.next_assignment("w2", 0.0) is not None
    assert s.next_assignment("w3", 0.0) is not None


def test_an_attempt_in_flight_elsewhere_finishes_before_the_single_worker_starts() -> None:
    """Switching to one tab never calls back paid work: w2's attempt goes on, and w1 waits
    for it rather than two tabs running in single-tab mode."""
    s = scheduler(4, 2)
    held = s.next_assignment("w2", 0.0)
    assert held is not None
    s.single_worker = True
    assert s.next_assignment("w1", 0.0) is None
    assert s.offer_result(held.task_id, held.attempt)
    s.confirm_done(held.task_id, held.attempt)
    assert s.next_assignment("w1", 1.0) is not None


def test_sequences_off_runs_a_paged_job_as_panel() -> None:
    s = scheduler(4, 2, ["p1", "p1", "p1", "p1"])
    s.sequences_enabled = False
    one, two = s.next_assignment("w1", 0.0), s.next_assignment("w2", 0.0)
    assert one is not None and two is not None  # both tabs take panels of one page
    assert one.sequence is None and not one.new_chat
    assert two.sequence is None and not two.new_chat


# --- per-task flags through a running service ----------------------------------------------------


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return resolve_data_dir(tmp_path / "data")


@pytest.fixture
def bible(tmp_path: Path) -> StyleBible:
    folder = tmp_path / "bible"
    folder.mkdir()
    write_png(folder / "maren.png", (200, 30, 30), size=8)
    (folder / "bible.toml").write_text(BIBLE, encoding="utf-8")
    return load_style_bible(folder / "bible.toml")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def run_job(
    paths: DataPaths,
    flags: FixedFlags,
    bible: StyleBible,
    *,
    tabs: int = 2,
    strategy: ChatStrategy = ChatStrategy.PANEL,
    while_running: Callable[[list[RecordingWorker]], Awaitable[None]] | None = None,
) -> tuple[str, list[RecordingWorker]]:
    result = parse_text(SCRIPT, filename="book.script", format="fullscript")
    assert result.ok, result.issues
    service = JobService(paths, flags=flags)
    await service.start()
    workers = [RecordingWorker(f"w{n}") for n in range(1, tabs + 1)]
    try:
        job, _ = await service.submit("flags", result.specs, style=bible, chat_strategy=strategy)
        for worker in workers:
            service.add_worker(worker)
        if while_running is not None:
            await while_running(workers)
        async with asyncio.timeout(30):
            while True:
                view = await service.view(job.id)
                if view.state is JobState.FINISHED and not view.active:
                    break
                await asyncio.sleep(0.02)
    finally:
        await service.stop()
    return job.id, workers


def attempt_rows(paths: DataPaths, job_id: str) -> list[tuple[int, str | None, int | None]]:
    with Store(paths.database, check=False) as store:
        return [
            (row[0], row[1], row[2])
            for row in store.execute(
                "SELECT a.task_id, a.variants, a.flags_version FROM attempts a "
                "JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? ORDER BY 1",
                (job_id,),
            )
        ]


def test_reference_images_off_sends_the_composed_prompt_alone(
    paths: DataPaths, bible: StyleBible
) -> None:
    async def scenario() -> None:
        _job, workers = await run_job(paths, FixedFlags(off("reference_images")), bible)
        seen = [a for w in workers for a in w.seen]
        assert len(seen) == 12
        assert all(a.references == () for a in seen)
        assert all("red wool coat" in a.prompt for a in seen)  # still the composed prompt

    run(scenario)


def test_reference_images_switched_off_mid_job_applies_from_the_next_attempt(
    paths: DataPaths, bible: StyleBible
) -> None:
    flags = FixedFlags()

    async def switch(workers: list[RecordingWorker]) -> None:
        async with asyncio.timeout(20):
            while sum(len(w.seen) for w in workers) < 4:
                await asyncio.sleep(0.002)
        flags.current = off("reference_images")

    async def scenario() -> None:
        _job, workers = await run_job(paths, flags, bible, while_running=switch)
        seen = sorted((a for w in workers for a in w.seen), key=lambda a: int(a.task_id))
        with_refs = [a for a in seen if a.references]
        assert 4 <= len(with_refs) < 12  # before the switch (and any already leased)
        assert all(not a.references for a in seen[len(with_refs) + 2 :])

    run(scenario)


def test_chat_strategies_off_runs_a_page_job_as_panels(paths: DataPaths, bible: StyleBible) -> None:
    async def scenario() -> None:
        _job, workers = await run_job(
            paths, FixedFlags(off("chat_strategies")), bible, strategy=ChatStrategy.PAGE
        )
        seen = [a for w in workers for a in w.seen]
        assert len(seen) == 12
        assert not any("sequence" in a.metadata or "new_chat" in a.metadata for a in seen)

    run(scenario)


def test_a_fresh_chat_experiment_splits_tasks_stably_and_records_the_variant(
    paths: DataPaths, bible: StyleBible
) -> None:
    experiment = FlagSetting(
        variants=(Variant("control", 1, False), Variant("fresh", 1, True)), salt="t1"
    )
    flagset = FlagSet(overrides={"fresh_chat": experiment}, version=5)

    async def scenario() -> None:
        job_id, workers = await run_job(paths, FixedFlags(flagset), bible)
        seen = {int(a.task_id): a for w in workers for a in w.seen}
        rows = attempt_rows(paths, job_id)
        assert len(rows) == len(seen) == 12
        variants = {}
        for task_id, recorded, version in rows:
            expected = flagset.variant("fresh_chat", task_unit(job_id, task_id))
            assert json.loads(recorded or "{}") == {"fresh_chat": expected}
            assert version == 5
            variants[task_id] = expected
            assert seen[task_id].metadata.get("new_chat", False) is (expected == "fresh")
        assert set(variants.values()) == {"control", "fresh"}  # 12 tasks: both drawn

    run(scenario)
