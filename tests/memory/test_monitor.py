"""The memory monitor over a real hub and job service: simulated tabs whose heaps grow, a
synthetic system reading made of those heaps, and everything the governor decides applied —
holds, recalls, cleanup, events, ``memory_state`` to clients."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path

from novelgen_desktop.engine.model import MemoryLevel
from novelgen_desktop.engine.service import JobService
from novelgen_desktop.memory.cleanup import CleanupSettings
from novelgen_desktop.memory.governor import GovernorSettings
from novelgen_desktop.memory.monitor import (
    MemoryMonitor,
    MonitorSettings,
    SyntheticSystem,
    reported_heaps,
)
from novelgen_desktop.memory.readings import MemoryReading
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.sim.remote import RemoteSimWorker, SimHeap, run_sim_workers
from novelgen_desktop.sim.worker import SimBehaviour
from novelgen_desktop.store.records import EventLogged
from tests.integration.helpers import assert_job_complete_and_consistent
from tests.server.server_testkit import (
    TOKEN,
    JobClient,
    png_for,
    recv_message,
    send_result,
    start_service_hub,
    worker_connection,
)

MiB, GiB = 2**20, 2**30
SIM = SimBehaviour(latency_median=0.01, latency_sigma=0.0, reuse_images=8, image_size=64)
FAST_GOVERNOR = GovernorSettings(ramp_interval=0.1, cleanup_interval=0.5)
FAST_CLEANUP = CleanupSettings(
    reload_heap_bytes=120 * MiB, max_reloads=10, measure_delay=0.0, idle_wait=5.0
)


@dataclass
class Rig:
    service: JobService
    hub: Hub
    url: str
    monitor: MemoryMonitor
    events: list[EventLogged] = field(default_factory=list)
    stop_workers: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[list[RemoteSimWorker]]] = field(default_factory=list)


@asynccontextmanager
async def rig(data_dir: Path, system: SyntheticSystem | None = None) -> AsyncIterator[Rig]:
    service, hub, url = await start_service_hub(data_dir)
    source = system or SyntheticSystem(
        8 * GiB, 4 * GiB, extra=lambda: reported_heaps(hub.connected_workers())
    )
    monitor = MemoryMonitor(
        service,
        hub.connected_workers,
        MonitorSettings(interval=0.02, governor=FAST_GOVERNOR, cleanup=FAST_CLEANUP),
        system=source,
        measure_browsers=False,
    )
    r = Rig(service, hub, url, monitor)
    service.on_event(r.events.append)
    try:
        yield r
    finally:
        await monitor.stop()
        r.stop_workers.set()
        await asyncio.wait_for(hub.stop(), 20)
        for task in r.tasks:
            await asyncio.wait_for(task, 10)
        await service.close()


def attempts_by_outcome(data_dir: Path, job_id: str) -> dict[str, int]:
    with closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
        rows = conn.execute(
            "SELECT a.outcome, COUNT(*) FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.job_id = ? GROUP BY a.outcome",
            (job_id,),
        ).fetchall()
    return {str(outcome): int(count) for outcome, count in rows}


def test_heap_growth_storm_pauses_cleans_up_and_finishes_without_loss(tmp_path: Path) -> None:
    """Four tabs whose heaps grow 40 MiB an attempt on an 8 GiB machine half used: memory
    crosses 80 % again and again; each time dispatch stops, idle tabs are reloaded (heaps back
    to 100 MiB), memory falls under 60 %, the tabs are let back; 0 lost, 0 duplicated."""
    data_dir = tmp_path / "data"
    heap = SimHeap(base_bytes=100 * MiB, growth_per_attempt=40 * MiB, reload_seconds=0.02)

    async def scenario() -> None:
        async with rig(data_dir) as r, JobClient.connect(r.url) as client:
            r.tasks.append(
                asyncio.create_task(
                    run_sim_workers(
                        r.url, TOKEN, 4, SIM, stop=r.stop_workers, heap=heap, backoff_max=0.2
                    )
                )
            )
            await r.hub.wait_for_workers(4, 10)
            r.monitor.start()
            await client.subscribe()
            submitted = await client.submit("Storm", [f"panel {i}" for i in range(160)])
            await client.progress_until(submitted.job_id, {"finished"}, timeout=90)
            await asyncio.sleep(0.1)
            return_value = (submitted.job_id, list(client.messages))
            states = [x for x in return_value[1] if isinstance(x, m.MemoryState)]
            assert [s.state for s in states].count(MemoryLevel.PRESSURE) >= 2
            assert {s.state for s in states} >= {
                MemoryLevel.PRESSURE,
                MemoryLevel.RECOVERING,
                MemoryLevel.NORMAL,
            }
            stats = r.monitor.governor.stats
            assert stats.episodes >= 2 and stats.held_seconds > 0
            reloads = [c for c in r.monitor.cleanups if c.strategy == "reload_tab" and c.ok]
            assert reloads and all(c.freed_bytes > 0 for c in reloads)
            assert all(c.measure == "heap" for c in reloads)
            kinds = {e.kind for e in r.events}
            assert {"memory_pressure", "memory_recovering", "memory_normal"} <= kinds
            assert "memory_cleanup" in kinds
            assert_job_complete_and_consistent(data_dir, submitted.job_id, 160)
            outcomes = attempts_by_outcome(data_dir, submitted.job_id)
            assert outcomes.get("done") == 160 and "duplicate" not in outcomes

    asyncio.run(scenario())


def test_critical_calls_back_an_attempt_not_yet_sent_and_it_runs_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    level = {"percent": 50.0}

    async def scenario() -> None:
        system = SyntheticSystem(8 * GiB, 0, offset_percent=lambda: level["percent"])
        async with rig(data_dir, system) as r, JobClient.connect(r.url) as client:
            async with worker_connection(r.url, "typing-tab") as ws:
                r.monitor.start()
                await client.subscribe()
                submitted = await client.submit("One", ["a lighthouse"])
                first = await recv_message(ws)
                assert isinstance(first, m.Assign)
                await ws.send(
                    m.encode(
                        m.Progress(
                            task_id=first.task_id, attempt=first.attempt, stage=m.Stage.ACCEPTED
                        )
                    )
                )
                await asyncio.sleep(0.1)
                level["percent"] = 95.0
                cancel = await asyncio.wait_for(recv_message(ws), 5)
                assert isinstance(cancel, m.Cancel)
                assert (cancel.task_id, cancel.attempt) == (first.task_id, first.attempt)
                assert r.monitor.state is MemoryLevel.CRITICAL
                level["percent"] = 40.0
                second = await asyncio.wait_for(recv_message(ws), 5)
                assert isinstance(second, m.Assign) and second.task_id == first.task_id
                assert second.attempt == first.attempt + 1
                await send_result(ws, second, png_for(second))
                await client.progress_until(submitted.job_id, {"finished"}, timeout=10)
            outcomes = attempts_by_outcome(data_dir, submitted.job_id)
            assert outcomes == {"recalled": 1, "done": 1}
            with closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
                (failures,) = conn.execute("SELECT failures FROM tasks").fetchone()
            assert failures == 0  # called back is not a failure of the task
            assert any(e.kind == "attempts_recalled" for e in r.events)

    asyncio.run(scenario())


def test_an_attempt_already_sent_is_not_called_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    level = {"percent": 50.0}

    async def scenario() -> None:
        system = SyntheticSystem(8 * GiB, 0, offset_percent=lambda: level["percent"])
        async with rig(data_dir, system) as r, JobClient.connect(r.url) as client:
            async with worker_connection(r.url, "generating-tab") as ws:
                r.monitor.start()
                submitted = await client.submit("One", ["a lighthouse"])
                assign = await recv_message(ws)
                assert isinstance(assign, m.Assign)
                generating = m.Progress(
                    task_id=assign.task_id, attempt=assign.attempt, stage=m.Stage.GENERATING
                )
                await ws.send(m.encode(generating))
                await asyncio.sleep(0.1)
                level["percent"] = 95.0
                await asyncio.sleep(0.3)
                assert r.monitor.state is MemoryLevel.CRITICAL
                await send_result(ws, assign, png_for(assign))  # the paid image is kept
                await client.subscribe(submitted.job_id)
                await client.progress_until(submitted.job_id, {"finished"}, timeout=10)
            assert attempts_by_outcome(data_dir, submitted.job_id) == {"done": 1}

    asyncio.run(scenario())


def test_a_reading_over_the_threshold_holds_dispatch_before_observe_returns(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with rig(data_dir) as r, JobClient.connect(r.url) as client:
            await client.subscribe()
            r.monitor.observe(MemoryReading(ts=time.time(), system_percent=85.0))
            assert r.service.memory_hold[0] is not None
            state = await client.wait_for(lambda x: isinstance(x, m.MemoryState), 5)
            assert isinstance(state, m.MemoryState)
            assert state.state is MemoryLevel.PRESSURE and state.system_percent == 85.0
            assert state.reason == "system memory 85.0 % ≥ 80 %"
            r.monitor.observe(MemoryReading(ts=time.time() + 1, system_percent=50.0))
            assert r.service.memory_hold[0] is None
            assert len(r.monitor.detection_latencies) == 2

    asyncio.run(scenario())


def test_a_client_subscribing_during_pressure_is_told_at_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with rig(data_dir) as r:
            r.monitor.observe(MemoryReading(ts=time.time(), system_percent=92.0))
            async with JobClient.connect(r.url) as client:
                await client.subscribe()
                state = await client.wait_for(lambda x: isinstance(x, m.MemoryState), 5)
                assert isinstance(state, m.MemoryState)
                assert state.state is MemoryLevel.CRITICAL

    asyncio.run(scenario())


def test_a_called_back_attempt_that_delivers_anyway_is_kept_once(tmp_path: Path) -> None:
    """The cancel crossed the worker's send: its image arrives after all. It is kept (it was
    paid for) and the task is done once; nothing is assigned again."""
    data_dir = tmp_path / "data"
    level = {"percent": 50.0}

    async def scenario() -> None:
        system = SyntheticSystem(8 * GiB, 0, offset_percent=lambda: level["percent"])
        async with rig(data_dir, system) as r, JobClient.connect(r.url) as client:
            async with worker_connection(r.url, "racing-tab") as ws:
                r.monitor.start()
                await client.subscribe()
                submitted = await client.submit("One", ["a lighthouse"])
                assign = await recv_message(ws)
                assert isinstance(assign, m.Assign)
                typing = m.Progress(
                    task_id=assign.task_id, attempt=assign.attempt, stage=m.Stage.TYPING
                )
                await ws.send(m.encode(typing))
                await asyncio.sleep(0.1)
                level["percent"] = 95.0
                cancel = await asyncio.wait_for(recv_message(ws), 5)
                assert isinstance(cancel, m.Cancel)
                await send_result(ws, assign, png_for(assign))
                ack = await asyncio.wait_for(recv_message(ws), 5)
                assert isinstance(ack, m.Ack) and ack.outcome == "accepted", ack
                await client.progress_until(submitted.job_id, {"finished"}, timeout=10)
            assert attempts_by_outcome(data_dir, submitted.job_id) == {"done": 1}
            assert_job_complete_and_consistent(data_dir, submitted.job_id, 1)

    asyncio.run(scenario())


def test_sampling_speeds_up_near_the_pause_line() -> None:
    settings = MonitorSettings(interval=0.1, near_interval=0.025, near_margin=10.0)
    monitor = MemoryMonitor(None, list, settings)  # type: ignore[arg-type]
    for percent, expected in [(50.0, 0.1), (69.9, 0.1), (70.0, 0.025), (95.0, 0.025)]:
        monitor._last_percent = percent
        assert monitor._next_interval() == expected, percent


def test_monitor_settings_name_what_does_not_fit() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"0.005 s ≤ near_interval \(0.001 s\) ≤ 60 s"):
        MonitorSettings(near_interval=0.001)
    with pytest.raises(ValueError, match=r"browser_interval_tight \(60 s\) ≤ browser_interval"):
        MonitorSettings(browser_interval_tight=60.0)
    with pytest.raises(ValueError, match=r"memory setting interval: 0\.001 s"):
        MonitorSettings(interval=0.001)


def test_an_untraceable_extension_falls_back_to_the_one_browser_found_by_name() -> None:
    """Sockets that cannot be read (another user's, macOS without root): extension tabs are
    charged to the browser found by process name, but only when there is exactly one."""
    import os

    from novelgen_desktop.memory.probe import BrowserLocator

    class Blind(BrowserLocator):
        def __init__(self, by_name: list[int]) -> None:
            super().__init__()
            self.by_name = by_name

        def root_for_peer(self, peer_port: int, server_port: int | None = None) -> int | None:
            return None

        def roots_by_profile(self, *args: object, **kwargs: object) -> list[int]:  # type: ignore[override]
            return self.by_name

    me = os.getpid()
    ports = [("tab-1", 40001, "extension"), ("tab-2", 40002, "extension"), ("sim-1", 40003, "sim")]
    one = MemoryMonitor(None, list, locator=Blind([me]))  # type: ignore[arg-type]
    measured = one._measure_in_thread(ports)
    assert measured.browser_of == {"tab-1": f"pid:{me}", "tab-2": f"pid:{me}"}
    assert measured.browsers[f"pid:{me}"].worker_ids == ("tab-1", "tab-2")
    assert measured.browsers[f"pid:{me}"].bytes > 0
    two = MemoryMonitor(None, list, locator=Blind([me, 1]))  # type: ignore[arg-type]
    assert two._measure_in_thread(ports).browser_of == {}  # two browsers: no guess
