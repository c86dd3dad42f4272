"""The desktop session without Qt: hub + service + simulated tabs, its views and actions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from novelgen_desktop.desktop.session import DesktopSession, WorkerState
from novelgen_desktop.desktop.settings import DesktopSettings
from novelgen_desktop.engine.model import JobState
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.sim.worker import SimBehaviour

SETTINGS = replace(DesktopSettings(), hub_port=0, sim_latency=0.02, default_workers=2)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_demo_session_runs_a_dropped_file_to_the_end(tmp_path: Path) -> None:
    prompts = tmp_path / "script.txt"
    prompts.write_text("\n".join(f"panel {i}" for i in range(10)), encoding="utf-8")

    async def scenario() -> None:
        session = DesktopSession(resolve_data_dir(None), SETTINGS)
        await session.start(port=0, simulate=True)
        try:
            result = session.preview_files([prompts])
            job_id = await session.create_job("demo", result)
            await until(lambda: len(session.worker_rows()) == 2)
            views: dict[str, JobState] = {}

            async def finished() -> bool:
                views["s"] = (await session.service.view(job_id)).state
                return views["s"] is JobState.FINISHED

            async with asyncio.timeout(30):
                while not await finished():
                    await asyncio.sleep(0.05)
            images = await session.finished_images(job_id)
            assert len(images) == 10 and all(i.path.is_file() for i in images)
            rows = session.worker_rows()
            assert sum(r.done for r in rows) == 10
            assert {r.state for r in rows} == {WorkerState.IDLE}
            assert all(r.last_heartbeat is not None for r in rows)
        finally:
            await session.stop()

    run(scenario)


def test_a_paused_worker_says_so_and_gets_no_work(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = DesktopSession(resolve_data_dir(None), SETTINGS)
        await session.start(port=0, simulate=False)
        try:
            session.start_simulated_workers(1, SimBehaviour(latency_median=0.01))
            await until(lambda: len(session.worker_rows()) == 1)
            session.pause_worker("sim-1")
            (row,) = session.worker_rows()
            assert row.state == WorkerState.PAUSED and row.held
            prompts = tmp_path / "p.txt"
            prompts.write_text("a\nb\n", encoding="utf-8")
            job_id = await session.create_job("held", session.preview_files([prompts]))
            await asyncio.sleep(0.5)
            assert (await session.service.view(job_id)).done == 0
            session.resume_worker("sim-1")

            async def done() -> bool:
                return (await session.service.view(job_id)).done == 2

            async with asyncio.timeout(20):
                while not await done():
                    await asyncio.sleep(0.05)
            session.start_simulated_workers(2)
            await until(lambda: len([r for r in session.worker_rows() if r.connected]) == 3)
            await session.close_tab("sim-2")  # exactly that one, not the last
            assert sorted(session._sims) == ["sim-1", "sim-3"]
            await until(
                lambda: (
                    {r.worker_id for r in session.worker_rows() if r.connected}
                    == {"sim-1", "sim-3"}
                )
            )
        finally:
            await session.stop()

    run(scenario)


def test_errors_in_the_files_block_the_job_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,page\nfine,1\nbroken,notanumber\n", encoding="utf-8")

    async def scenario() -> None:
        session = DesktopSession(resolve_data_dir(None), SETTINGS)
        await session.start(port=0, simulate=False)
        try:
            result = session.preview_files([bad])
            with pytest.raises(ConfigError, match=r"bad\.csv:3"):
                await session.create_job("bad", result)
            assert await session.service.list_jobs() == []
        finally:
            await session.stop()

    run(scenario)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = DesktopSession(resolve_data_dir(tmp_path / "one"), SETTINGS)
        await first.start(port=0, simulate=False)
        try:
            second = DesktopSession(resolve_data_dir(tmp_path / "two"), SETTINGS)
            with pytest.raises(ConfigError, match="change the hub port in Settings"):
                await second.start(port=first.port)
        finally:
            await first.stop()

    run(scenario)


def test_pairing_link_and_a_new_token(tmp_path: Path) -> None:
    async def scenario() -> None:
        session = DesktopSession(resolve_data_dir(None), SETTINGS)
        await session.start(port=0, simulate=False)
        try:
            old = session.token
            assert f"token={old}" in session.pairing_link()
            assert session.hub_url in session.pairing_link()
            new = await session.regenerate_token()
            assert new != old and f"token={new}" in session.pairing_link()
            assert session.hub is not None and session.hub.token == new
        finally:
            await session.stop()

    run(scenario)
