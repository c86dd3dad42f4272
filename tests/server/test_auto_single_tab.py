"""The automatic single-tab fallback (auto_single_tab, docs/flags.md).

Tabs that fail together are what "orchestration fails" looks like from the hub: here three
tabs share an account on which only one generation at a time succeeds, so every attempt made
while another tab is drawing ends ``page_error``. The engine's breaker sees it, the flag
wiring switches ``multi_tab`` off in the local flag file (a recorded version, so it shows and
rolls back like any change), and the same running job finishes on one tab with nothing lost
and nothing drawn twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from novelgen_desktop.engine.model import (
    Assignment,
    ErrorKind,
    JobState,
    WorkerFailure,
    WorkerOutcome,
)
from novelgen_desktop.engine.orchestration import NOTHING_SWITCHES, BreakerSettings
from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.service import JobService, ServiceSettings
from novelgen_desktop.flags.document import FlagSetting
from novelgen_desktop.flags.flagset import FixedFlags
from novelgen_desktop.flags.service import FlagService, open_flags
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.prompts import parse_text
from novelgen_desktop.server.flag_wiring import FlagWiring
from novelgen_desktop.sim.worker import SimBehaviour, SimulatedWorker
from novelgen_desktop.store.records import EventLogged

PANELS = 24
BREAKER = BreakerSettings(window=60.0, min_failures=6, min_share=0.5, min_workers=2)
SETTINGS = ServiceSettings(
    run=RunSettings(
        wait_for_workers=True,
        breaker=BREAKER,
        policy=replace(SchedulerPolicy(), backoff_base=0.05, backoff_cap=0.2, max_failures=50),
        reaper_interval=0.05,
    )
)
FAST = SimBehaviour(latency_median=0.03, latency_sigma=0.0, image_size=32)


class SharedAccountTab(SimulatedWorker):
    """A tab whose account draws one image at a time: a second tab drawing alongside makes
    both attempts fail as ChatGPT's page does ("Something went wrong")."""

    def __init__(self, name: str, drawing: set[str]) -> None:
        super().__init__(name, "account-shared", FAST)
        self.drawing = drawing  # the tabs drawing right now, shared by all of them

    async def execute(self, assignment: Assignment) -> WorkerOutcome:
        self.drawing.add(self.worker_id)
        crowded = False
        try:
            for _ in range(3):
                await asyncio.sleep(0.01)
                crowded = crowded or len(self.drawing) > 1
            outcome = await super().execute(assignment)
            crowded = crowded or len(self.drawing) > 1
        finally:
            self.drawing.discard(self.worker_id)
        if crowded:
            return WorkerFailure(
                assignment.task_id,
                assignment.attempt,
                ErrorKind.PAGE_ERROR,
                "Something went wrong while generating the response.",
            )
        return outcome


def attempts(paths: DataPaths, job_id: str) -> list[tuple[int, str, str, float]]:
    with contextlib.closing(sqlite3.connect(paths.database)) as conn:
        return conn.execute(
            "SELECT a.task_id, a.worker_id, a.outcome, a.started_at FROM attempts a "
            "JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? ORDER BY a.started_at",
            (job_id,),
        ).fetchall()


async def run_contended_job(
    paths: DataPaths,
    flags: FlagService | FixedFlags,
    *,
    until: Callable[[JobService, str, list[EventLogged]], Awaitable[bool]],
) -> tuple[str, list[EventLogged]]:
    """Three tabs on one account draw PANELS panels until ``until`` says so."""
    specs = parse_text(
        "".join(f"Panel {n}: the lighthouse at dusk\n" for n in range(1, PANELS + 1)),
        filename="panels.txt",
        format="text",
    ).specs
    service = JobService(paths, SETTINGS, flags=flags)
    # Without a flag service (a test's fixed set) nobody owns the flags to switch.
    wiring = FlagWiring(flags, service) if isinstance(flags, FlagService) else None
    events: list[EventLogged] = []
    service.on_event(events.append)
    await service.start()
    if wiring is not None:
        wiring.start(poll=0.05)
    drawing: set[str] = set()
    try:
        job, _ = await service.submit("contended", specs)
        for n in (1, 2, 3):
            service.add_worker(SharedAccountTab(f"tab-{n}", drawing))
        async with asyncio.timeout(45):
            while not await until(service, job.id, events):
                await asyncio.sleep(0.02)
    finally:
        if wiring is not None:
            await wiring.stop()
        await service.stop()
    return job.id, events


async def finished(service: JobService, job_id: str, _events: list[EventLogged]) -> bool:
    view = await service.view(job_id)
    return view.state is JobState.FINISHED and not view.active


