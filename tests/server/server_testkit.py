"""A tiny worker-side client written from docs/protocol.md, for the hub's tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.service import JobService, ServiceSettings
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.framing import image_frame
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.sim.render import render_panel_png
from novelgen_desktop.sim.worker import SimBehaviour

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


# -- a hub with a real job service, simulated workers and a protocol client -----------------
# (added for test_server_jobs.py and test_server_fuzz_volume.py)

FAST_RUN_SETTINGS = RunSettings(
    policy=SchedulerPolicy(backoff_base=0.02, backoff_cap=0.2),
    fsync_files=False,
    reaper_interval=0.05,
    stop_grace=5.0,
    progress_interval=0.1,
    wait_for_workers=True,
)
"""Quick retries and no fsync: a job of a few dozen tasks ends in about a second."""
FAST_SIM = SimBehaviour(latency_median=0.0, latency_sigma=0.0, reuse_images=8, image_size=64)


async def start_service_hub(
    data_dir: Path, *, run: RunSettings = FAST_RUN_SETTINGS, **hub_options: Any
) -> tuple[JobService, Hub, str]:
    """A started :class:`JobService` on ``data_dir`` and a listening hub over it."""
    service = JobService(resolve_data_dir(data_dir), ServiceSettings(run=run))
    await service.start()
    options: dict[str, Any] = {**FAST, "auth_timeout": 2.0, **hub_options}
    hub = Hub(TOKEN, service=service, **options)
    port = await hub.start("127.0.0.1", 0)
    return service, hub, f"ws://127.0.0.1:{port}/"


class JobClient:
    """A protocol client: every frame from the hub is kept in ``messages`` (in order)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[m.Message] = []
        self._arrived = asyncio.Condition()
        self._count = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[JobClient]:
        async with connect(url, compression=None, max_size=2**26) as ws:
            await ws.send(hello_text(None))
            welcome = await asyncio.wait_for(recv_message(ws), 5)
            assert isinstance(welcome, m.Welcome), welcome
            client = cls(ws)
            try:
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await client._reader

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await recv_message(self.ws)
                async with self._arrived:
                    self.messages.append(message)
                    self._arrived.notify_all()

    def next_id(self) -> str:
        self._count += 1
        return f"req-{self._count}"

    async def wait_for(
        self, predicate: Callable[[m.Message], bool], timeout: float = 10.0, start: int = 0
    ) -> m.Message:
        """The first message from index ``start`` on satisfying ``predicate``."""

        def found() -> m.Message | None:
            return next((x for x in self.messages[start:] if predicate(x)), None)

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: found() is not None or self._reader.done())
        message = found()
        assert message is not None, f"connection closed; got {self.messages[-5:]}"
        return message

    async def request(
        self, message: m.Submit | m.Subscribe | m.Control | m.ListJobs, timeout: float = 10.0
    ) -> m.Message:
        """Send a request; its answer (the frame whose ``re`` is the ``request_id``)."""
        request_id = message.request_id
        await self.ws.send(m.encode(message))
        return await self.wait_for(lambda x: getattr(x, "re", None) == request_id, timeout)

    async def submit(self, name: str, prompts: list[str], **fields: Any) -> m.Submitted:
        answer = await self.request(
            m.Submit(request_id=self.next_id(), name=name, prompts=tuple(prompts), **fields)
        )
        assert isinstance(answer, m.Submitted), answer
        return answer

    async def subscribe(self, *job_ids: str, interval: float = 0.25) -> None:
        answer = await self.request(
            m.Subscribe(request_id=self.next_id(), job_ids=job_ids, interval=interval)
        )
        assert isinstance(answer, m.Ack), answer

    async def control(self, job_id: str, action: str) -> m.Message:
        return await self.request(
            m.Control(request_id=self.next_id(), job_id=job_id, action=m.ControlAction(action))
        )

    async def progress_until(
        self, job_id: str, states: Iterable[str], timeout: float = 20.0, start: int = 0
    ) -> m.JobProgress:
        """The first ``job_progress`` of ``job_id`` in one of ``states``."""
        wanted = set(states)
        message = await self.wait_for(
            lambda x: isinstance(x, m.JobProgress) and x.job_id == job_id and x.state in wanted,
            timeout,
            start,
        )
        assert isinstance(message, m.JobProgress)
        return message


async def frames_until_close(ws: ClientConnection, timeout: float = 5.0) -> list[str | bytes]:
    """Every frame received before the hub closed the connection (it must close in time)."""
    frames: list[str | bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(await ws.recv())
    except ConnectionClosed:
        return frames
    raise AssertionError(f"the hub did not close the connection within {timeout} s")
