"""Simulated ChatGPT tabs that speak the worker side of the hub protocol over a real WebSocket.

A :class:`RemoteSimWorker` is one simulated tab: it connects to the hub, says ``hello``,
answers every ``assign`` with what :class:`~novelgen_desktop.sim.worker.SimulatedWorker`
produces (a ``result`` and its binary image frame, or a ``task_error``), keeps each outcome
until the hub acks it (resending it after a reconnect), heartbeats when idle, obeys ``cancel``
and ``bye``, and reconnects with capped exponential backoff when the connection drops. A
simulated crash (``WorkerCrashed`` from the behaviour model) aborts the socket without a close
frame, forgets everything a dead process would forget, and comes back after
``behaviour.restart_delay`` as a new instance (a new ``instance_id``, holding nothing). A
reconnect of a live instance lists what it still holds in ``hello.holding``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hashlib
import logging
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from novelgen_desktop import __version__
from novelgen_desktop.engine.model import (
    Assignment,
    ErrorKind,
    WorkerFailure,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.worker import WorkerCrashed
from novelgen_desktop.protocol.codes import CloseCode, ErrorCode, ProtocolError
from novelgen_desktop.protocol.convert import assignment_from, task_error_from
from novelgen_desktop.protocol.framing import image_frame
from novelgen_desktop.protocol.messages import (
    MAX_HOLDING,
    MAX_REFERENCE_FRAME,
    SUPPORTED_VERSIONS,
    Ack,
    Assign,
    AttemptRef,
    Bye,
    ByeReason,
    Cancel,
    Cleanup,
    CleanupAction,
    CleanupDone,
    Error,
    Heartbeat,
    Hello,
    ImageEncoding,
    ImageMime,
    Message,
    ReferenceImage,
    Result,
    Role,
    Status,
    TabHealth,
    Welcome,
    decode,
    encode,
)
from novelgen_desktop.sim.worker import SimBehaviour, SimulatedWorker, make_simulated_workers

log = logging.getLogger(__name__)

CAPABILITIES = ("binary_frames", "image_png", "cleanup", "references")
HANDSHAKE_TIMEOUT = 10.0
"""Seconds to open the WebSocket and to receive ``welcome``."""
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
_FATAL_CLOSES = frozenset({CloseCode.UNAUTHORIZED, CloseCode.VERSION_UNSUPPORTED})
_FORGET_ON_ERROR = frozenset({ErrorCode.UNKNOWN_TASK, ErrorCode.BAD_FIELD, ErrorCode.TOO_LARGE})
"""Refusals of a resent outcome that no resend can fix: the outcome is dropped."""

Key = tuple[str, int]  # (task_id as on the wire, attempt)


@dataclass(frozen=True, slots=True)
class RemoteFaults:
    """Transport-level faults of a simulated tab, every N-th attempt (0 = off), for the load
    tests: what the protocol must survive, not what the page does (that is ``SimBehaviour``).

    ``disconnect_every``: drop the connection (no close frame) as the attempt starts and stay
    away ``away`` seconds, keeping the attempt: it reconnects holding it and delivers — or, if
    ``away`` outlasts the hub's grace period, delivers a late result. ``duplicate_every``: send
    the outcome twice. ``memory_pressure_every``: after the attempt, report an unresponsive tab
    with a large heap for ``pressure_seconds``, then a healthy one.
    """

    disconnect_every: int = 0
    away: float = 0.2
    duplicate_every: int = 0
    memory_pressure_every: int = 0
    pressure_seconds: float = 1.0

    def __post_init__(self) -> None:
        for name in ("disconnect_every", "duplicate_every", "memory_pressure_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.away < 0 or self.pressure_seconds < 0:
            raise ValueError("away and pressure_seconds must not be negative")


@dataclass(frozen=True, slots=True)
class SimHeap:
    """A simulated tab's JS heap, for memory-pressure scenarios in CI (no real browser bloats).

    The heap starts at ``base_bytes`` and grows by ``growth_per_attempt`` with every attempt
    (a long ChatGPT conversation keeps every turn's DOM and image); the tab reports it in
    ``status`` after each attempt, with the conversation's turns. It answers ``cleanup`` like
    the extension: ``reload_tab`` (idle only) takes ``reload_seconds`` with the tab ``loading``
    and brings the heap back to ``base_bytes``; ``new_chat`` (idle only) drops the turns and
    ``new_chat_share`` of the growth; ``drop_images`` forgets the bytes of acknowledged images
    kept so far (``image_cache`` of each image's size)."""

    base_bytes: int = 150 * 2**20
    growth_per_attempt: int = 0
    reload_seconds: float = 0.2
    new_chat_share: float = 0.5
    image_cache: float = 1.0

    def __post_init__(self) -> None:
        if self.base_bytes < 0 or self.growth_per_attempt < 0 or self.reload_seconds < 0:
            raise ValueError("SimHeap sizes and reload_seconds must not be negative")
        if not 0.0 <= self.new_chat_share <= 1.0 or not 0.0 <= self.image_cache <= 1.0:
            raise ValueError("SimHeap new_chat_share and image_cache must be within 0–1")


PRESSURE_BYTES = 3_500_000_000
HEALTHY_BYTES = 350_000_000


class SimAuthError(Exception):
    """The hub refused this worker for good (wrong token, no common version)."""


class _End(enum.Enum):
    STOP = "stop"  # run() returns
    RECONNECT = "reconnect"  # reconnect after the backoff
    CRASHED = "crashed"  # reconnect after restart_delay as a new instance


def new_instance_id() -> str:
    """A fresh id for one (simulated) process start; fits the ``tab_id`` bounds."""
    return "i-" + secrets.token_hex(8)


def _frames(outcome: WorkerOutcome, elapsed: float) -> tuple[Message, bytes | None]:
    """The text frame (and binary frame) that carry ``outcome`` to the hub."""
    if isinstance(outcome, WorkerFailure):
        return task_error_from(outcome), None
    if not outcome.image:  # a zero-byte download cannot be announced (size ≥ 1)
        failure = WorkerFailure(
            outcome.task_id,
            outcome.attempt,
            ErrorKind.PAGE_ERROR,
            "the downloaded image was empty",
            conversation_url=outcome.conversation_url,
        )
        return task_error_from(failure), None
    task_id = str(outcome.task_id)
    result = Result(
        task_id=task_id,
        attempt=outcome.attempt,
        sha256=hashlib.sha256(outcome.image).hexdigest(),
        size=len(outcome.image),
        mime=ImageMime(outcome.mime or "image/png"),
        encoding=ImageEncoding.BINARY,
        conversation_url=outcome.conversation_url,
        image_id=outcome.image_id,
        elapsed=min(max(0.0, elapsed), 604800.0),
    )
    return result, image_frame(task_id, outcome.attempt, outcome.image)


class _Connection:
    """One open WebSocket: sends are serialized so a result and its image stay adjacent."""

    def __init__(self, ws: ClientConnection, heartbeat_interval: float) -> None:
        self.ws = ws
        self.heartbeat_interval = heartbeat_interval
        self.lock = asyncio.Lock()
        self.last_sent = time.monotonic()
        self.awaiting: deque[Key] = deque()  # outcomes sent here, answer (ack/error) pending
        self._seq = 0

    async def send(self, *frames: Message | bytes) -> None:
        async with self.lock:
            for frame in frames:
                await self.ws.send(frame if isinstance(frame, bytes) else encode(frame))
            self.last_sent = time.monotonic()

    async def heartbeats(self) -> None:
        while True:
            due = self.last_sent + self.heartbeat_interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() - self.last_sent >= self.heartbeat_interval:
                self._seq += 1
                await self.send(Heartbeat(ts=time.time(), seq=self._seq))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a dying process does."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()


class RemoteSimWorker:
    """One simulated tab connected to a hub. Observable state, for tests and the demo:

    ``instance_id`` (changes on every simulated crash), ``instance_ids`` (all of them, in
    order), ``connections`` (welcomes received), ``crashes``, ``bye_reason`` (the hub's last
    ``bye``), ``unacked`` (outcomes not acked yet) and ``sim`` (the behaviour model).
    """

    def __init__(
        self,
        *,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        seed: int | None = None,
        faults: RemoteFaults | None = None,
        ssl_context: ssl.SSLContext | None = None,
        heap: SimHeap | None = None,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff must satisfy 0 < backoff_initial <= backoff_max")
        self.faults = faults or RemoteFaults()
        self.ssl_context = ssl_context
        self.attempts = 0  # attempts started (the fault counters count these)
        self.references: dict[str, bytes] = {}  # reference images received, by SHA-256
        # (task id, attempt, SHA-256 of each reference) for every assign with its references
        self.attached: list[tuple[str, int, list[str]]] = []
        self.disconnects = 0
        self.duplicates_sent = 0
        self.pressure_reports = 0
        self._away_until = 0.0
        self._helpers: set[asyncio.Task[None]] = set()
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._jitter = random.Random(seed)
        self.instance_id = new_instance_id()
        self.instance_ids: list[str] = [self.instance_id]
        self.connections = 0
        self.crashes = 0
        self.bye_reason: ByeReason | None = None
        self.sim: SimulatedWorker | None = None
        self.unacked: dict[Key, tuple[Message, bytes | None]] = {}
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._conn: _Connection | None = None
        self._crashed = asyncio.Event()
        self._welcomed = False  # the last connection attempt got as far as ``welcome``
        self.heap = heap or SimHeap()
        self.heap_bytes = self.heap.base_bytes
        self.turns = 0
        self.cached_image_bytes = 0
        self.cleanups: list[CleanupDone] = []
        self._loaded = asyncio.Event()  # cleared while a simulated reload runs
        self._loaded.set()

    # -- the reconnect loop -----------------------------------------------------------------

    async def run(
        self,
        url: str,
        token: str,
        *,
        worker_id: str,
        account_id: str,
        behaviour: SimBehaviour,
        stop: asyncio.Event,
    ) -> None:
        """Serve the hub at ``url`` until ``stop`` is set or the hub says ``bye`` (any reason
        but ``restart``). Raises :class:`SimAuthError` when the hub refuses the token."""
        self.sim = SimulatedWorker(worker_id, account_id, behaviour)
        failures = 0
        try:
            while not stop.is_set():
                end: _End = _End.RECONNECT
                if not self._crashed.is_set():
                    try:
                        end = await self._connect_once(url, token, account_id, stop)
                    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as err:
                        log.debug("%s: connection failed: %r", worker_id, err)
                if end is _End.STOP or stop.is_set():
                    return
                if self._crashed.is_set():
                    self._crashed.clear()
                    await self._cancel_running()
                    self._restart_as_new_instance()
                    delay = behaviour.restart_delay
                    failures = 0
                else:
                    failures = 0 if self._welcomed else failures + 1
                    delay = max(self._backoff(failures), self._away_until - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self._cancel_running()

    def _backoff(self, failures: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(failures, 30))
        return base * (0.5 + 0.5 * self._jitter.random())

    def _restart_as_new_instance(self) -> None:
        """A crashed process forgets its work; the tab comes back as a new instance."""
        self.crashes += 1
        self.unacked.clear()
        self.instance_id = new_instance_id()
        self.instance_ids.append(self.instance_id)

    async def _cancel_running(self) -> None:
        tasks = list(self._running.values())
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one connection ---------------------------------------------------------------------

    async def _connect_once(
        self, url: str, token: str, account_id: str, stop: asyncio.Event
    ) -> _End:
        assert self.sim is not None
        self._welcomed = False
        async with connect(
            url,
            compression=None,
            ping_interval=None,
            open_timeout=HANDSHAKE_TIMEOUT,
            close_timeout=1.0,
            ssl=self.ssl_context if url.startswith("wss://") else None,
            max_size=MAX_REFERENCE_FRAME,  # the largest frame a hub sends
        ) as ws:
            hello = Hello(
                token=token,
                role=Role.WORKER,
                versions=SUPPORTED_VERSIONS,
                agent=f"novelgen-sim/{__version__}",
                worker_id=self.sim.worker_id,
                account_id=account_id,
                kind=SimulatedWorker.kind,
                instance_id=self.instance_id,
                capabilities=CAPABILITIES,
                holding=self._holding(),
            )
            await ws.send(encode(hello))
            welcome = await self._welcome(ws)
            conn = _Connection(ws, welcome.heartbeat_interval)
            self._conn, self._welcomed = conn, True
            self.connections += 1
            helpers = [
                asyncio.create_task(conn.heartbeats()),
                asyncio.create_task(self._watch_stop(conn, stop)),
            ]
            try:
                for key, (text, binary) in list(self.unacked.items()):
                    conn.awaiting.append(key)
                    await conn.send(text, *([binary] if binary is not None else []))
                return await self._serve(conn)
            finally:
                self._conn = None
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                if stop.is_set() or self._crashed.is_set():
                    await self._cancel_running()

    def _holding(self) -> tuple[AttemptRef, ...]:
        """What this instance still has: attempts running and outcomes not yet acked."""
        keys = list(dict.fromkeys([*self._running, *self.unacked]))[:MAX_HOLDING]
        return tuple(AttemptRef(task_id=task_id, attempt=attempt) for task_id, attempt in keys)

    async def _welcome(self, ws: ClientConnection) -> Welcome:
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                while True:
                    message = _decode(await ws.recv())
                    if isinstance(message, Welcome):
                        return message
                    if isinstance(message, Error) and message.code is ErrorCode.BAD_VERSION:
                        raise SimAuthError(f"hub refused the protocol version: {message.message}")
        except ConnectionClosed as err:
            code = err.rcvd.code if err.rcvd is not None else None
            if code in _FATAL_CLOSES:
                raise SimAuthError(f"hub closed the connection: {code}") from err
            raise

    async def _watch_stop(self, conn: _Connection, stop: asyncio.Event) -> None:
        await stop.wait()
        with contextlib.suppress(ConnectionClosed):
            await conn.send(Bye(reason=ByeReason.TAB_CLOSED, detail="simulated worker stopped"))
        await conn.ws.close()

    async def _serve(self, conn: _Connection) -> _End:
        while True:
            try:
                frame = await conn.ws.recv()
            except ConnectionClosed:
                return _End.CRASHED if self._crashed.is_set() else _End.RECONNECT
            message = _decode(frame)
            if message is None:
                continue
            if isinstance(message, Assign):
                self._start(message)
            elif isinstance(message, ReferenceImage):
                self._keep_reference(message)
            elif isinstance(message, Ack):
                self._acked(conn, message)
            elif isinstance(message, Error):
                self._refused(conn, message)
            elif isinstance(message, Cancel):
                task = self._running.pop((message.task_id, message.attempt), None)
                if task is not None:
                    task.cancel()
            elif isinstance(message, Cleanup):
                helper = asyncio.create_task(self._clean_up(conn, message))
                self._helpers.add(helper)
                helper.add_done_callback(self._helpers.discard)
            elif isinstance(message, Bye):
                self.bye_reason = message.reason
                await conn.ws.close()
                return _End.RECONNECT if message.reason is ByeReason.RESTART else _End.STOP

    def _acked(self, conn: _Connection, ack: Ack) -> None:
        if ack.task_id is None or ack.attempt is None:
            return
        key = (ack.task_id, ack.attempt)
        kept = self.unacked.pop(key, None)
        if kept is not None and isinstance(kept[0], Result):
            self.cached_image_bytes += int(kept[0].size * self.heap.image_cache)
        with contextlib.suppress(ValueError):
            conn.awaiting.remove(key)

    def _refused(self, conn: _Connection, error: Error) -> None:
        """The hub answers each outcome with one ack or one error, in order."""
        log.debug("hub refused a frame: %s %s", error.code, error.message)
        if not conn.awaiting:
            return
        key = conn.awaiting.popleft()
        if error.code in _FORGET_ON_ERROR:
            self.unacked.pop(key, None)

    # -- attempts ---------------------------------------------------------------------------

    async def _send_outcome(
        self, key: Key, outcome: WorkerOutcome, elapsed: float, number: int = 0
    ) -> None:
        frames = _frames(outcome, elapsed)
        self.unacked[key] = frames
        conn = self._conn
        if conn is not None:
            text, binary = frames
            copies = 2 if number and _every(self.faults.duplicate_every, number) else 1
            for _ in range(copies):
                conn.awaiting.append(key)
                with contextlib.suppress(ConnectionClosed):
                    await conn.send(text, *([binary] if binary is not None else []))
            self.duplicates_sent += copies - 1

    def _keep_reference(self, message: ReferenceImage) -> None:
        """Keep a reference image the way the extension does: checked, by its hash."""
        try:
            data = base64.b64decode(message.data, validate=True)
        except binascii.Error:
            log.warning("reference image %s: data is not base64", message.name)
            return
        if len(data) != message.size or hashlib.sha256(data).hexdigest() != message.sha256:
            log.warning("reference image %s: size or SHA-256 does not match", message.name)
            return
        self.references[message.sha256] = data

    def _start(self, assign: Assign) -> None:
        key = (assign.task_id, assign.attempt)
        if key in self._running or key in self.unacked:
            return  # a repeated assign: the outcome is (being) produced already
        self.attempts += 1
        missing = [ref.name for ref in assign.references if ref.sha256 not in self.references]
        assignment = assignment_from(assign)
        if missing:
            # As the extension: no prompt is sent without its references (nothing is paid).
            failure = WorkerFailure(
                assignment.task_id,
                assignment.attempt,
                ErrorKind.PAGE_ERROR,
                "reference image never received: " + ", ".join(missing),
            )
            self._running[key] = asyncio.create_task(self._report(key, failure))
            return
        self.attached.append(
            (assign.task_id, assign.attempt, [r.sha256 for r in assign.references])
        )
        task = asyncio.create_task(self._attempt(key, assignment))
        self._running[key] = task
        if _every(self.faults.disconnect_every, self.attempts) and self._conn is not None:
            self.disconnects += 1
            self._away_until = time.monotonic() + self.faults.away
            self._conn.abort()  # the attempt goes on; the worker comes back holding it

    async def _report(self, key: Key, outcome: WorkerFailure) -> None:
        self._running.pop(key, None)
        await self._send_outcome(key, outcome, 0.0)

    async def _attempt(self, key: Key, assignment: Assignment) -> None:
        assert self.sim is not None
        await self._loaded.wait()  # an assign that arrived while the tab reloads waits for it
        started = time.monotonic()
        try:
            outcome = await self.sim.execute(assignment)
        except WorkerCrashed:
            self._running.pop(key, None)
            self._crash()
            return
        except asyncio.CancelledError:
            self._running.pop(key, None)
            raise
        except Exception as err:  # the model failed: report it as a page error, not a crash
            log.exception("simulated attempt %s failed", key)
            outcome = WorkerFailure(
                assignment.task_id, assignment.attempt, ErrorKind.PAGE_ERROR, str(err)[:4096]
            )
        self._running.pop(key, None)
        number = self.attempts
        if isinstance(outcome, WorkerResult | WorkerFailure):
            await self._send_outcome(key, outcome, time.monotonic() - started, number)
        self.turns += 1
        self.heap_bytes += self.heap.growth_per_attempt
        if self.heap.growth_per_attempt:
            await self._report_status()
        if _every(self.faults.memory_pressure_every, number):
            helper = asyncio.create_task(self._memory_pressure())
            self._helpers.add(helper)
            helper.add_done_callback(self._helpers.discard)

    async def _memory_pressure(self) -> None:
        """Report an unresponsive, bloated tab for a while, then a healthy one."""
        self.pressure_reports += 1
        for health, size, pause in (
            (TabHealth.UNRESPONSIVE, PRESSURE_BYTES, self.faults.pressure_seconds),
            (TabHealth.OK, HEALTHY_BYTES, 0.0),
        ):
            unresponsive = health is TabHealth.UNRESPONSIVE
            detail = "simulated memory pressure" if unresponsive else None
            await self._report_status(health, memory_bytes=size, detail=detail)
            await asyncio.sleep(pause)

    # -- memory (the governor's cleanup requests) -------------------------------------------

    async def _report_status(
        self,
        health: TabHealth = TabHealth.OK,
        *,
        memory_bytes: int | None = None,
        detail: str | None = None,
    ) -> None:
        """A ``status`` with the simulated heap (or ``memory_bytes``) and the turns."""
        conn = self._conn
        if conn is None:
            return
        status = Status(
            ts=time.time(),
            tab_health=health,
            busy=bool(self._running),
            memory_bytes=self.heap_bytes if memory_bytes is None else memory_bytes,
            conversation_turns=self.turns,
            detail=detail,
        )
        with contextlib.suppress(ConnectionClosed):
            await conn.send(status)

    async def _clean_up(self, conn: _Connection, request: Cleanup) -> None:
        """Answer one ``cleanup`` as the extension does (see :class:`SimHeap`)."""
        before = self.heap_bytes
        action, ok, freed, detail = request.action, True, None, None
        if action in (CleanupAction.RELOAD_TAB, CleanupAction.NEW_CHAT) and (
            self._running or not self._loaded.is_set()
        ):
            ok, detail = False, "busy: an attempt is in hand"
        elif action is CleanupAction.RELOAD_TAB:
            self._loaded.clear()
            await self._report_status(TabHealth.LOADING)
            await asyncio.sleep(self.heap.reload_seconds)
            self.heap_bytes, self.turns = self.heap.base_bytes, 0
            self._loaded.set()
            await self._report_status()
        elif action is CleanupAction.NEW_CHAT:
            growth = max(0, self.heap_bytes - self.heap.base_bytes)
            self.heap_bytes -= int(growth * self.heap.new_chat_share)
            self.turns = 0
            await self._report_status()
        else:
            freed, self.cached_image_bytes = self.cached_image_bytes, 0
        answer = CleanupDone(
            re=request.request_id,
            action=action,
            ok=ok,
            heap_before=before,
            heap_after=self.heap_bytes,
            freed_bytes=freed,
            detail=detail,
        )
        self.cleanups.append(answer)
        with contextlib.suppress(ConnectionClosed):
            await conn.send(answer)

    def _crash(self) -> None:
        self._crashed.set()
        conn = self._conn
        if conn is not None:
            conn.abort()


def _every(n: int, count: int) -> bool:
    return n > 0 and count % n == 0


def _decode(frame: str | bytes) -> Message | None:
    if isinstance(frame, bytes):
        log.debug("ignored a binary frame from the hub")
        return None
    try:
        return decode(frame, sender=Role.HUB)
    except ProtocolError as err:
        log.debug("ignored a malformed frame from the hub: %s", err.message)
        return None


async def run_sim_workers(
    url: str,
    token: str,
    count: int,
    behaviour: SimBehaviour,
    *,
    accounts: int | None = None,
    stop: asyncio.Event,
    workers: Sequence[RemoteSimWorker] | None = None,
    backoff_initial: float = BACKOFF_INITIAL,
    backoff_max: float = BACKOFF_MAX,
    faults: RemoteFaults | None = None,
    heap: SimHeap | None = None,
    prefix: str = "sim",
    ssl_context: ssl.SSLContext | None = None,
) -> list[RemoteSimWorker]:
    """Run ``count`` remote simulated tabs (ids ``{prefix}-1..N``, accounts round-robin as in
    :func:`make_simulated_workers`) until each stops; returns them. ``workers`` lets the
    caller pass (and watch) the instances; else they are made with the backoff and faults
    given."""
    identities = make_simulated_workers(count, behaviour, accounts=accounts, prefix=prefix)
    remotes = list(workers) if workers is not None else []
    if len(remotes) not in (0, count):
        raise ValueError(f"workers: expected {count} instances, got {len(remotes)}")
    if not remotes:
        remotes = [
            RemoteSimWorker(
                backoff_initial=backoff_initial,
                backoff_max=backoff_max,
                faults=faults,
                ssl_context=ssl_context,
                heap=heap,
            )
            for _ in identities
        ]
    await asyncio.gather(
        *(
            remote.run(
                url,
                token,
                worker_id=sim.worker_id,
                account_id=sim.account_id,
                behaviour=behaviour,
                stop=stop,
            )
            for remote, sim in zip(remotes, identities, strict=True)
        )
    )
    return remotes


__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "CAPABILITIES",
    "RemoteFaults",
    "RemoteSimWorker",
    "SimAuthError",
    "new_instance_id",
    "run_sim_workers",
]
