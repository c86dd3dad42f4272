"""A minimal client of the hub, written from ``docs/protocol.md`` alone.

It deliberately imports nothing from ``novelgen_desktop``: plain JSON over
``websockets.asyncio.client``, so a load test that passes also shows the spec is enough to
write a client. What it does: ``hello`` (role ``client``) → ``welcome``; ``submit`` →
``submitted``; ``subscribe`` → ``ack``, then ``job_progress`` and ``errors`` frames until the
job's state is final. It answers nothing the hub sends, sends a ``heartbeat`` when it has been
quiet for ``welcome.heartbeat_interval``, and when the connection drops (the hub was killed)
it reconnects and subscribes again. If the connection dropped before ``submitted`` arrived,
it looks the job up by name with ``list_jobs`` instead of submitting twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

PROTOCOL_VERSION = 1
TERMINAL_STATES = frozenset({"finished", "incomplete", "cancelled"})
FATAL_CLOSE_CODES = frozenset({4001, 4009})
"""Wrong token, no common version: reconnecting cannot help."""
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 1.0

Frame = dict[str, Any]


class HubRefusedError(Exception):
    """The hub refused this client for good (close 4001 or 4009), or answered a request with
    an ``error`` frame."""


class _DroppedError(Exception):
    """The connection ended; reconnect."""


@dataclass
class JobWatch:
    """What the client saw of one job; filled in as frames arrive."""

    name: str
    prompts: int
    job_id: str | None = None
    tasks: int | None = None
    skipped: int = 0
    progress: Frame | None = None
    """The latest ``job_progress`` frame of the job."""
    error_groups: list[Frame] = field(default_factory=list)
    submitted_at: float | None = None
    """``time.time()`` when ``submitted`` arrived."""
    ended_at: float | None = None
    """``time.time()`` when the first ``job_progress`` with a final state arrived."""
    connections: int = 0
    connect_failures: int = 0
    progress_frames: int = 0
    errors_frames: int = 0
    heartbeats_sent: int = 0
    hub_errors: list[Frame] = field(default_factory=list)
    """``error`` frames the hub sent (each is a protocol error on our side: none expected)."""
    byes: list[str] = field(default_factory=list)
    memory_states: list[Frame] = field(default_factory=list)
    """``memory_state`` frames (the hub's memory governor), in order."""
    unexpected: list[str] = field(default_factory=list)
    """Types of frames a client should not receive."""

    @property
    def state(self) -> str | None:
        return None if self.progress is None else str(self.progress["state"])

    @property
    def done(self) -> int:
        return 0 if self.progress is None else int(self.progress["done"])

    @property
    def over(self) -> bool:
        return self.state in TERMINAL_STATES

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "tasks": self.tasks,
            "skipped": self.skipped,
            "final_state": self.state,
            "final_done": self.done if self.progress is not None else None,
            "connections": self.connections,
            "reconnects": max(0, self.connections - 1),
            "connect_failures": self.connect_failures,
            "progress_frames": self.progress_frames,
            "errors_frames": self.errors_frames,
            "heartbeats_sent": self.heartbeats_sent,
            "hub_errors": self.hub_errors[:20],
            "byes": self.byes,
            "unexpected": sorted(set(self.unexpected)),
            "error_groups": [
                {"kind": g.get("kind"), "count": g.get("count")} for g in self.error_groups
            ],
            "memory": memory_summary(self.memory_states, self.ended_at or time.time()),
        }


_HOLDING = ("pressure", "critical")


def memory_summary(frames: list[Frame], end: float) -> dict[str, Any]:
    """The governor's episodes as a client saw them: how often dispatch was held, for how
    long in all (by the hub's own timestamps), and the states it went through."""
    held = 0.0
    episodes = 0
    started: float | None = None
    for frame in frames:
        holding = frame.get("state") in _HOLDING
        ts = float(frame.get("ts", 0.0))
        if holding and started is None:
            started, episodes = ts, episodes + 1
        elif not holding and started is not None:
            held, started = held + ts - started, None
    if started is not None:
        held += max(0.0, end - started)
    return {
        "transitions": len(frames),
        "episodes": episodes,
        "held_seconds": round(held, 3),
        "states": [str(f.get("state")) for f in frames[:200]],
        "peak_percent": max((float(f.get("system_percent", 0.0)) for f in frames), default=None),
    }