def failures_seen(count: int) -> Callable[[JobService, str, list[EventLogged]], Awaitable[bool]]:
    async def enough(service: JobService, job_id: str, _events: list[EventLogged]) -> bool:
        return sum(row[2] == "failed" for row in attempts(service.paths, job_id)) >= count

    return enough


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path / "data").ensure()


def test_tabs_failing_together_switch_the_job_to_one_tab_and_it_finishes(
    paths: DataPaths,
) -> None:
    flags = open_flags(paths.root, environ={})
    try:
        job_id, events = asyncio.run(run_contended_job(paths, flags, until=finished))

        [trip] = [e for e in events if e.kind == "orchestration_failing"]
        assert trip.level == "warning" and trip.job_id == job_id
        assert trip.message.startswith("tab orchestration failing: ")
        assert "attempts in the last 1 min failed on " in trip.message
        assert "(page_error " in trip.message
        assert "switched to the single-tab fallback (multi_tab off, flags v" in trip.message
        assert trip.data is not None and trip.data["failures"] >= BREAKER.min_failures
        assert len(trip.data["workers"]) >= 2

        # The switch is a recorded version in the local flag file, said in the flags log.
        assert not flags.current.enabled("multi_tab")
        assert flags.current.source("multi_tab") == "local file"
        latest = flags.versions(1)[0]
        assert latest.reason.startswith("automatic single-tab fallback: ")
        assert '"multi_tab": false' in flags.files.local.read_text(encoding="utf-8")
        changed = [e for e in events if e.kind == "flags_changed"]
        assert any("automatic single-tab fallback" in e.message for e in changed), changed

        # The same job ran on: every panel drawn once, after the switch by one tab only.
        rows = attempts(paths, job_id)
        done = Counter(task for task, _worker, outcome, _at in rows if outcome == "done")
        assert len(done) == PANELS and set(done.values()) == {1}
        after = {worker for _task, worker, _outcome, at in rows if at > trip.ts}
        assert len(after) == 1, rows
        out = Path(SETTINGS.out_root or paths.root / "output")
        assert len(list(out.rglob("*.png"))) == PANELS
    finally:
        flags.close()


def test_a_rollback_undoes_the_automatic_fallback(paths: DataPaths) -> None:
    flags = open_flags(paths.root, environ={})
    try:
        asyncio.run(run_contended_job(paths, flags, until=finished))
        assert not flags.current.enabled("multi_tab")
        restored = flags.rollback()
        assert flags.current.enabled("multi_tab")
        assert restored.reason.startswith("rollback to v")
    finally:
        flags.close()


def test_auto_single_tab_off_leaves_the_tabs_failing(paths: DataPaths) -> None:
    flags = open_flags(paths.root, environ={})
    flags.set_local("auto_single_tab", FlagSetting(value=False))
    try:
        _job, events = asyncio.run(
            run_contended_job(paths, flags, until=failures_seen(4 * BREAKER.min_failures))
        )
        assert [e for e in events if e.kind == "orchestration_failing"] == []
        assert flags.current.enabled("multi_tab")
        assert "multi_tab" not in flags.files.local.read_text(encoding="utf-8")
    finally:
        flags.close()


def test_an_override_above_the_file_keeps_the_tabs_and_says_why(paths: DataPaths) -> None:
    flags = open_flags(paths.root, cli_overrides=["multi_tab=on"], environ={})
    try:
        _job, events = asyncio.run(
            run_contended_job(paths, flags, until=failures_seen(2 * BREAKER.min_failures))
        )
        trips = [e for e in events if e.kind == "orchestration_failing"]
        assert trips, "the breaker trips, but cannot switch"
        assert trips[0].message.endswith(
            "multi_tab is decided by --flag, above the local flag file: the tabs go on "
            "(switch it there)"
        )
        assert flags.current.enabled("multi_tab")
        assert not flags.files.local.exists(), "nothing written that would only act later"
    finally:
        flags.close()


def test_with_no_one_owning_the_flags_the_trip_is_logged_and_nothing_changes(
    paths: DataPaths,
) -> None:
    fixed = FixedFlags()
    _job, events = asyncio.run(
        run_contended_job(paths, fixed, until=failures_seen(2 * BREAKER.min_failures))
    )
    trips = [e for e in events if e.kind == "orchestration_failing"]
    assert trips and trips[0].message.endswith("; " + NOTHING_SWITCHES)
    assert fixed.current.enabled("multi_tab")
    assert not (paths.root / "flags").exists()
