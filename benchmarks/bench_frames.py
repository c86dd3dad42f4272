"""Image transfer cost: base64 inside the ``result`` text frame vs a binary frame.

The ``websockets`` library is not installed in this project's environment, so this measures
the encode/decode side only, in-process, with no socket: for each payload size (1, 2, 4 MB of
random, incompressible bytes, like a PNG) and each encoding, the sender's work (build and
encode the frame, UTF-8 encode the text as a WebSocket send would) and the receiver's work
(UTF-8 decode, ``decode`` with full validation, base64 decode or binary header parse, SHA-256
check). Not measured: WebSocket framing and masking (the client masks every frame it sends),
the loopback socket, the browser's side (``FileReader``/``btoa`` in the extension).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import time
from collections.abc import Callable

from benchmarks.common import machine
from novelgen_desktop.protocol.framing import ImageReceiver, image_frame
from novelgen_desktop.protocol.messages import (
    ImageEncoding,
    ImageMime,
    Result,
    Role,
    decode,
    encode,
)

MB = 10**6


def _best(func: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def _result(image: bytes, encoding: ImageEncoding, data: str | None = None) -> Result:
    return Result(
        task_id="123456",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="best of N per figure")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 4], help="MB")
    args = parser.parse_args()
    runs = [measure(mb * MB, args.repeat) for mb in args.sizes]
    print(
        json.dumps(
            {
                "benchmark": "frames",
                "measured": "encode/decode side only, in-process, no socket "
                "(websockets not installed); times are the best of --repeat runs",
                "machine": machine(),
                "runs": runs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