class _Session:
    """One authenticated connection: a reader task that routes answers to waiting requests
    and progress to the watch, and a heartbeat task."""

    def __init__(self, ws: ClientConnection, welcome: Frame, watch: JobWatch) -> None:
        self.ws = ws
        self.watch = watch
        self.heartbeat_interval = float(welcome["heartbeat_interval"])
        self.last_sent = time.monotonic()
        self.pending: dict[str, asyncio.Future[Frame]] = {}
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()
        self.on_progress: Callable[[JobWatch], None] | None = None
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._lock = asyncio.Lock()

    async def send(self, frame: Frame) -> None:
        async with self._lock:
            await self.ws.send(json.dumps({"v": PROTOCOL_VERSION, **frame}))
            self.last_sent = time.monotonic()

    async def request(self, frame: Frame) -> Frame:
        request_id = f"req-{next(self._ids)}"
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            await self.send({**frame, "request_id": request_id})
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await future
        finally:
            self.pending.pop(request_id, None)

    async def heartbeats(self) -> None:
        while True:
            due = self.last_sent + self.heartbeat_interval
            await asyncio.sleep(max(0.05, due - time.monotonic()))
            if time.monotonic() - self.last_sent >= self.heartbeat_interval:
                await self.send({"type": "heartbeat", "ts": time.time(), "seq": next(self._seq)})
                self.watch.heartbeats_sent += 1

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    self.watch.unexpected.append("binary")
                    continue
                frame = json.loads(raw)
                if not isinstance(frame, dict):
                    self.watch.unexpected.append("non-object")
                    continue
                self._route(frame)
        finally:
            self.closed.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(_DroppedError("connection closed"))
            self.changed.set()

    def _route(self, frame: Frame) -> None:
        kind = frame.get("type")
        re = frame.get("re")
        if re is not None and re in self.pending and kind in ("submitted", "ack", "jobs", "error"):
            future = self.pending[re]
            if not future.done():
                if kind == "error":
                    future.set_exception(HubRefusedError(f"{frame['code']}: {frame['message']}"))
                else:
                    future.set_result(frame)
            return
        if kind == "job_progress":
            if frame.get("job_id") == self.watch.job_id:
                self.watch.progress = frame
                self.watch.progress_frames += 1
                if self.watch.over and self.watch.ended_at is None:
                    self.watch.ended_at = time.time()
                if self.on_progress is not None:
                    self.on_progress(self.watch)
                self.changed.set()
        elif kind == "errors":
            if frame.get("job_id") == self.watch.job_id:
                self.watch.error_groups = list(frame.get("groups") or [])
                self.watch.errors_frames += 1
        elif kind == "error":
            self.watch.hub_errors.append(frame)
        elif kind == "bye":
            self.watch.byes.append(str(frame.get("reason")))
        elif kind == "memory_state":
            self.watch.memory_states.append(frame)
        elif kind != "heartbeat":
            self.watch.unexpected.append(str(kind))


