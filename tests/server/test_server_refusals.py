"""Refused connections get no job data: with a job waiting for workers (so that any accepted
worker would be sent an ``assign`` at once), every refused peer sees nothing but the close."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from server_testkit import EXTENSION_ID, TOKEN, frames_until_close, hello_text, recv_message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from novelgen_desktop.engine.service import JobService, specs_from_prompts
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import CloseCode
from novelgen_desktop.server.hub import Hub

SECRET_PROMPT = "the secret panel: a lighthouse at midnight"


@asynccontextmanager
async def hub_with_waiting_job(data_dir: Path) -> AsyncIterator[str]:
    service = JobService(resolve_data_dir(data_dir))
    await service.start()
    specs, _ = specs_from_prompts([SECRET_PROMPT] * 3)
    await service.submit("waiting", specs)
    hub = Hub(TOKEN, extension_ids=[EXTENSION_ID], auth_timeout=0.3, service=service)
    port = await hub.start("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await hub.stop()


def _worker_hello(token: str = TOKEN) -> str:
    return hello_text("intruder", token=token)


REFUSALS: dict[str, tuple[dict[str, object], list[str | bytes], int]] = {
    # name: (connect options, frames sent, expected close code)
    "silent": ({}, [], CloseCode.AUTH_TIMEOUT),
    "wrong-token": ({}, [_worker_hello("Z" * 43)], CloseCode.UNAUTHORIZED),
    "truncated-token": (
        {},
        [_worker_hello().replace(TOKEN, TOKEN[:21])],
        CloseCode.UNAUTHORIZED,
    ),
    "token-in-second-frame": (
        {},
        ['{"v": 1, "type": "heartbeat", "ts": 1.0}', _worker_hello()],
        CloseCode.UNAUTHORIZED,
    ),
    "oversized-hello": (
        {"max_size": None},
        [_worker_hello()[:-1] + ', "agent": "' + "x" * m.MAX_HELLO_FRAME + '"}'],
        CloseCode.MESSAGE_TOO_BIG,
    ),
    "binary-first": ({}, [_worker_hello().encode()], CloseCode.UNAUTHORIZED),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refused_connection_gets_no_job_data(name: str, tmp_path: Path) -> None:
    options, frames, code = REFUSALS[name]

    async def scenario() -> None:
        async with hub_with_waiting_job(tmp_path / "data") as url:
            async with connect(url, compression=None, **options) as ws:  # type: ignore[arg-type]
                for frame in frames:
                    with contextlib.suppress(ConnectionClosed):  # the hub may close first
                        await ws.send(frame)
                received = await frames_until_close(ws)
                assert received == []
                assert ws.close_code == code
                assert SECRET_PROMPT not in (ws.close_reason or "")
            # The job was there to leak: a properly paired worker is assigned it at once.
            async with connect(url, compression=None) as ws:
                await ws.send(_worker_hello())
                assert isinstance(await recv_message(ws), m.Welcome)
                assign = await asyncio.wait_for(recv_message(ws), 5)
                assert isinstance(assign, m.Assign) and assign.prompt == SECRET_PROMPT

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "origin",
    [
        "https://chatgpt.com",
        "http://localhost:8000",
        "null",
        "chrome-extension://" + "b" * 32,  # an extension that was never paired
        "moz-extension://" + EXTENSION_ID,
    ],
)
def test_wrong_origin_with_the_right_token_is_refused_before_any_frame(
    origin: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with hub_with_waiting_job(tmp_path / "data") as url:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                    await ws.send(_worker_hello())
                    await ws.recv()
            response = refused.value.response
            assert response.status_code == 403
            assert SECRET_PROMPT.encode() not in response.body
            assert b"assign" not in response.body

    asyncio.run(scenario())


def test_client_with_wrong_token_cannot_list_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with hub_with_waiting_job(tmp_path / "data") as url:
            async with connect(url) as ws:
                await ws.send(hello_text(None, token="Q" * 43))
                await ws.send(json.dumps({"v": 1, "type": "list_jobs", "request_id": "r1"}))
                assert await frames_until_close(ws) == []
                assert ws.close_code == CloseCode.UNAUTHORIZED
            async with connect(url) as ws:  # the right token sees the job
                await ws.send(hello_text(None))
                assert isinstance(await recv_message(ws), m.Welcome)
                await ws.send(json.dumps({"v": 1, "type": "list_jobs", "request_id": "r1"}))
                jobs = await recv_message(ws)
                assert isinstance(jobs, m.Jobs) and [j.name for j in jobs.jobs] == ["waiting"]

    asyncio.run(scenario())
