"""Image transfer: the binary frame that follows a ``result`` announcement, and base64.

A binary frame is self-describing, so it can never be matched to the wrong result::

    offset  size  field
    0       4     magic  b"NGI1"
    4       4     attempt, unsigned big-endian
    8       1     n = length of the task id
    9       n     task id, ASCII decimal (the same string as the result's task_id)
    9+n     …     the image bytes, exactly ``size`` of them

Rules: a ``result`` with ``encoding: "binary"`` must be followed by its binary frame as the
very next frame on that connection; the receiver checks the header's task id and attempt
against the announcement, then the length and SHA-256 against ``size`` and ``sha256``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.messages import MAX_IMAGE_BYTES, ImageEncoding, Result

MAGIC = b"NGI1"
_HEAD = struct.Struct(">4sIB")
_TASK_ID = re.compile(rb"0|[1-9][0-9]{0,15}")
MAX_BINARY_FRAME = _HEAD.size + 16 + MAX_IMAGE_BYTES


def image_frame(task_id: str, attempt: int, image: bytes) -> bytes:
    """The binary frame carrying ``image`` for this attempt."""
    raw_id = task_id.encode("ascii")
    return _HEAD.pack(MAGIC, attempt, len(raw_id)) + raw_id + image


def parse_image_frame(frame: bytes) -> tuple[str, int, memoryview]:
    """``(task_id, attempt, image)`` from a binary frame; the image is a view, not a copy."""
    if len(frame) < _HEAD.size:
        raise ProtocolError(ErrorCode.BAD_FIELD, "binary frame shorter than its header")
    magic, attempt, id_len = _HEAD.unpack_from(frame)
    if magic != MAGIC:
        raise ProtocolError(ErrorCode.BAD_FIELD, "binary frame: bad magic (expected NGI1)")
    raw_id = bytes(frame[_HEAD.size : _HEAD.size + id_len])
    if len(raw_id) != id_len or not _TASK_ID.fullmatch(raw_id):
        raise ProtocolError(ErrorCode.BAD_FIELD, "binary frame: bad task id in header")
    if len(frame) - _HEAD.size - id_len > MAX_IMAGE_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"binary frame: image > {MAX_IMAGE_BYTES} bytes")
    return raw_id.decode("ascii"), attempt, memoryview(frame)[_HEAD.size + id_len :]


def _verify(result: Result, image: bytes | memoryview) -> bytes:
    if len(image) != result.size:
        raise ProtocolError(
            ErrorCode.IMAGE_MISMATCH,
            f"task {result.task_id} attempt {result.attempt}: {len(image)} bytes, "
            f"announced {result.size}",
            field="size",
        )
    if hashlib.sha256(image).hexdigest() != result.sha256:
        raise ProtocolError(
            ErrorCode.IMAGE_MISMATCH,
            f"task {result.task_id} attempt {result.attempt}: sha256 differs from the announced",
            field="sha256",
        )
    return bytes(image)


def base64_image(result: Result) -> bytes:
    """The verified bytes of a ``result`` with ``encoding: "base64"``."""
    if result.encoding is not ImageEncoding.BASE64 or result.data is None:
        raise ProtocolError(ErrorCode.BAD_FIELD, "field 'data': no base64 image", field="data")
    try:
        image = base64.b64decode(result.data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            ErrorCode.BAD_FIELD, "field 'data': not valid base64", field="data"
        ) from None
    return _verify(result, image)


class ImageReceiver:
    """Per-connection state for binary transfer: at most one announced image at a time.

    The hub calls :meth:`announce` for every decoded ``result``, :meth:`text_frame` before
    handling any other text frame, and :meth:`binary_frame` for every binary frame.
    """

    def __init__(self) -> None:
        self.pending: Result | None = None

    def announce(self, result: Result) -> bytes | None:
        """Returns the image at once for base64; None while a binary frame is awaited."""
        self.text_frame()
        if result.encoding is ImageEncoding.BASE64:
            return base64_image(result)
        self.pending = result
        return None

    def text_frame(self) -> None:
        """A text frame arrived: an announced image is now lost (``binary_expected``)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            raise ProtocolError(
                ErrorCode.BINARY_EXPECTED,
                f"task {pending.task_id} attempt {pending.attempt}: expected its binary frame",
                field="task_id",
            )

    def binary_frame(self, frame: bytes) -> tuple[Result, bytes]:
        """The announced result and its verified bytes."""
        pending, self.pending = self.pending, None
        if pending is None:
            raise ProtocolError(ErrorCode.UNEXPECTED_BINARY, "binary frame without a result")
        task_id, attempt, image = parse_image_frame(frame)
        if (task_id, attempt) != (pending.task_id, pending.attempt):
            raise ProtocolError(
                ErrorCode.IMAGE_MISMATCH,
                f"binary frame for task {task_id} attempt {attempt}, announced task "
                f"{pending.task_id} attempt {pending.attempt}",
                field="task_id",
            )
        return pending, _verify(pending, image)
