"""Cleanup strategies against a stand-in environment: order, targets, holds, measurements, and
the desktop's own strategies on real files (snapshots, a SQLite WAL)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from novelgen_desktop.memory.cleanup import (
    STRATEGIES,
    CleanableTab,
    CleanupRound,
    CleanupSettings,
)
from novelgen_desktop.memory.governor import CleanupRequest
from novelgen_desktop.protocol.messages import CleanupAction, CleanupDone, Status, TabHealth

MiB = 2**20
NO_WAIT = CleanupSettings(measure_delay=0.0, idle_wait=2.0, reload_heap_bytes=300 * MiB)


@dataclass
class Tab:
    worker_id: str
    heap: int
    turns: int = 0
    busy_for: float = 0.0  # seconds it stays busy
    refuse: bool = False
    cleanable: bool = True
    asked: list[CleanupAction] = field(default_factory=list)
    images: int = 0

    def __post_init__(self) -> None:
        self.busy_until = time.monotonic() + self.busy_for

    @property
    def last_status(self) -> Status:
        return Status(
            ts=time.time(),
            tab_health=TabHealth.OK,
            busy=self.busy,
            memory_bytes=self.heap,
            conversation_turns=self.turns,
        )

    @property
    def busy(self) -> bool:
        return time.monotonic() < self.busy_until

    @property
    def can_clean_up(self) -> bool:
        return self.cleanable

    async def request_cleanup(
        self, action: CleanupAction, reason: str | None = None, *, timeout: float = 75.0
    ) -> CleanupDone:
        self.asked.append(action)
        before = self.heap
        if self.refuse or (self.busy and action is not CleanupAction.DROP_IMAGES):
            return CleanupDone(re="x", action=action, ok=False, detail="busy")
        freed = None
        if action is CleanupAction.RELOAD_TAB:
            self.heap, self.turns = 100 * MiB, 0
        elif action is CleanupAction.NEW_CHAT:
            self.heap, self.turns = self.heap // 2, 0
        else:
            freed, self.images = self.images, 0
        return CleanupDone(
            re="x", action=action, ok=True, heap_before=before, heap_after=self.heap,
            freed_bytes=freed,
        )  # fmt: skip


@dataclass
class Env:
    tabs_: list[Tab]
    browsers: dict[str, str]  # worker id -> browser key
    root: Path
    percent: float = 85.0
    active: str | None = None
    fixed_bytes: int | None = None  # a browser whose memory does not move
    holds: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)

    def tabs(self) -> list[CleanableTab]:
        return [*self.tabs_]  # Tab is a CleanableTab

    def browser_of(self, worker_id: str) -> str | None:
        return self.browsers.get(worker_id)

    async def browser_bytes(self, key: str) -> tuple[int, str] | None:
        if self.fixed_bytes is not None:
            return self.fixed_bytes, "pss"
        return sum(t.heap for t in self.tabs_ if self.browsers[t.worker_id] == key), "pss"

    def hold(self, worker_ids: Iterable[str], held: bool) -> None:
        self.holds.append((tuple(worker_ids), held))

    def system_percent(self) -> float:
        return self.percent

    def data_dir(self) -> Path:
        return self.root

    def database(self) -> Path:
        return self.root / "novelgen.sqlite"

    def active_job(self) -> str | None:
        return self.active

    def own_bytes(self) -> tuple[int, str]:
        return 50 * MiB, "uss"


def run(cleanup: CleanupRound, request: CleanupRequest, **kw: object) -> list[object]:
    """The round, then its background measurements."""

    async def both() -> list[object]:
        await cleanup.run(request, **kw)  # type: ignore[arg-type]
        return list(await cleanup.settle())

    return asyncio.run(both())


def test_heaviest_idle_tabs_are_reloaded_held_meanwhile_and_measured(tmp_path: Path) -> None:
    heavy, light, busy = Tab("a", 900 * MiB), Tab("b", 120 * MiB), Tab("c", 800 * MiB, busy_for=0.2)
    env = Env([heavy, light, busy], {"a": "pid:1", "b": "pid:1", "c": "pid:2"}, tmp_path)
    cleanup = CleanupRound(env, NO_WAIT)
    run(cleanup, CleanupRequest("pressure", urgent=False, browsers=("pid:1", "pid:2")),
        strategies=["reload_tab"])  # fmt: skip
    assert heavy.asked == [CleanupAction.RELOAD_TAB] and light.asked == []
    assert busy.asked == [CleanupAction.RELOAD_TAB]  # waited for its attempt to end
    by_target = {r.target: r for r in cleanup.results}
    assert by_target["pid:1"].before_bytes == 1020 * MiB
    assert by_target["pid:1"].after_bytes == 220 * MiB
    assert by_target["pid:1"].freed_bytes == 800 * MiB and by_target["pid:1"].measure == "pss"
    assert "a heap 900 → 100 MiB" in by_target["pid:1"].detail
    assert by_target["pid:2"].ok
    assert (("a",), True) in env.holds and (("a",), False) in env.holds


def test_urgent_reloads_every_tab_and_a_refusal_is_recorded(tmp_path: Path) -> None:
    tabs = [Tab("a", 150 * MiB), Tab("b", 120 * MiB, refuse=True)]
    env = Env(tabs, {"a": "pid:1", "b": "pid:1"}, tmp_path)
    cleanup = CleanupRound(env, NO_WAIT)
    run(cleanup, CleanupRequest("critical", urgent=True), strategies=["reload_tab"])
    (result,) = cleanup.results
    assert tabs[0].asked == tabs[1].asked == [CleanupAction.RELOAD_TAB]
    assert result.ok and "b refused: busy" in result.detail


def test_a_tab_that_stays_busy_is_left_alone(tmp_path: Path) -> None:
    tab = Tab("a", 900 * MiB, busy_for=60)
    env = Env([tab], {"a": "pid:1"}, tmp_path)
    cleanup = CleanupRound(env, CleanupSettings(idle_wait=0.1, measure_delay=0))
    run(cleanup, CleanupRequest("pressure", urgent=False), strategies=["reload_tab"])
    assert tab.asked == []
    assert not cleanup.results[0].ok and "no tab went idle" in cleanup.results[0].detail


def test_long_conversations_get_a_new_chat_and_images_are_dropped_once_per_browser(
    tmp_path: Path,
) -> None:
    long, short = Tab("a", 200 * MiB, turns=30, images=5 * MiB), Tab("b", 200 * MiB, turns=3)
    env = Env([long, short], {"a": "pid:1", "b": "pid:1"}, tmp_path)
    cleanup = CleanupRound(env, NO_WAIT)
    run(cleanup, CleanupRequest("pressure", urgent=False), strategies=["new_chat", "drop_images"])
    assert long.asked == [CleanupAction.NEW_CHAT, CleanupAction.DROP_IMAGES]
    assert short.asked == []
    images = [r for r in cleanup.results if r.strategy == "drop_images"]
    assert len(images) == 1 and images[0].freed_bytes == 5 * MiB


def test_the_round_stops_once_memory_is_back_under_the_line(tmp_path: Path) -> None:
    tab = Tab("a", 900 * MiB)
    env = Env([tab], {"a": "pid:1"}, tmp_path, percent=55.0)
    cleanup = CleanupRound(env, NO_WAIT)
    run(cleanup, CleanupRequest("pressure", urgent=False), stop_below=60.0)
    assert [r.strategy for r in cleanup.results] == ["reload_tab"]


def test_unknown_strategy_is_refused_by_name(tmp_path: Path) -> None:
    cleanup = CleanupRound(Env([], {}, tmp_path), NO_WAIT)
    with pytest.raises(ValueError, match="unknown cleanup strategy 'defrag'"):
        run(cleanup, CleanupRequest("x", urgent=False), strategies=["defrag"])


def test_desktop_strategies_on_real_files(tmp_path: Path) -> None:
    for job in ("old-job", "running-job"):
        folder = tmp_path / "jobs" / job / "snapshots"
        folder.mkdir(parents=True)
        for seq in range(1, 9):
            (folder / f"snapshot-{seq:08d}.json").write_text("{}" + " " * 4000)
    database = tmp_path / "novelgen.sqlite"
    writer = sqlite3.connect(database)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x BLOB)")
    for _ in range(200):
        writer.execute("INSERT INTO t VALUES (randomblob(4000))")
    writer.commit()
    wal = tmp_path / "novelgen.sqlite-wal"
    assert wal.stat().st_size > 500_000
    env = Env([], {}, tmp_path, active="running-job")
    cleanup = CleanupRound(env, CleanupSettings(keep_snapshots=3))
    try:
        run(
            cleanup,
            CleanupRequest("asked", urgent=False),
            strategies=["prune_snapshots", "checkpoint_wal", "collect_garbage"],
        )
    finally:
        writer.close()
    results = {r.strategy: r for r in cleanup.results}
    assert len(list((tmp_path / "jobs/old-job/snapshots").iterdir())) == 3
    assert len(list((tmp_path / "jobs/running-job/snapshots").iterdir())) == 8  # its writer's
    assert results["prune_snapshots"].freed_bytes > 0
    assert results["checkpoint_wal"].ok and results["checkpoint_wal"].after_bytes == 0
    assert results["checkpoint_wal"].freed_bytes > 500_000
    assert results["collect_garbage"].measure == "uss"
    assert list(STRATEGIES) == [
        "reload_tab", "new_chat", "drop_images", "prune_snapshots", "checkpoint_wal",
        "collect_garbage",
    ]  # fmt: skip


def test_a_browser_measurement_does_not_hold_up_the_round(tmp_path: Path) -> None:
    """PSS is watched for a while after a reload; the round goes on meanwhile and the result
    is recorded when the measurement ends."""
    tab = Tab("a", 900 * MiB)
    env = Env([tab], {"a": "pid:1"}, tmp_path, fixed_bytes=2000 * MiB)
    cleanup = CleanupRound(env, CleanupSettings(measure_delay=0.5, idle_wait=1.0))

    async def scenario() -> tuple[list[str], list[str]]:
        await cleanup.run(
            CleanupRequest("pressure", urgent=False), strategies=["reload_tab", "collect_garbage"]
        )
        during = [r.strategy for r in cleanup.results]
        await cleanup.settle()
        return during, [r.strategy for r in cleanup.results]

    during, after = asyncio.run(scenario())
    assert during == ["collect_garbage"]
    assert after == ["collect_garbage", "reload_tab"]
    assert cleanup.results[-1].freed_bytes == 0 and cleanup.results[-1].seconds >= 0.5
