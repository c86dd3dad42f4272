"""A tab that reports itself unhealthy (memory pressure, logged out, crashed) gets no new work
until it reports ``ok`` again; its account's other tabs go on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from server_testkit import (
    TOKEN,
    png_for,
    recv_message,
    send_result,
    worker_connection,
)

from novelgen_desktop.engine.service import JobService, specs_from_prompts
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub


def _status(health: m.TabHealth, memory: int) -> str:
    return m.encode(m.Status(ts=time.time(), tab_health=health, busy=False, memory_bytes=memory))


async def _no_assign_within(ws: object, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await recv_message(ws)  # type: ignore[arg-type]
                assert not isinstance(message, m.Assign), f"assigned while unhealthy: {message}"
    except TimeoutError:
        return


def test_unhealthy_tab_gets_no_work_until_it_reports_ok(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = JobService(resolve_data_dir(tmp_path / "data"))
        await service.start()
        hub = Hub(TOKEN, service=service)
        port = await hub.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/"
        try:
            async with worker_connection(url, "tab-1") as ws:
                await ws.send(_status(m.TabHealth.UNRESPONSIVE, 3_500_000_000))
                await asyncio.sleep(0.1)  # the status is handled before the job exists
                job, _ = await service.submit("pressure", specs_from_prompts(["a", "b"])[0])
                await _no_assign_within(ws, 1.0)
                assert hub.workers["tab-1"].last_status is not None
                assert (await service.view(job.id)).done == 0
                await ws.send(_status(m.TabHealth.OK, 300_000_000))
                for _ in range(2):
                    assign = await asyncio.wait_for(recv_message(ws), 5)
                    assert isinstance(assign, m.Assign)
                    await send_result(ws, assign, png_for(assign))
                    ack = await asyncio.wait_for(recv_message(ws), 5)
                    assert isinstance(ack, m.Ack) and ack.outcome == "accepted"
                async with asyncio.timeout(10):
                    while (await service.view(job.id)).done < 2:
                        await asyncio.sleep(0.02)
        finally:
            await hub.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_logged_out_tab_is_skipped_while_a_healthy_one_works(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = JobService(resolve_data_dir(tmp_path / "data"))
        await service.start()
        hub = Hub(TOKEN, service=service)
        port = await hub.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/"
        try:
            async with worker_connection(url, "logged-out") as bad:
                await bad.send(_status(m.TabHealth.LOGGED_OUT, 100_000_000))
                await asyncio.sleep(0.1)
                job, _ = await service.submit("two tabs", specs_from_prompts(["a", "b", "c"])[0])
                async with worker_connection(url, "healthy") as good:
                    for _ in range(3):
                        assign = await asyncio.wait_for(recv_message(good), 5)
                        assert isinstance(assign, m.Assign)
                        await send_result(good, assign, png_for(assign))
                        ack = await asyncio.wait_for(recv_message(good), 5)
                        assert isinstance(ack, m.Ack)
                    await _no_assign_within(bad, 0.3)
                    async with asyncio.timeout(10):
                        while (await service.view(job.id)).done < 3:
                            await asyncio.sleep(0.02)
        finally:
            await hub.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
