"""Image transfer cost: base64 inside the ``result`` text frame vs a binary frame.

Two measurements, for each payload size (1, 2, 4 MB of random, incompressible bytes, like a
PNG) and each encoding:

* **in-process** (no socket): the sender's work (build and encode the frame, UTF-8 encode the
  text as a WebSocket send would) and the receiver's work (UTF-8 decode, ``decode`` with full
  validation, base64 decode or binary header parse, SHA-256 check), best of ``--repeat``.
* **socket**: a real WebSocket over loopback (``websockets``, asyncio API, ``compression=None,
  max_size=2**26, ping_interval=None`` on both ends, like the hub). The server runs in a
  separate process (``multiprocessing``, spawn) and does the hub's receive-side work for a
  worker: ``decode`` with ``sender=Role.WORKER`` and ``max_chars=MAX_TEXT_FRAME``, then
  ``ImageReceiver.announce``/``binary_frame`` (size + SHA-256 check), then sends an ``ack``
  text frame. The client (this process, which masks every frame it sends, as a client must)
  sends ``--socket-count`` results one after another, each waiting for its ack. Per image it
  times ``wire`` (frames built beforehand; first ``send`` to ack received and decoded) and
  ``with_encode`` (from the image bytes in hand: SHA-256, base64, ``encode``/``image_frame``,
  send, ack). A repeat's figure is the mean per image over its ``--socket-count`` images;
  the report gives the best and the median over ``--socket-repeat`` repeats.

Not measured: the hub's own dispatch after verification (scheduler, writing the file), TLS
(the hub listens on loopback without it), a real network, and the browser's side
(``FileReader``/``btoa`` in the extension). Client and server are not pinned to CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from benchmarks.common import machine
from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.framing import ImageReceiver, image_frame
from novelgen_desktop.protocol.messages import (
    MAX_TEXT_FRAME,
    Ack,
    Error,
    ImageEncoding,
    ImageMime,
    Result,
    Role,
    decode,
    encode,
)

MB = 10**6
MAX_SIZE = 2**26  # the transport's max_size on both ends; compression=None, ping_interval=None


def _best(func: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def _result(
    image: bytes, encoding: ImageEncoding, data: str | None = None, task_id: str = "123456"
) -> Result:
    return Result(
        task_id=task_id,
        attempt=1,
        sha256=hashlib.sha256(image).hexdigest(),
        size=len(image),
        mime=ImageMime.PNG,
        encoding=encoding,
        data=data,
        conversation_url="https://chatgpt.com/c/6741d0b5-0000-8000-a000-0123456789ab",
        image_id="file-AbCdEf123456",
    )


def measure(size: int, repeat: int) -> dict[str, object]:
    image = os.urandom(size)

    # -- base64: everything in one text frame ------------------------------------------------
    def send_b64() -> bytes:
        data = base64.b64encode(image).decode("ascii")
        return encode(_result(image, ImageEncoding.BASE64, data)).encode("utf-8")

    wire_b64 = send_b64()

    def recv_b64() -> bytes:
        message = decode(wire_b64.decode("utf-8"), sender=Role.WORKER)
        assert isinstance(message, Result)
        got = ImageReceiver().announce(message)
        assert got is not None
        return got

    assert recv_b64() == image

    # -- binary: a small announcement, then a binary frame ----------------------------------
    def send_bin() -> tuple[bytes, bytes]:
        announce = encode(_result(image, ImageEncoding.BINARY)).encode("utf-8")
        return announce, image_frame("123456", 1, image)

    wire_announce, wire_frame = send_bin()

    def recv_bin() -> bytes:
        receiver = ImageReceiver()
        message = decode(wire_announce.decode("utf-8"), sender=Role.WORKER)
        assert isinstance(message, Result)
        receiver.announce(message)
        return receiver.binary_frame(wire_frame)[1]

    assert recv_bin() == image

    # -- the primitives, to see where base64's time goes ------------------------------------
    text = base64.b64encode(image).decode("ascii")
    dumped = json.dumps({"data": text})
    primitives = {
        "b64encode": _best(lambda: base64.b64encode(image), repeat),
        "json_dumps": _best(lambda: json.dumps({"data": text}), repeat),
        "json_loads": _best(lambda: json.loads(dumped), repeat),
        "b64decode": _best(lambda: base64.b64decode(text, validate=True), repeat),
        "sha256": _best(lambda: hashlib.sha256(image).digest(), repeat),
    }

    figures = {
        "base64_send": _best(send_b64, repeat),
        "base64_receive": _best(recv_b64, repeat),
        "binary_send": _best(send_bin, repeat),
        "binary_receive": _best(recv_bin, repeat),
    }
    mb = size / MB
    return {
        "image_mb": mb,
        "wire_bytes": {
            "base64": len(wire_b64),
            "binary": len(wire_announce) + len(wire_frame),
        },
        "overhead_percent": {
            "base64": round(100 * (len(wire_b64) / size - 1), 2),
            "binary": round(100 * ((len(wire_announce) + len(wire_frame)) / size - 1), 3),
        },
        "ms": {k: round(v * 1000, 2) for k, v in figures.items()},
        "mb_per_s": {k: round(mb / v) for k, v in figures.items()},
        "round_trip_mb_per_s": {
            "base64": round(mb / (figures["base64_send"] + figures["base64_receive"])),
            "binary": round(mb / (figures["binary_send"] + figures["binary_receive"])),
        },
        "round_trip_ratio_base64_over_binary": round(
            (figures["base64_send"] + figures["base64_receive"])
            / (figures["binary_send"] + figures["binary_receive"]),
            1,
        ),
        "primitives_ms": {k: round(v * 1000, 2) for k, v in primitives.items()},
    }


# -- over a real loopback WebSocket -------------------------------------------------------------


async def _hub_side(ws: ServerConnection) -> None:
    """The hub's receive-side work for a worker's results, then an ``ack`` per image."""
    receiver = ImageReceiver()
    async for frame in ws:
        try:
            if isinstance(frame, bytes):
                result, _image = receiver.binary_frame(frame)
            else:
                receiver.text_frame()
                message = decode(frame, sender=Role.WORKER, max_chars=MAX_TEXT_FRAME)
                if not isinstance(message, Result):
                    raise ProtocolError(ErrorCode.BAD_FIELD, "the benchmark sends results only")
                if receiver.announce(message) is None:
                    continue  # binary: the image follows in the next frame
                result = message
            reply: Ack | Error = Ack(task_id=result.task_id, attempt=result.attempt, outcome="ok")
        except ProtocolError as err:
            reply = Error(code=err.code, message=err.message[:4096])
        await ws.send(encode(reply))


async def _serve_until_told(conn: Connection) -> None:
    async with serve(
        _hub_side, "127.0.0.1", 0, compression=None, max_size=MAX_SIZE, ping_interval=None
    ) as server:
        conn.send(next(iter(server.sockets)).getsockname()[1])
        await asyncio.to_thread(conn.recv)  # any message: stop


def _server_process(conn: Connection) -> None:
    asyncio.run(_serve_until_told(conn))


def _frames(image: bytes, encoding: ImageEncoding, task_id: str) -> list[str | bytes]:
    """What a worker sends for one image, built from the bytes in hand."""
    if encoding is ImageEncoding.BASE64:
        data = base64.b64encode(image).decode("ascii")
        return [encode(_result(image, encoding, data, task_id=task_id))]
    return [encode(_result(image, encoding, task_id=task_id)), image_frame(task_id, 1, image)]


async def _send_and_wait(ws: ClientConnection, frames: list[str | bytes], task_id: str) -> None:
    for frame in frames:
        await ws.send(frame)
    reply = await ws.recv()
    if not isinstance(reply, str):
        raise RuntimeError("expected a text frame from the server")
    ack = decode(reply, sender=Role.HUB)
    if not isinstance(ack, Ack) or ack.task_id != task_id:
        raise RuntimeError(f"expected the ack of task {task_id}, got {ack!r}")


async def _socket_runs(
    port: int, image: bytes, count: int, repeat: int
) -> dict[str, dict[str, list[float]]]:
    """Per encoding and mode, the mean seconds per image of each repeat."""
    times: dict[str, dict[str, list[float]]] = {
        enc.value: {"wire": [], "with_encode": []}
        for enc in (ImageEncoding.BASE64, ImageEncoding.BINARY)
    }
    async with connect(
        f"ws://127.0.0.1:{port}", compression=None, max_size=MAX_SIZE, ping_interval=None
    ) as ws:
        for enc in (ImageEncoding.BASE64, ImageEncoding.BINARY):  # warm-up, not timed
            for i in range(3):
                await _send_and_wait(ws, _frames(image, enc, str(i)), str(i))
        for _ in range(repeat):
            for enc in (ImageEncoding.BASE64, ImageEncoding.BINARY):
                prebuilt = [_frames(image, enc, str(i)) for i in range(count)]
                started = time.perf_counter()
                for i in range(count):
                    await _send_and_wait(ws, prebuilt[i], str(i))
                times[enc.value]["wire"].append((time.perf_counter() - started) / count)
                del prebuilt
                started = time.perf_counter()
                for i in range(count):
                    await _send_and_wait(ws, _frames(image, enc, str(i)), str(i))
                times[enc.value]["with_encode"].append((time.perf_counter() - started) / count)
    return times


def measure_socket(port: int, size: int, count: int, repeat: int) -> dict[str, object]:
    image = os.urandom(size)
    times = asyncio.run(_socket_runs(port, image, count, repeat))
    mb = size / MB
    out: dict[str, object] = {"image_mb": mb, "images_per_repeat": count, "repeats": repeat}
    for mode in ("wire", "with_encode"):
        b64, binary = times["base64"][mode], times["binary"][mode]
        out[mode] = {
            "ms_per_image": {
                enc: {
                    "best": round(min(ts) * 1000, 2),
                    "median": round(statistics.median(ts) * 1000, 2),
                }
                for enc, ts in (("base64", b64), ("binary", binary))
            },
            "mb_per_s": {
                enc: {"best": round(mb / min(ts)), "median": round(mb / statistics.median(ts))}
                for enc, ts in (("base64", b64), ("binary", binary))
            },
            "ratio_base64_over_binary": {
                "best": round(min(b64) / min(binary), 1),
                "median": round(statistics.median(b64) / statistics.median(binary), 1),
            },
        }
    return out


def socket_runs(sizes: list[int], count: int, repeat: int) -> list[dict[str, object]]:
    """Starts the hub-side server in its own process, runs the client here, stops it."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_server_process, args=(child,), daemon=True)
    server.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the benchmark server did not start")
        port = parent.recv()
        return [measure_socket(port, mb * MB, count, repeat) for mb in sizes]
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()
            server.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="best of N per figure")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 4], help="MB")
    parser.add_argument(
        "--socket-count", type=int, default=10, help="images sent per socket repeat"
    )
    parser.add_argument("--socket-repeat", type=int, default=7, help="socket repeats")
    parser.add_argument("--no-socket", action="store_true", help="in-process figures only")
    args = parser.parse_args()
    facts = machine()
    runs = [measure(mb * MB, args.repeat) for mb in args.sizes]
    report: dict[str, object] = {
        "benchmark": "frames",
        "machine": facts,
        "in_process": {
            "measured": "encode/decode side only, in one process, no socket; "
            "times are the best of --repeat runs",
            "runs": runs,
        },
    }
    if not args.no_socket:
        report["socket"] = {
            "measured": "loopback WebSocket (websockets "
            f"{_websockets_version()}, compression=None, max_size=2**26, "
            "ping_interval=None); hub-side receive work (decode sender=worker "
            "max_chars=MAX_TEXT_FRAME, ImageReceiver size+sha256) and an ack, in a separate "
            "server process; client sends one image at a time and waits for its ack; "
            "wire = frames prebuilt, first send to ack; with_encode = from image bytes, "
            "including sha256/base64/encode; figures are the mean per image of a repeat, "
            "best and median over repeats",
            "runs": socket_runs(args.sizes, args.socket_count, args.socket_repeat),
        }
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))


def _websockets_version() -> str:
    from websockets.version import version

    return version


if __name__ == "__main__":
    main()
