"""Handshake, authentication, heartbeat and shutdown of the hub, over real sockets."""

from __future__ import annotations

import asyncio

import pytest
from server_testkit import (
    EXTENSION_ID,
    TOKEN,
    frames_until_close,
    hello_text,
    make_hub,
    recv_message,
    running,
    worker_connection,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import CloseCode
from novelgen_desktop.server.hub import Hub


def test_no_hello_within_auth_timeout_closes_4002() -> None:
    async def scenario() -> None:
        async with running(make_hub(auth_timeout=0.2)) as url, connect(url) as ws:
            assert await frames_until_close(ws) == []
            assert ws.close_code == CloseCode.AUTH_TIMEOUT
            assert ws.close_reason == "auth_timeout"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "first",
    [
        hello_text(token="W" * 43),
        hello_text(token=TOKEN[:-1] + "x"),
        '{"v": 1, "type": "heartbeat", "ts": 1.0}',
        "not json at all",
        b"NGI1\x00\x00\x00\x01\x011",
        hello_text().replace('"worker"', '"hub"'),
    ],
    ids=["wrong-token", "one-char-off", "not-hello", "garbage", "binary", "hub-role"],
)
def test_bad_first_frame_closes_4001_and_reveals_nothing(first: str | bytes) -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, connect(url) as ws:
            await ws.send(first)
            assert await frames_until_close(ws) == []  # no welcome, no error frame
            assert ws.close_code == CloseCode.UNAUTHORIZED
            assert ws.close_reason == "unauthorized"
        assert hub.workers == {}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "chrome-extension://" + "b" * 32]
)
def test_forbidden_origin_refused_at_handshake(origin: str) -> None:
    async def scenario() -> None:
        async with running(make_hub()) as url:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, origin=origin):
                    pass
            assert info.value.response.status_code == 403

    asyncio.run(scenario())


def test_a_stopping_hub_refuses_new_connections_with_503() -> None:
    """Between its ``bye shutdown`` and closing the listener, a stopping hub must not welcome
    a worker that reconnected at once (it would open tabs for a hub about to vanish)."""

    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url:
            hub._stopping = True  # what stop() sets first, before saying bye to anyone
            try:
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url, origin="chrome-extension://" + EXTENSION_ID):
                        pass
                assert info.value.response.status_code == 503
            finally:
                hub._stopping = False

    asyncio.run(scenario())


def test_paired_extension_origin_and_no_origin_accepted() -> None:
    async def scenario() -> None:
        async with running(make_hub()) as url:
            for origin in ("chrome-extension://" + EXTENSION_ID, None):
                async with connect(url, origin=origin) as ws:
                    await ws.send(hello_text())
                    assert isinstance(await recv_message(ws), m.Welcome)

    asyncio.run(scenario())


def test_oversized_frame_before_auth_is_closed() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, connect(url, max_size=None) as ws:
            await ws.send("x" * (m.MAX_HELLO_FRAME + 1))
            assert await frames_until_close(ws) == []
            assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
        assert hub.workers == {}

    asyncio.run(scenario())


def test_large_frames_allowed_after_auth() -> None:
    async def scenario() -> None:
        async with running(make_hub()) as url, worker_connection(url) as ws:
            padded = '{"v": 1, "type": "heartbeat", "ts": 1.0}' + " " * m.MAX_CONTROL_FRAME
            await ws.send(padded)  # over the hello limit and the control limit
            error = await recv_message(ws)
            assert isinstance(error, m.Error) and error.code == "too_large"

    asyncio.run(scenario())


def test_no_common_version_sends_bad_version_then_4009() -> None:
    async def scenario() -> None:
        async with running(make_hub()) as url, connect(url) as ws:
            await ws.send(hello_text(versions=(2, 3)))
            frames = await frames_until_close(ws)
            assert len(frames) == 1 and isinstance(frames[0], str)
            error = m.decode(frames[0])
            assert isinstance(error, m.Error) and error.code == "bad_version"
            assert ws.close_code == CloseCode.VERSION_UNSUPPORTED

    asyncio.run(scenario())


def test_welcome_is_valid_and_client_role_is_accepted() -> None:
    async def scenario() -> None:
        async with running(make_hub()) as url, connect(url) as ws:
            await ws.send(hello_text(worker_id=None))
            welcome = await recv_message(ws)
            assert isinstance(welcome, m.Welcome)
            assert welcome.version == 1
            assert welcome.max_frame_bytes == m.MAX_TEXT_FRAME
            await ws.send(m.encode(m.ListJobs(request_id="req-1")))
            error = await recv_message(ws)
            assert isinstance(error, m.Error) and error.re == "req-1"

    asyncio.run(scenario())


def test_silent_peer_dropped_with_4004_and_hub_sends_heartbeats() -> None:
    async def scenario() -> None:
        hub = make_hub(idle_timeout=0.6, heartbeat_interval=0.1)
        async with running(hub) as url, worker_connection(url) as ws:
            frames = await frames_until_close(ws)
            kinds = {m.decode(f).type for f in frames if isinstance(f, str)}
            assert kinds == {"heartbeat"}
            assert ws.close_code == CloseCode.HEARTBEAT_TIMEOUT

    asyncio.run(scenario())


def test_same_worker_id_replaces_older_connection() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            running(hub) as url,
            worker_connection(url, "tab-1") as old,
            worker_connection(url, "tab-1"),
        ):
            frames = await frames_until_close(old)
            assert [m.decode(f) for f in frames if isinstance(f, str)] == [
                m.Bye(reason=m.ByeReason.REPLACED)
            ]
            assert old.close_code == CloseCode.REPLACED
            assert len(await hub.wait_for_workers(1, timeout=5)) == 1

    asyncio.run(scenario())


def test_stop_says_bye_and_closes_going_away() -> None:
    async def scenario() -> None:
        hub = make_hub()
        port = await hub.start()
        async with worker_connection(f"ws://127.0.0.1:{port}/") as ws:
            await hub.stop()
            frames = await frames_until_close(ws)
            assert [m.decode(f) for f in frames if isinstance(f, str)] == [
                m.Bye(reason=m.ByeReason.SHUTDOWN)
            ]
            assert ws.close_code == CloseCode.GOING_AWAY

    asyncio.run(scenario())


def test_hub_refuses_non_loopback_bind() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="loopback"):
            await Hub(TOKEN).start("0.0.0.0", 0)

    asyncio.run(scenario())
