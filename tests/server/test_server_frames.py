"""Refused frames after authentication: error frames, the connection survives, the hub never
crashes; a fuzzer throws random and mutated frames while a good worker keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_testkit import (
    heartbeat_text,
    make_hub,
    png_for,
    recv_message,
    running,
    send_result,
    serve_assignments,
    worker_connection,
)
from websockets.exceptions import ConnectionClosed

from novelgen_desktop.engine.model import Assignment, WorkerResult
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import CloseCode
from novelgen_desktop.protocol.examples import example_messages
from novelgen_desktop.protocol.framing import image_frame
from novelgen_desktop.server.hub import Hub

GARBAGE: list[str | bytes] = [
    "not json",
    "[]",
    '{"v": 2, "type": "heartbeat", "ts": 1}',
    '{"v": 1, "type": "nope"}',
    '{"v": 1, "type": "heartbeat"}',
    '{"v": 1, "type": "heartbeat", "ts": 1, "extra": 0}',
    '{"v": 1, "type": "assign", "task_id": "1", "attempt": 1, "prompt": "x", "deadline": 1}',
    '{"v": 1, "type": "heartbeat", "ts": NaN}',
    b"\x00\x01binary nobody announced",
]


async def _assert_serves(ws: Any) -> None:
    """The connection still answers: a refused frame gets its error frame."""
    await ws.send('{"v": 1, "type": "ping"}')
    while True:
        message = await asyncio.wait_for(recv_message(ws), 5)
        if isinstance(message, m.Error) and message.code == "unknown_type":
            return


def test_garbage_after_auth_gets_error_frames_and_connection_survives() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url) as ws:
            codes = []
            for frame in GARBAGE:
                await ws.send(frame)
                error = await recv_message(ws)
                assert isinstance(error, m.Error)
                codes.append(error.code.value)
            assert codes == [
                "bad_json",
                "bad_json",
                "bad_version",
                "unknown_type",
                "missing_field",
                "unknown_field",
                "forbidden_role",
                "bad_json",
                "unexpected_binary",
            ]
            (worker,) = await hub.wait_for_workers(1, timeout=5)
            client = asyncio.create_task(serve_assignments(ws, 1))
            outcome = await worker.execute(Assignment(1, 1, "still serving", time.time() + 60))
            assert isinstance(outcome, WorkerResult)
            await asyncio.wait_for(client, 5)

    asyncio.run(scenario())


def test_broken_binary_transfer_is_refused_and_not_acked() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url) as ws:
            (worker,) = await hub.wait_for_workers(1, timeout=5)
            task = asyncio.create_task(worker.execute(Assignment(4, 1, "p", time.time() + 60)))
            assign = await recv_message(ws)
            assert isinstance(assign, m.Assign)
            image = png_for(assign)
            announce = m.Result(
                task_id="4",
                attempt=1,
                sha256=hashlib.sha256(image).hexdigest(),
                size=len(image),
                mime=m.ImageMime.PNG,
                encoding=m.ImageEncoding.BINARY,
            )
            await ws.send(m.encode(announce))
            await ws.send(heartbeat_text())  # where the image was due
            error = await recv_message(ws)
            assert isinstance(error, m.Error) and error.code == "binary_expected"
            await ws.send(m.encode(announce))
            await ws.send(image_frame("4", 2, image))  # wrong attempt in the header
            error = await recv_message(ws)
            assert isinstance(error, m.Error) and error.code == "image_mismatch"
            await ws.send(m.encode(announce))
            await ws.send(image_frame("4", 1, image[:-1] + b"\x00"))  # wrong bytes
            error = await recv_message(ws)
            assert isinstance(error, m.Error) and error.code == "image_mismatch"
            assert not task.done()
            await send_result(ws, assign, image)  # the worker resends: accepted now
            ack = await recv_message(ws)
            assert isinstance(ack, m.Ack) and ack.outcome == "accepted"
            outcome = await task
            assert isinstance(outcome, WorkerResult) and outcome.image == image

    asyncio.run(scenario())


def test_too_many_refused_frames_closes_4008() -> None:
    async def scenario() -> None:
        async with running(make_hub(refused_limit=5)) as url, worker_connection(url) as ws:
            errors = 0
            with pytest.raises(ConnectionClosed):
                for _ in range(10):
                    await ws.send("garbage")
                for _ in range(10):
                    if isinstance(await asyncio.wait_for(recv_message(ws), 5), m.Error):
                        errors += 1
            assert errors == 5
            assert ws.close_code == CloseCode.POLICY

    asyncio.run(scenario())


# -- fuzz: one hub, one well-behaved worker, a loop in a background thread --------------------

WIRES = [m.to_wire(x) for x in example_messages()]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["1", "4812", "007", "binary", "base64", "worker", "a" * 64])
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    wire = dict(draw(st.sampled_from(WIRES)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        key = draw(st.sampled_from(sorted(wire) or ["v"]))
        if action == "set":
            wire[key] = draw(SCALARS)
        elif action == "drop":
            wire.pop(key, None)
        else:
            wire[draw(st.text(min_size=1, max_size=8))] = draw(SCALARS)
    text = json.dumps(wire)
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=5)) + text[cut:]
    return text


FRAMES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.binary(max_size=64).map(lambda tail: b"NGI1\x00\x00\x00\x01\x014" + tail),
    mutated(),
    st.sampled_from([json.dumps(w) for w in WIRES]),
)


class _Failures(logging.Handler):
    """Every error the hub logs (a failed session or frame handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Background:
    """A hub and a busy, well-behaved worker on an event loop in another thread."""

    def __init__(self) -> None:
        self.failures = _Failures()
        logging.getLogger("novelgen_desktop.server").addHandler(self.failures)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub = make_hub(refused_limit=10**9, idle_timeout=60.0)
        self.url = self.run(self._start())
        self.completed = 0
        self.stop_work = asyncio.Event()
        self.work = asyncio.run_coroutine_threadsafe(self._keep_working(), self.loop)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> str:
        port = await self.hub.start("127.0.0.1", 0)
        return f"ws://127.0.0.1:{port}/"

    async def _keep_working(self) -> int:
        async with worker_connection(self.url, "good-worker") as ws:
            client = asyncio.create_task(serve_assignments(ws))
            worker = self.hub.workers["good-worker"]
            task_id = 0
            while not self.stop_work.is_set():
                task_id += 1
                assignment = Assignment(task_id, 1, f"panel {task_id}", time.time() + 60)
                outcome = await worker.execute(assignment)
                assert isinstance(outcome, WorkerResult) and outcome.task_id == task_id
                assert outcome.image.startswith(b"\x89PNG")
                self.completed += 1
                # At a worker's pace, not a loop's: unpaced on an idle machine this loopback
                # worker sent ~2,700 frames/s, over the hub's flood limit (1,000/s after a
                # burst of 5,000), and was rightly closed with 4008 mid-module.
                await asyncio.sleep(0.005)
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client
        return self.completed

    def close(self) -> int:
        self.loop.call_soon_threadsafe(self.stop_work.set)
        completed = int(self.work.result(30))
        self.run(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        logging.getLogger("novelgen_desktop.server").removeHandler(self.failures)
        return completed


@pytest.fixture(scope="module")
def background() -> Iterator[_Background]:
    bg = _Background()
    try:
        yield bg
    finally:
        bg.close()


async def _throw(hub: Hub, url: str, frames: list[str | bytes], index: int) -> None:
    async with worker_connection(url, f"fuzz-{index}") as ws:
        for frame in frames:
            await ws.send(frame)
        said_bye = False
        for frame in frames:
            if isinstance(frame, str):
                with contextlib.suppress(Exception):
                    said_bye |= isinstance(m.decode(frame), m.Bye)
        try:
            await _assert_serves(ws)
        except ConnectionClosed:
            assert said_bye, f"closed {ws.close_code} without a bye"
            assert ws.close_code == CloseCode.NORMAL


_counter = iter(range(10**9))


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(frames=st.lists(FRAMES, min_size=1, max_size=8))
def test_fuzzed_frames_never_hurt_the_hub(
    background: _Background, frames: list[str | bytes]
) -> None:
    before = background.completed
    background.run(_throw(background.hub, background.url, frames, next(_counter)))
    assert not background.work.done(), background.work.exception()
    assert background.completed >= before
    assert background.failures.records == []


def test_good_worker_completed_assignments_during_fuzzing(background: _Background) -> None:
    deadline = time.monotonic() + 10
    while background.completed < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert background.completed >= 20
    assert not background.work.done()
