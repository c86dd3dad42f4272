"""``cleanup`` / ``cleanup_done`` between the hub and a worker written from docs/protocol.md:
only workers with the capability are asked, each request gets its one answer, and a lost
connection, a silent worker or a stray answer never leaves the hub waiting or confused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server_testkit import TOKEN, recv_message, start_service_hub
from websockets.asyncio.client import connect

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.server.remote_worker import RemoteWorker


def hello(worker_id: str, *, cleanup: bool) -> str:
    capabilities = ("binary_frames", "cleanup") if cleanup else ("binary_frames",)
    return m.encode(
        m.Hello(
            token=TOKEN,
            role=m.Role.WORKER,
            versions=(1,),
            worker_id=worker_id,
            account_id="acct",
            kind="extension",
            capabilities=capabilities,
        )
    )


async def connected(hub: Hub, worker_id: str) -> RemoteWorker:
    async with asyncio.timeout(5):
        while worker_id not in hub.workers or not hub.workers[worker_id].connected:
            await asyncio.sleep(0.01)
    return hub.workers[worker_id]


def test_cleanup_round_trip_and_its_failure_modes(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, hub, url = await start_service_hub(tmp_path / "data")
        try:
            async with connect(url) as plain, connect(url) as able:
                await plain.send(hello("plain", cleanup=False))
                await able.send(hello("able", cleanup=True))
                assert isinstance(await recv_message(plain), m.Welcome)
                assert isinstance(await recv_message(able), m.Welcome)
                without = await connected(hub, "plain")
                worker = await connected(hub, "able")
                assert not without.can_clean_up and worker.can_clean_up

                # No capability: answered at once, nothing sent.
                refused = await without.request_cleanup(m.CleanupAction.RELOAD_TAB)
                assert not refused.ok and refused.detail == "the worker cannot clean up"

                # The round trip: the worker's answer is what request_cleanup returns.
                asked = asyncio.create_task(
                    worker.request_cleanup(m.CleanupAction.RELOAD_TAB, "memory pressure")
                )
                request = await recv_message(able)
                assert isinstance(request, m.Cleanup)
                assert request.reason == "memory pressure"
                answer = m.CleanupDone(
                    re=request.request_id,
                    action=request.action,
                    ok=True,
                    heap_before=600 * 2**20,
                    heap_after=50 * 2**20,
                )
                await able.send(m.encode(answer))
                assert await asyncio.wait_for(asked, 5) == answer

                # A stray answer is refused, naming the request it claims to answer.
                stray = m.CleanupDone(re="mem-999", action=m.CleanupAction.NEW_CHAT, ok=True)
                await able.send(m.encode(stray))
                error = await recv_message(able)
                assert isinstance(error, m.Error)
                assert (error.code, error.field, error.re) == (
                    m.ErrorCode.BAD_FIELD,
                    "re",
                    "mem-999",
                )

                # A silent worker: the wait is bounded.
                silent = await worker.request_cleanup(m.CleanupAction.NEW_CHAT, timeout=0.2)
                assert not silent.ok and silent.detail == "no answer in 0.2 s"
                assert isinstance(await recv_message(able), m.Cleanup)

                # The connection ends while the hub waits: answered, not left hanging.
                pending = asyncio.create_task(worker.request_cleanup(m.CleanupAction.DROP_IMAGES))
                assert isinstance(await recv_message(able), m.Cleanup)
                await able.close()
                lost = await asyncio.wait_for(pending, 5)
                assert not lost.ok and lost.action is m.CleanupAction.DROP_IMAGES
                assert lost.detail is not None and lost.detail.startswith("connection ended")
        finally:
            await hub.stop()
            await service.close()

    asyncio.run(scenario())
