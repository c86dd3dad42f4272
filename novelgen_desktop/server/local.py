"""Simulated workers as real WebSocket peers of a hub running in this process's loop.

This is the whole remote path — handshake, token, frames, binary images, acks, reconnects —
with both ends in one process, so a demo or a test exercises exactly what an extension tab
will, without a browser. The engine sees only ``RemoteWorker``s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from novelgen_desktop.engine.model import WorkerOutcome
from novelgen_desktop.protocol.auth import new_pairing_token
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.server.remote_worker import RemoteWorker
from novelgen_desktop.sim.remote import run_sim_workers
from novelgen_desktop.sim.worker import SimBehaviour

LateHandler = Callable[[RemoteWorker, WorkerOutcome], str]


@dataclass
class LateOutcomeRelay:
    """The hub is started before the runner exists; late outcomes reach the runner through
    this relay once it is set (before that there is nothing they could belong to)."""

    target: LateHandler | None = None

    def __call__(self, worker: RemoteWorker, outcome: WorkerOutcome) -> str:
        return self.target(worker, outcome) if self.target is not None else "unknown"


@contextlib.asynccontextmanager
async def simulated_workers_over_hub(
    count: int,
    behaviour: SimBehaviour,
    *,
    accounts: int | None = None,
    relay: LateOutcomeRelay | None = None,
    connect_timeout: float = 30.0,
) -> AsyncIterator[list[RemoteWorker]]:
    """Start a hub on a free loopback port and ``count`` simulated tabs connected to it;
    yield the hub's ``RemoteWorker``s; on exit say ``bye`` and stop both sides."""
    token = new_pairing_token()
    hub = Hub(token, on_late_outcome=relay)
    port = await hub.start()
    stop = asyncio.Event()
    sims = asyncio.create_task(
        run_sim_workers(
            f"ws://127.0.0.1:{port}/", token, count, behaviour, accounts=accounts, stop=stop
        )
    )
    try:
        workers = await hub.wait_for_workers(count, connect_timeout)
        yield workers
    finally:
        stop.set()
        await hub.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(sims, 10.0)
