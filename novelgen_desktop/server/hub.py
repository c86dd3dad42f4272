"""The hub's WebSocket endpoint (``docs/protocol.md``): handshake, auth, heartbeat, workers.

One :class:`Session` per connection. The Origin rule is enforced at the HTTP handshake
(``process_request`` answers 403), before any frame is read. The first frame must be a valid
``hello`` with the pairing token within ``auth_timeout``; until then the transport accepts at
most ``MAX_HELLO_FRAME`` bytes. Every authenticated worker is a :class:`RemoteWorker` in
:attr:`Hub.workers`, keyed by its ``worker_id`` and kept across reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from http import HTTPStatus
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from novelgen_desktop.protocol.auth import origin_allowed, token_matches
from novelgen_desktop.protocol.codes import CloseCode, ErrorCode, ProtocolError
from novelgen_desktop.protocol.convert import worker_failure, worker_result
from novelgen_desktop.protocol.framing import ImageReceiver
from novelgen_desktop.protocol.messages import (
    AUTH_TIMEOUT,
    HEARTBEAT_INTERVAL,
    ID,
    IDLE_TIMEOUT,
    MAX_HELLO_FRAME,
    MAX_IMAGE_BYTES,
    MAX_TEXT_FRAME,
    Ack,
    Bye,
    ByeReason,
    CleanupDone,
    Configure,
    Error,
    Heartbeat,
    Hello,
    Message,
    Progress,
    Result,
    Role,
    Status,
    TaskError,
    Welcome,
    decode,
    encode,
    negotiate,
)
from novelgen_desktop.protocol.schema import Scalar
from novelgen_desktop.server.remote_worker import (
    RESTART_GRACE,
    LateOutcomeHandler,
    RemoteWorker,
)

if TYPE_CHECKING:
    from novelgen_desktop.engine.service import JobService
    from novelgen_desktop.server.clients import ClientRequests

log = logging.getLogger(__name__)

SERVER_NAME = "novelgen-desktop/0.1.0"
REFUSED_LIMIT = 20
"""Refused frames allowed per ``REFUSED_WINDOW`` seconds before closing with 4008."""
REFUSED_WINDOW = 60.0
FRAME_RATE = 1000.0
"""Sustained frames per second one connection may send (a busy zero-latency sim worker sends
~100); a peer above it (after ``FRAME_BURST``) is flooding and is closed with 4008."""
FRAME_BURST = 5000
_ID_PATTERN = re.compile(ID)


class _ClosedError(Exception):
    """The session must end now (the close frame was already sent)."""


class Session:
    """One authenticated (or authenticating) connection."""

    def __init__(self, hub: Hub, ws: ServerConnection) -> None:
        self.hub = hub
        self.ws = ws
        self.session_id = "s-" + secrets.token_hex(6)
        self.role: Role | None = None
        self.hello: Hello | None = None
        self.worker: RemoteWorker | None = None
        self.client: ClientRequests | None = None
        self.browser_worker = False  # past welcome as a worker: configure_browsers reaches it
        self.receiver = ImageReceiver()
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()
        self.refused: deque[float] = deque()
        self._heartbeat_seq = 0
        self._allowance = float(hub.frame_burst)  # token bucket against floods
        self._allowance_at = time.monotonic()

    async def send(self, message: Message) -> bool:
        """Send one frame; False if the connection is gone."""
        text = encode(message)
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            return False
        self.last_sent = time.monotonic()
        return True

    async def close(self, code: int, reason: str, *, wait: float | None = None) -> None:
        """Close with ``code``; ``wait``: give the closing handshake at most this long, then
        drop the TCP connection (a flooding peer's close frame is stuck behind its flood)."""
        with contextlib.suppress(Exception):
            if wait is None:
                await self.ws.close(code, reason)
                return
            try:
                async with asyncio.timeout(wait):
                    await self.ws.close(code, reason)
            except TimeoutError:
                transport = self.ws.transport
                if transport is not None:
                    transport.abort()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if not await self._authenticate():
                return
            heartbeat = asyncio.create_task(self._keepalive())
            try:
                await self._serve()
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        except _ClosedError:
            pass
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session %s failed", self.session_id)
            await self.close(CloseCode.INTERNAL_ERROR, "internal_error")
        finally:
            self.hub._session_ended(self)
            if self.client is not None:
                await self.client.close(final=True)

    async def _authenticate(self) -> bool:
        hub = self.hub
        try:
            async with asyncio.timeout(hub.auth_timeout):
                first = await self.ws.recv()
        except TimeoutError:
            await self.close(CloseCode.AUTH_TIMEOUT, "auth_timeout")
            return False
        hello: Message | None = None
        if isinstance(first, str):
            try:
                hello = decode(first, max_chars=MAX_HELLO_FRAME)
            except ProtocolError:
                pass
            except Exception:  # a decoder bug must not change the verdict nor leak anything
                log.exception("session %s: decoding a hello failed", self.session_id)
        # One verdict for every failure (malformed, not a hello, wrong token): nothing leaks.
        if not isinstance(hello, Hello) or not token_matches(hello.token, hub.token):
            await self.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return False
        version = negotiate(hello.versions)
        if version is None:
            await self.send(
                Error(code=ErrorCode.BAD_VERSION, message="no common protocol version; hub: [1]")
            )
            await self.close(CloseCode.VERSION_UNSUPPORTED, "version_unsupported")
            return False
        self.hello, self.role = hello, hello.role
        self.ws.protocol.max_message_size = MAX_TEXT_FRAME
        self.last_received = time.monotonic()
        welcome = Welcome(
            version=version,
            session_id=self.session_id,
            heartbeat_interval=min(19.0, max(1.0, hub.heartbeat_interval)),
            idle_timeout=min(600.0, max(5.0, hub.idle_timeout)),
            max_frame_bytes=MAX_TEXT_FRAME,
            max_image_bytes=MAX_IMAGE_BYTES,
            server=SERVER_NAME,
        )
        if not await self.send(welcome):
            return False
        if hello.role is Role.WORKER:
            # No await between reading the settings and joining configure_browsers' list:
            # a change made while this worker attaches (e.g. while its older connection is
            # still closing) reaches it as well.
            self.browser_worker = True
            config = hub.config_for_browsers()
            if config is not None:
                await self.send(config)
            await hub._attach_worker(self, hello)
        elif hub.service is not None:
            from novelgen_desktop.server.clients import (  # noqa: PLC0415 - clients only
                ClientRequests,
            )

            self.client = ClientRequests(hub.service, self.send)
        return True

    async def _keepalive(self) -> None:
        """Send a heartbeat when nothing was sent for ``heartbeat_interval``; close a peer
        silent for ``idle_timeout`` (its pending ``recv`` then ends the session). One timer
        task per connection instead of a timeout around every ``recv``: cheaper per frame."""
        interval, idle = self.hub.heartbeat_interval, self.hub.idle_timeout
        while True:
            now = time.monotonic()
            if now >= self.last_received + idle:
                await self.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat_timeout")
                return
            if now >= self.last_sent + interval:
                self._heartbeat_seq += 1
                if not await self.send(Heartbeat(ts=time.time(), seq=self._heartbeat_seq)):
                    return
            wake = min(self.last_received + idle, self.last_sent + interval)
            await asyncio.sleep(max(0.01, wake - time.monotonic()))

    async def _serve(self) -> None:
        while True:
            frame = await self.ws.recv()
            self.last_received = now = time.monotonic()
            self._allowance = min(
                float(self.hub.frame_burst),
                self._allowance + (now - self._allowance_at) * self.hub.frame_rate,
            )
            self._allowance_at = now
            self._allowance -= 1.0
            if self._allowance < 0:
                log.warning(
                    "session %s: flooding (over %g frames/s); closing",
                    self.session_id,
                    self.hub.frame_rate,
                )
                await self.close(CloseCode.POLICY, "policy", wait=1.0)
                return
            try:
                if isinstance(frame, bytes):
                    await self._binary(frame)
                else:
                    await self._text(frame)
            except ProtocolError as err:
                await self._refuse(err, frame if isinstance(frame, str) else None)
            except (_ClosedError, ConnectionClosed):
                raise
            except Exception:
                log.exception("session %s: handling a frame failed", self.session_id)
                await self._refuse(ProtocolError(ErrorCode.INTERNAL, "the hub failed"), None)

    async def _refuse(self, err: ProtocolError, text: str | None, *, counted: bool = True) -> None:
        """Answer with an ``error`` frame. ``counted``: a malformed frame counts toward the
        policy limit; a well-formed request the hub cannot carry out (unknown job, unreadable
        script) does not."""
        now = time.monotonic()
        if counted:
            self.refused.append(now)
        while self.refused and self.refused[0] < now - self.hub.refused_window:
            self.refused.popleft()
        await self.send(
            Error(
                code=err.code,
                message=err.message[:4096],
                re=_request_id(text),
                field=err.field[:256] if err.field is not None else None,
            )
        )
        if len(self.refused) >= self.hub.refused_limit:
            await self.close(CloseCode.POLICY, "policy", wait=1.0)
            raise _ClosedError

    async def _binary(self, frame: bytes) -> None:
        result, image = self.receiver.binary_frame(frame)
        await self._deliver(result, image)

    async def _text(self, text: str) -> None:
        try:
            self.receiver.text_frame()
        except ProtocolError as err:
            await self._refuse(err, None)  # the announcement is dropped; go on with the text
        message = decode(text, sender=self.role)
        if isinstance(message, Heartbeat):
            return
        if isinstance(message, Bye):
            if self.worker is not None and message.reason is not ByeReason.RESTART:
                # Not "back soon": whatever it held goes back to the queue now, not after
                # the restart grace period.
                self.worker.detach(
                    self, f"the worker said bye ({message.reason})", coming_back=False
                )
            await self.close(CloseCode.NORMAL, "bye")
            raise _ClosedError
        if isinstance(message, Hello):
            raise ProtocolError(
                ErrorCode.FORBIDDEN_ROLE,
                "hello is only the first frame; this connection is already authenticated",
            )
        if isinstance(message, Error):  # the peer refused something the hub sent: log it
            log.info(
                "session %s: peer reported %s: %s", self.session_id, message.code, message.message
            )
            return
        if self.client is not None:
            try:
                await self.client.handle(message)
            except ProtocolError as err:
                await self._refuse(err, text, counted=False)
            return
        worker = self.worker
        if worker is None:  # a client of a hub without a job service (tests, run --simulate)
            raise ProtocolError(
                ErrorCode.INTERNAL, f"{message.type!r} is not served: this hub runs no job service"
            )
        if isinstance(message, Result):
            image = self.receiver.announce(message)
            if image is not None:
                await self._deliver(message, image)
        elif isinstance(message, TaskError):
            outcome = await worker.deliver(worker_failure(message))
            await self.send(Ack(task_id=message.task_id, attempt=message.attempt, outcome=outcome))
        elif isinstance(message, Progress):
            worker.check_attempt(int(message.task_id), message.attempt)
            worker.last_progress = message
        elif isinstance(message, CleanupDone):
            worker.cleanup_done(message)
        elif isinstance(message, Status):
            before = worker.accepting_work
            worker.last_status = message
            if worker.accepting_work != before and self.hub.service is not None:
                self.hub.service.worker_changed(worker)

    async def _deliver(self, result: Result, image: bytes) -> None:
        worker = self.worker
        if worker is None:
            raise ProtocolError(ErrorCode.FORBIDDEN_ROLE, "only a worker may send results")
        outcome = await worker.deliver(worker_result(result, image))
        await self.send(Ack(task_id=result.task_id, attempt=result.attempt, outcome=outcome))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _request_id(text: str | None) -> str | None:
    """The ``request_id`` of a refused frame (of a refused ``cleanup_done``: the ``re`` it
    answers, so that the worker does not take the error for one about a result), when it
    can be read at all."""
    if text is None or len(text) > 2**20:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    value = obj.get("re") if obj.get("type") == "cleanup_done" else obj.get("request_id")
    return value if isinstance(value, str) and _ID_PATTERN.fullmatch(value) else None


class Hub:
    """The WebSocket endpoint. ``token`` is the pairing token; ``extension_ids`` the paired
    extensions (their ``chrome-extension://<id>`` Origin is allowed). Timings are injectable
    so tests run fast; the advertised ``welcome`` values are clamped to the spec's bounds."""

    def __init__(
        self,
        token: str,
        *,
        extension_ids: Iterable[str] = (),
        auth_timeout: float = AUTH_TIMEOUT,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        idle_timeout: float = IDLE_TIMEOUT,
        restart_grace: float = RESTART_GRACE,
        refused_limit: int = REFUSED_LIMIT,
        refused_window: float = REFUSED_WINDOW,
        frame_rate: float = FRAME_RATE,
        frame_burst: int = FRAME_BURST,
        on_late_outcome: LateOutcomeHandler | None = None,
        service: JobService | None = None,
        browser_config: Configure | None = None,
    ) -> None:
        self.token = token
        self.browser_config = browser_config
        self.browser_flags: dict[str, Scalar] | None = None  # see set_browser_flags
        self.extension_ids = frozenset(extension_ids)
        self.auth_timeout = auth_timeout
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.restart_grace = restart_grace
        self.refused_limit = refused_limit
        self.refused_window = refused_window
        self.frame_rate = frame_rate
        self.frame_burst = frame_burst
        self.service = service
        if on_late_outcome is None and service is not None:
            on_late_outcome = service.deliver_late
        self.on_late_outcome = on_late_outcome
        self.workers: dict[str, RemoteWorker] = {}
        self.sessions: set[Session] = set()
        self._server: Server | None = None
        self._stopping = False
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- server ---------------------------------------------------------------------------

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        allow_remote: bool = False,
    ) -> int:
        """Listen (on the loopback interface unless ``allow_remote``); returns the bound port.

        The token is the only thing that keeps other machines out of a LAN-facing hub, and it
        travels in the clear without TLS: the command line requires ``ssl_context`` or an
        explicit ``--insecure`` before it sets ``allow_remote``."""
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"the hub binds the loopback interface only, not {host!r}")
        self._stopping = False
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            compression=None,
            max_size=MAX_HELLO_FRAME,
            ping_interval=None,
            ssl=ssl_context,
        )
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1])

    async def stop(self, reason: ByeReason = ByeReason.SHUTDOWN) -> None:
        """Drain, then say ``bye`` to every authenticated peer, close with 1001 and stop
        listening. With a job service, the running job stops first: its attempts in flight
        may still deliver over the open connections (within the run's ``stop_grace``)."""
        self._stopping = True
        if self.service is not None:
            await self.service.stop_running()
            # The last results changed jobs' states: subscribers hear them before the bye.
            clients = [s.client for s in self.sessions if s.client is not None]
            await asyncio.gather(*(c.flush() for c in clients), return_exceptions=True)
        server, self._server = self._server, None
        sessions = [s for s in self.sessions if s.role is not None]

        async def goodbye(session: Session) -> None:
            await session.send(Bye(reason=reason))
            await session.close(CloseCode.GOING_AWAY, "going_away")

        await asyncio.gather(*(goodbye(s) for s in sessions), return_exceptions=True)
        if server is not None:
            server.close()
            await server.wait_closed()
        if self.service is not None:
            await self.service.close()
        for worker in self.workers.values():
            worker.hub_stopping()

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            origin = request.headers.get("Origin")
        except MultipleValuesError:
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden_origin\n")
        if not origin_allowed(origin, self.extension_ids):
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden_origin\n")
        if self._stopping:
            # A worker told "bye shutdown" that reconnects at once must not be welcomed (and
            # handed the idea that the hub is up) by a hub that is closing.
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting_down\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        session = Session(self, ws)
        self.sessions.add(session)
        await session.run()

    # -- workers --------------------------------------------------------------------------

    async def _attach_worker(self, session: Session, hello: Hello) -> None:
        assert hello.worker_id is not None and hello.account_id is not None
        assert hello.kind is not None
        worker = self.workers.get(hello.worker_id)
        if worker is None:
            worker = RemoteWorker(
                hello.worker_id,
                hello.account_id,
                hello.kind,
                restart_grace=self.restart_grace,
                on_late_outcome=self.on_late_outcome,
                on_unverified_outcome=(
                    self.service.deliver_unverified if self.service is not None else None
                ),
                is_stopping=lambda: self._stopping,
            )
            self.workers[hello.worker_id] = worker
        elif worker.connections and hello.instance_id != worker.instance_id:
            log.info("worker %s restarted (instance %s)", hello.worker_id, hello.instance_id)
        old = worker.session
        if old is not None:
            worker.detach(old, "replaced by a newer connection")
            await old.send(Bye(reason=ByeReason.REPLACED))
            await old.close(CloseCode.REPLACED, "replaced")
        session.worker = worker
        worker.attach(session, hello)
        log.info(
            "worker %s connected (instance %s, session %s)",
            hello.worker_id,
            hello.instance_id,
            session.session_id,
        )
        if self.service is not None and not self._stopping:
            self.service.add_worker(worker)
            self.service.log_event(
                "info",
                "worker_connected",
                f"worker {worker.worker_id} connected ({worker.kind}, account {worker.account_id})",
                worker_id=worker.worker_id,
            )
        await self._notify()

    def _session_ended(self, session: Session) -> None:
        self.sessions.discard(session)
        if session.worker is not None:
            # Observable from outside (benchmarks/extension_idle.py reads these lines).
            log.info(
                "worker %s disconnected (instance %s, session %s, close code %s)",
                session.worker.worker_id,
                session.hello.instance_id if session.hello is not None else None,
                session.session_id,
                session.ws.close_code,
            )
            session.worker.detach(session, "connection lost")
            if self.service is not None and not self._stopping:
                self.service.log_event(
                    "warning" if session.ws.close_code not in (1000, 1001) else "info",
                    "worker_disconnected",
                    f"worker {session.worker.worker_id} disconnected "
                    f"(close code {session.ws.close_code})",
                    worker_id=session.worker.worker_id,
                )
            with contextlib.suppress(RuntimeError):
                task = asyncio.get_running_loop().create_task(self._notify())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def config_for_browsers(self) -> Configure | None:
        """What a browser worker is told: the settings, with the feature flags the browser
        side obeys. ``selector_updates`` off withholds the pushed selector table (the
        extension goes back to its own)."""
        config, flags = self.browser_config, self.browser_flags
        if flags is None:
            return config
        base = config or Configure()
        keep_table = bool(flags.get("selector_updates", True))
        return replace(
            base, selector_table=base.selector_table if keep_table else None, flags=dict(flags)
        )

    async def _send_browser_config(self) -> None:
        config = self.config_for_browsers()
        if config is None:
            return
        # Concurrently: one connection stuck in its closing handshake must not hold up
        # the others.
        await asyncio.gather(*(s.send(config) for s in list(self.sessions) if s.browser_worker))

    async def configure_browsers(self, config: Configure) -> None:
        """New settings for the browsers behind the workers: kept for every worker that
        connects from now on, and sent to those connected now."""
        self.browser_config = config
        await self._send_browser_config()

    async def set_browser_flags(self, flags: Mapping[str, Scalar]) -> None:
        """The feature flags the extensions obey changed (a kill switch, a rollback): every
        connected browser hears it now, every later one at its welcome."""
        if self.browser_flags == dict(flags):
            return
        self.browser_flags = dict(flags)
        await self._send_browser_config()

    def connected_workers(self) -> list[RemoteWorker]:
        return [w for w in self.workers.values() if w.connected]

    async def wait_for_workers(self, n: int, timeout: float) -> list[RemoteWorker]:
        """The connected workers once at least ``n`` are; TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.connected_workers()) >= n)
        return self.connected_workers()


__all__ = [
    "FRAME_BURST",
    "FRAME_RATE",
    "REFUSED_LIMIT",
    "REFUSED_WINDOW",
    "Hub",
    "Session",
    "is_loopback",
]
