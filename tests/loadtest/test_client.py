"""The load test's client against a scripted stand-in hub: the reconnect paths that a real
hub only hits by chance (a connection lost between ``submit`` and ``submitted``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from benchmarks.loadtest.client import HubClient, HubRefusedError
from novelgen_desktop.protocol.messages import Ack, Role, decode, encode

TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2"
WELCOME = {
    "v": 1,
    "type": "welcome",
    "version": 1,
    "session_id": "s-1",
    "heartbeat_interval": 1.0,
    "idle_timeout": 45.0,
    "max_frame_bytes": 2**20,
    "max_image_bytes": 2**20,
}


def hub_frame(frame: dict[str, Any]) -> str:
    """A frame of the stand-in hub, valid by the real decoder (the stand-in stays honest)."""
    text = json.dumps(frame)
    decode(text, sender=Role.HUB)
    return text


def progress(state: str, done: int) -> str:
    return hub_frame(
        {
            "v": 1,
            "type": "job_progress",
            "job_id": "job-1",
            "ts": 1.0,
            "state": state,
            "total": 2,
            "done": done,
            "failed_terminal": 0,
            "percent": 50.0 * done,
            "throughput_per_min": 0.0,
        }
    )


async def receive(ws: ServerConnection, log: list[dict[str, Any]]) -> dict[str, Any]:
    """The next non-heartbeat frame, checked against the real protocol decoder."""
    while True:
        text = await ws.recv()
        assert isinstance(text, str)
        decode(text, sender=Role.CLIENT)  # every frame the client sends is valid
        frame = json.loads(text)
        log.append(frame)
        if frame["type"] != "heartbeat":
            return frame


def test_a_submit_whose_answer_was_lost_is_found_by_name_not_sent_twice() -> None:
    seen: list[dict[str, Any]] = []
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        hello = await receive(ws, seen)
        assert hello["role"] == "client" and hello["token"] == TOKEN
        await ws.send(hub_frame(WELCOME))
        if connections == 1:
            submit = await receive(ws, seen)
            assert submit["type"] == "submit" and len(submit["prompts"]) == 2
            assert ws.transport is not None
            ws.transport.abort()  # the hub died before answering
            return
        listing = await receive(ws, seen)
        assert listing["type"] == "list_jobs"
        job = {
            "job_id": "job-1",
            "name": "two",
            "state": "running",
            "total": 2,
            "done": 0,
            "failed_terminal": 0,
            "created_at": 1.0,
        }
        await ws.send(
            json.dumps({"v": 1, "type": "jobs", "re": listing["request_id"], "jobs": [job]})
        )
        subscribe = await receive(ws, seen)
        assert subscribe["type"] == "subscribe" and subscribe["job_ids"] == ["job-1"]
        await ws.send(encode(Ack(re=subscribe["request_id"])))
        await ws.send(hub_frame({"v": 1, "type": "heartbeat", "ts": 1.0}))
        await ws.send(progress("running", 1))
        await asyncio.sleep(1.3)  # long enough for the client to send a heartbeat
        await ws.send(progress("finished", 2))
        await receive(ws, seen)  # bye

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = HubClient(f"ws://127.0.0.1:{port}/", lambda: TOKEN)
            watch = await client.run_job("two", ["a", "b"], timeout=20)
            assert watch.job_id == "job-1"
            assert watch.state == "finished" and watch.done == 2
            assert watch.connections == 2
            assert watch.heartbeats_sent >= 1
            assert watch.unexpected == [] and watch.hub_errors == []

    asyncio.run(main())
    types = [f["type"] for f in seen]
    assert types.count("submit") == 1
    assert types[-1] == "bye"


def test_a_refused_token_is_final() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4001, "unauthorized")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = HubClient(f"ws://127.0.0.1:{port}/", TOKEN)
            with pytest.raises(HubRefusedError):
                await client.run_job("x", ["a"], timeout=20)

    asyncio.run(main())