class HubClient:
    """Submits jobs to the hub at ``url`` and follows them to the end.

    ``token`` may be a callable, read again before every connection (the token file of a
    restarted hub)."""

    def __init__(
        self,
        url: str,
        token: str | Callable[[], str],
        *,
        agent: str = "novelgen-loadtest/1",
    ) -> None:
        self.url = url
        self._token = token
        self.agent = agent

    def token(self) -> str:
        return self._token() if callable(self._token) else self._token

    async def run_job(
        self,
        name: str,
        prompts: list[str],
        *,
        interval: float = 0.25,
        timeout: float = 600.0,
        on_progress: Callable[[JobWatch], None] | None = None,
        watch: JobWatch | None = None,
        submit_fields: dict[str, Any] | None = None,
    ) -> JobWatch:
        """Submit ``prompts`` as job ``name`` and return once its state is final (raises
        ``TimeoutError`` after ``timeout`` s, leaving what was seen in ``watch``).
        ``submit_fields`` replaces the inline prompts (``path``, ``style``, ...)."""
        watch = watch if watch is not None else JobWatch(name=name, prompts=len(prompts))
        submit_sent = False
        backoff = BACKOFF_INITIAL
        async with asyncio.timeout(timeout):
            while True:
                try:
                    async with connect(
                        self.url,
                        compression=None,
                        ping_interval=None,
                        open_timeout=HANDSHAKE_TIMEOUT,
                        close_timeout=1.0,
                        max_size=2**24,
                    ) as ws:
                        session = await self._hello(ws, watch)
                        session.on_progress = on_progress
                        watch.connections += 1
                        backoff = BACKOFF_INITIAL
                        tasks = [
                            asyncio.create_task(session.read()),
                            asyncio.create_task(session.heartbeats()),
                        ]
                        try:
                            if watch.job_id is None and submit_sent:
                                watch.job_id = await self._find_job(session, name)
                            if watch.job_id is None:
                                submit_sent = True
                                fields = submit_fields or {"prompts": prompts}
                                await self._submit(session, watch, fields)
                            await self._follow(session, watch, interval)
                            return watch
                        finally:
                            for task in tasks:
                                task.cancel()
                            await asyncio.gather(*tasks, return_exceptions=True)
                except ConnectionClosed as err:
                    code = err.rcvd.code if err.rcvd is not None else None
                    if code in FATAL_CLOSE_CODES:
                        raise HubRefusedError(f"hub closed the connection with {code}") from err
                except (_DroppedError, OSError, InvalidHandshake, TimeoutError):
                    pass  # the hub is gone or restarting: the outer timeout bounds the retries
                watch.connect_failures += 1
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)

    async def _hello(self, ws: ClientConnection, watch: JobWatch) -> _Session:
        await ws.send(
            json.dumps(
                {
                    "v": PROTOCOL_VERSION,
                    "type": "hello",
                    "token": self.token(),
                    "role": "client",
                    "versions": [PROTOCOL_VERSION],
                    "agent": self.agent,
                }
            )
        )
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            while True:
                frame = json.loads(await ws.recv())
                kind = frame.get("type") if isinstance(frame, dict) else None
                if kind == "welcome":
                    return _Session(ws, frame, watch)
                if kind == "error":
                    raise HubRefusedError(f"hello refused: {frame.get('code')}")

    async def _submit(self, session: _Session, watch: JobWatch, fields: dict[str, Any]) -> None:
        answer = await session.request({"type": "submit", "name": watch.name, **fields})
        if answer.get("type") != "submitted":
            raise HubRefusedError(f"submit answered with {answer.get('type')}: {answer}")
        watch.job_id = str(answer["job_id"])
        watch.tasks = int(answer["tasks"])
        watch.skipped = int(answer.get("skipped") or 0)
        watch.submitted_at = time.time()

    async def _find_job(self, session: _Session, name: str) -> str | None:
        """The job a submit whose answer was lost created, if any (newest of that name)."""
        answer = await session.request({"type": "list_jobs", "limit": 1000})
        for job in answer.get("jobs") or []:
            if job.get("name") == name:
                return str(job["job_id"])
        return None

    async def _follow(self, session: _Session, watch: JobWatch, interval: float) -> None:
        assert watch.job_id is not None
        await session.request(
            {
                "type": "subscribe",
                "job_ids": [watch.job_id],
                "interval": interval,
                "workers": False,
            }
        )
        while not watch.over:
            session.changed.clear()
            if session.closed.is_set():
                raise _DroppedError("connection closed")
            await session.changed.wait()
        with contextlib.suppress(ConnectionClosed):
            await session.send({"type": "bye", "reason": "user"})
