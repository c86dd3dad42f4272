"""A flooding peer is cut off; the others carry on."""

from __future__ import annotations

import asyncio
import contextlib
import time

from server_testkit import heartbeat_text, make_hub, running, serve_assignments, worker_connection
from websockets.exceptions import ConnectionClosed

from novelgen_desktop.engine.model import Assignment, WorkerResult
from novelgen_desktop.protocol.codes import CloseCode


def test_flooding_peer_is_closed_4008_and_a_good_worker_is_still_served() -> None:
    async def scenario() -> None:
        hub = make_hub(frame_rate=200.0, frame_burst=300)
        async with running(hub) as url, worker_connection(url, "good") as good_ws:
            good_client = asyncio.create_task(serve_assignments(good_ws))
            good = hub.workers["good"]
            async with worker_connection(url, "flooder") as flood_ws:
                sent = 0
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(10):
                        while True:
                            await flood_ws.send(heartbeat_text())
                            sent += 1
                            if sent % 100 == 0:
                                await asyncio.sleep(0)
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(5):
                        while True:
                            await flood_ws.recv()
                assert flood_ws.close_code == CloseCode.POLICY
                assert sent > 300
            outcome = await asyncio.wait_for(
                good.execute(Assignment(1, 1, "still served", time.time() + 60)), 5
            )
            assert isinstance(outcome, WorkerResult)
            good_client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await good_client

    asyncio.run(scenario())


def test_a_busy_but_honest_worker_is_not_mistaken_for_a_flood() -> None:
    """The default limits leave room for a zero-latency worker answering as fast as it can."""

    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url, "busy") as ws:
            client = asyncio.create_task(serve_assignments(ws))
            worker = hub.workers["busy"]
            for task_id in range(1, 301):
                outcome = await asyncio.wait_for(
                    worker.execute(Assignment(task_id, 1, f"p{task_id}", time.time() + 60)), 5
                )
                assert isinstance(outcome, WorkerResult)
            assert worker.connected
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client

    asyncio.run(scenario())
