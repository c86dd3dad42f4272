"""A client connection to a running hub, for commands that drive it (``novelgen submit``,
``novelgen follow``): hello → welcome, requests answered by ``re``, a queue of what else the
hub sends (``job_progress``, ``errors``, ``bye``), and heartbeats so the hub does not drop a
client that only listens (a data message at least every ``welcome.heartbeat_interval``).

Failures a user can fix become :class:`ConfigError` naming the fix: no hub at the URL, a
token the hub refused. ``benchmarks/loadtest/client.py`` stays separate on purpose: it is
written from the spec alone, without this package, to show the spec is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from novelgen_desktop import __version__
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.protocol.codes import CloseCode, ProtocolError
from novelgen_desktop.protocol.messages import (
    MAX_TEXT_FRAME,
    SUPPORTED_VERSIONS,
    Bye,
    ByeReason,
    Control,
    Error,
    Heartbeat,
    Hello,
    ListJobs,
    Message,
    Role,
    Submit,
    Subscribe,
    Welcome,
    decode,
    encode,
)

HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0
"""A submit parses the script in the hub before answering: a large script takes a while."""

Request = Submit | Subscribe | Control | ListJobs


class HubRequestError(Exception):
    """The hub answered a request with an ``error`` frame (the request was not carried out)."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


class HubGoneError(Exception):
    """The connection ended: the hub stopped (``bye``) or the socket dropped."""


class HubClient:
    """One authenticated client connection. Use :func:`open_hub`."""

    def __init__(self, ws: ClientConnection, welcome: Welcome) -> None:
        self.ws = ws
        self.welcome = welcome
        self.events: asyncio.Queue[Message | None] = asyncio.Queue()
        """Frames that answer no request, in order; ``None`` once the connection ended."""
        self.bye: Bye | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._last_sent = time.monotonic()
        self._lock = asyncio.Lock()

    def next_id(self) -> str:
        return f"cli-{next(self._ids)}"

    async def send(self, message: Message) -> None:
        async with self._lock:
            await self.ws.send(encode(message))
            self._last_sent = time.monotonic()

    async def request(self, message: Request) -> Message:
        """Send ``message``; the frame answering it. Raises :class:`HubRequestError` for an
        ``error`` answer and :class:`HubGoneError` when the connection ends first."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[message.request_id] = future
        try:
            await self.send(message)
            async with asyncio.timeout(REQUEST_TIMEOUT):
                answer = await future
        except ConnectionClosed as exc:
            raise HubGoneError("the hub closed the connection") from exc
        finally:
            self._pending.pop(message.request_id, None)
        if isinstance(answer, Error):
            raise HubRequestError(answer)
        return answer

    async def _heartbeats(self) -> None:
        interval = self.welcome.heartbeat_interval
        seq = itertools.count(1)
        while True:
            idle = time.monotonic() - self._last_sent
            if idle >= interval * 0.8:
                await self.send(Heartbeat(ts=time.time(), seq=next(seq)))
                idle = 0.0
            await asyncio.sleep(max(0.1, interval * 0.8 - idle))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    continue  # images go to workers; a client has no use for one
                try:
                    message = decode(raw, sender=Role.HUB, max_chars=MAX_TEXT_FRAME)
                except ProtocolError:
                    continue  # a newer hub's frame this client cannot read: not fatal
                re = getattr(message, "re", None)
                if re is not None and re in self._pending:
                    future = self._pending[re]
                    if not future.done():
                        future.set_result(message)
                    continue
                if isinstance(message, Bye):
                    self.bye = message
                if not isinstance(message, Heartbeat):
                    self.events.put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            gone = HubGoneError("the hub closed the connection")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(gone)
            self.events.put_nowait(None)

    async def close(self) -> None:
        """Say bye, so the hub forgets this client at once rather than after a timeout."""
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.send(Bye(reason=ByeReason.USER))


def read_token(token_path: Path) -> str:
    from novelgen_desktop.server.pairing import read_token_file  # noqa: PLC0415

    return read_token_file(token_path)


@asynccontextmanager
async def open_hub(
    url: str, token: str, *, token_path: Path | None = None
) -> AsyncIterator[HubClient]:
    """A :class:`HubClient` connected to ``url``, with its reader and heartbeats running.

    ``token_path`` only names the token's file in the message when the hub refuses it."""
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError(f"--hub must start with ws:// or wss://, got {url!r}")
    try:
        ws = await connect(
            url,
            compression=None,
            ping_interval=None,
            open_timeout=HANDSHAKE_TIMEOUT,
            close_timeout=1.0,
            max_size=MAX_TEXT_FRAME,
        )
    except InvalidURI as exc:
        raise ConfigError(f"--hub {url!r} is not a WebSocket URL") from exc
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        why = "" if isinstance(exc, ConnectionRefusedError) else f" ({exc or type(exc).__name__})"
        raise ConfigError(
            f"no hub at {url}{why}: start it with `novelgen serve`, or give --hub URL"
        ) from exc
    try:
        welcome = await _hello(ws, url, token, token_path)
        client = HubClient(ws, welcome)
        helpers = [
            asyncio.create_task(client._read(), name="hub-client-read"),
            asyncio.create_task(client._heartbeats(), name="hub-client-heartbeats"),
        ]
        try:
            yield client
        finally:
            helpers[1].cancel()
            await client.close()
            helpers[0].cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    finally:
        await ws.close()


async def _hello(ws: ClientConnection, url: str, token: str, token_path: Path | None) -> Welcome:
    hello = Hello(
        token=token,
        role=Role.CLIENT,
        versions=SUPPORTED_VERSIONS,
        agent=f"novelgen-cli/{__version__}",
    )
    try:
        await ws.send(encode(hello))
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            while True:
                raw = await ws.recv()
                if isinstance(raw, bytes):
                    continue
                message = decode(raw, sender=Role.HUB)
                if isinstance(message, Welcome):
                    return message
                if isinstance(message, Error):
                    raise ConfigError(f"the hub at {url} refused this client: {message.message}")
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code == CloseCode.UNAUTHORIZED:
            where = f"the token in {token_path}" if token_path else "the token"
            raise ConfigError(
                f"the hub at {url} refused {where} (close 4001); run `novelgen pair` on the "
                "hub's machine to see its token, or give --token-file with the right one"
            ) from exc
        raise ConfigError(f"the hub at {url} closed the connection during hello ({code})") from exc
    except TimeoutError as exc:
        raise ConfigError(f"the hub at {url} did not answer hello") from exc
    except ProtocolError as exc:
        raise ConfigError(f"{url} does not speak the hub protocol: {exc}") from exc
