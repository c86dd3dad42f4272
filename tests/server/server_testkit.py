"""A tiny worker-side client written from docs/protocol.md, for the hub's tests."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.framing import image_frame
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.sim.render import render_panel_png

TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2"
EXTENSION_ID = "abcdefghijklmnopabcdefghijklmnop"
FAST = {"auth_timeout": 0.3, "idle_timeout": 30.0, "heartbeat_interval": 10.0}


def make_hub(**overrides: Any) -> Hub:
    options: dict[str, Any] = {**FAST, "extension_ids": [EXTENSION_ID], **overrides}
    return Hub(TOKEN, **options)


@asynccontextmanager
async def running(hub: Hub) -> AsyncIterator[str]:
    port = await hub.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await hub.stop()


def hello_text(
    worker_id: str | None = "sim-1",
    token: str = TOKEN,
    versions: tuple[int, ...] = (1,),
    holding: tuple[tuple[str, int], ...] = (),
) -> str:
    if worker_id is None:
        return m.encode(m.Hello(token=token, role=m.Role.CLIENT, versions=versions))
    return m.encode(
        m.Hello(
            token=token,
            role=m.Role.WORKER,
            versions=versions,
            worker_id=worker_id,
            account_id="profile-test",
            kind="simulated",
            capabilities=("binary_frames", "image_png"),
            holding=tuple(m.AttemptRef(task_id=t, attempt=a) for t, a in holding),
        )
    )


async def recv_message(ws: ClientConnection, *, skip_heartbeats: bool = True) -> m.Message:
    """The next decoded text frame from the hub (heartbeats skipped)."""
    while True:
        frame = await ws.recv()
        assert isinstance(frame, str), "the hub never sends binary frames"
        message = m.decode(frame, sender=m.Role.HUB)
        if skip_heartbeats and isinstance(message, m.Heartbeat):
            continue
        return message


@asynccontextmanager
async def worker_connection(
    url: str, worker_id: str = "sim-1", holding: tuple[tuple[str, int], ...] = ()
) -> AsyncIterator[ClientConnection]:
    async with connect(url, compression=None, max_size=2**26) as ws:
        await ws.send(hello_text(worker_id, holding=holding))
        welcome = await recv_message(ws)
        assert isinstance(welcome, m.Welcome), welcome
        yield ws


def png_for(assign: m.Assign) -> bytes:
    return render_panel_png(assign.prompt, width=64, height=64, seed=assign.task_id)


async def send_result(
    ws: ClientConnection, assign: m.Assign, image: bytes, *, encoding: str = "binary"
) -> None:
    """``result`` then its binary frame (or the image in base64), as protocol.md describes."""
    enc = m.ImageEncoding(encoding)
    result = m.Result(
        task_id=assign.task_id,
        attempt=assign.attempt,
        sha256=hashlib.sha256(image).hexdigest(),
        size=len(image),
        mime=m.ImageMime.PNG,
        encoding=enc,
        data=base64.b64encode(image).decode("ascii") if enc is m.ImageEncoding.BASE64 else None,
        width=64,
        height=64,
        elapsed=0.01,
    )
    await ws.send(m.encode(result))
    if enc is m.ImageEncoding.BINARY:
        await ws.send(image_frame(assign.task_id, assign.attempt, image))


async def serve_assignments(ws: ClientConnection, count: int | None = None) -> list[m.Ack]:
    """A well-behaved worker: answer each ``assign`` with its PNG, collect the acks."""
    acks: list[m.Ack] = []
    while count is None or len(acks) < count:
        message = await recv_message(ws)
        if isinstance(message, m.Assign):
            progress = m.Progress(
                task_id=message.task_id, attempt=message.attempt, stage=m.Stage.TYPING
            )
            await ws.send(m.encode(progress))
            await send_result(ws, message, png_for(message))
        elif isinstance(message, m.Ack):
            acks.append(message)
    return acks


def heartbeat_text() -> str:
    return m.encode(m.Heartbeat(ts=time.time()))
