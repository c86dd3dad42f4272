"""Binary image frames, base64 images, the per-connection receiver, token and Origin rules."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.auth import new_pairing_token, origin_allowed, token_matches
from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.framing import (
    MAGIC,
    ImageReceiver,
    base64_image,
    image_frame,
    parse_image_frame,
)

IMAGE = os.urandom(3000)


def announce(image: bytes = IMAGE, task_id: str = "77", attempt: int = 3, **kw: object) -> m.Result:
    fields: dict[str, object] = {
        "task_id": task_id,
        "attempt": attempt,
        "sha256": hashlib.sha256(image).hexdigest(),
        "size": len(image),
        "mime": m.ImageMime.PNG,
        "encoding": m.ImageEncoding.BINARY,
    }
    fields.update(kw)
    result = m.Result(**fields)  # type: ignore[arg-type]
    decoded = m.decode(m.encode(result), sender=m.Role.WORKER)
    assert isinstance(decoded, m.Result)
    return decoded


def test_frame_round_trip() -> None:
    frame = image_frame("4812", 2, IMAGE)
    assert frame.startswith(MAGIC)
    task_id, attempt, data = parse_image_frame(frame)
    assert (task_id, attempt, bytes(data)) == ("4812", 2, IMAGE)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"NGI1",
        b"XXXX\x00\x00\x00\x01\x014img",
        b"NGI1\x00\x00\x00\x01\x05ab",
        b"NGI1\x00\x00\x00\x01\x02x1",
    ],
)
def test_bad_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_image_frame(frame)
    assert info.value.code is ErrorCode.BAD_FIELD


def test_receiver_binary_happy_path() -> None:
    receiver = ImageReceiver()
    result = announce()
    assert receiver.announce(result) is None
    assert receiver.pending == result
    got_result, image = receiver.binary_frame(image_frame("77", 3, IMAGE))
    assert (got_result, image) == (result, IMAGE)
    assert receiver.pending is None


@pytest.mark.parametrize(
    ("task_id", "attempt", "image", "field"),
    [
        ("78", 3, IMAGE, "task_id"),  # another task
        ("77", 4, IMAGE, "task_id"),  # another attempt
        ("77", 3, IMAGE[:-1], "size"),
        ("77", 3, IMAGE[:-1] + b"\x00" if IMAGE[-1] else IMAGE[:-1] + b"\x01", "sha256"),
    ],
)
def test_receiver_mismatch(task_id: str, attempt: int, image: bytes, field: str) -> None:
    receiver = ImageReceiver()
    receiver.announce(announce())
    with pytest.raises(ProtocolError) as info:
        receiver.binary_frame(image_frame(task_id, attempt, image))
    assert info.value.code is ErrorCode.IMAGE_MISMATCH
    assert info.value.field == field
    assert receiver.pending is None


def test_receiver_sequence_errors() -> None:
    receiver = ImageReceiver()
    with pytest.raises(ProtocolError) as info:
        receiver.binary_frame(image_frame("77", 3, IMAGE))
    assert info.value.code is ErrorCode.UNEXPECTED_BINARY
    receiver.announce(announce())
    with pytest.raises(ProtocolError) as info:
        receiver.text_frame()
    assert info.value.code is ErrorCode.BINARY_EXPECTED
    receiver.text_frame()  # the announcement was dropped: the next text frame is fine
    receiver.announce(announce())
    with pytest.raises(ProtocolError) as info:
        receiver.announce(announce(task_id="5"))  # a second result before the bytes
    assert info.value.code is ErrorCode.BINARY_EXPECTED


def test_base64_images() -> None:
    data = base64.b64encode(IMAGE).decode("ascii")
    result = announce(encoding=m.ImageEncoding.BASE64, data=data)
    assert ImageReceiver().announce(result) == IMAGE
    assert base64_image(result) == IMAGE
    broken = announce(encoding=m.ImageEncoding.BASE64, data="!" + data[1:])
    with pytest.raises(ProtocolError) as info:
        base64_image(broken)
    assert (info.value.code, info.value.field) == (ErrorCode.BAD_FIELD, "data")
    other = base64.b64encode(bytes(len(IMAGE))).decode("ascii")
    with pytest.raises(ProtocolError) as info:
        base64_image(announce(encoding=m.ImageEncoding.BASE64, data=other))
    assert (info.value.code, info.value.field) == (ErrorCode.IMAGE_MISMATCH, "sha256")
    with pytest.raises(ProtocolError):
        base64_image(announce())  # a binary announcement has no data


def test_pairing_token() -> None:
    token = new_pairing_token()
    assert len(token) >= 43  # 256 bits in base64url
    assert token != new_pairing_token()
    hello = m.Hello(token=token, role=m.Role.CLIENT, versions=(1,))
    assert m.decode(m.encode(hello)) == hello  # generated tokens satisfy the wire rule
    assert token_matches(token, token)
    assert not token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"), token)
    assert not token_matches("", token)


def test_origin_rule() -> None:
    ext = "abcdefghijklmnopabcdefghijklmnop"
    assert origin_allowed(None, [ext])
    assert origin_allowed(f"chrome-extension://{ext}", [ext])
    assert not origin_allowed(f"chrome-extension://{ext}", [])
    assert not origin_allowed("chrome-extension://" + "b" * 32, [ext])
    assert not origin_allowed("https://evil.example", [ext])
    assert not origin_allowed("null", [ext])
    assert not origin_allowed("http://127.0.0.1:8765", [ext])
