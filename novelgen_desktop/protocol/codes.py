"""Stable error codes, close codes and the one exception the protocol layer raises."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """What was wrong with a frame. Sent in ``error`` frames; never renamed once released."""

    BAD_JSON = "bad_json"  # not UTF-8 JSON, not an object, NaN/Infinity, duplicate keys
    BAD_VERSION = "bad_version"  # "v" missing a supported value, or no common version
    UNKNOWN_TYPE = "unknown_type"  # "type" names no message
    MISSING_FIELD = "missing_field"  # a required field is absent
    BAD_FIELD = "bad_field"  # wrong JSON type, out of bounds, bad enum value, bad pattern
    UNKNOWN_FIELD = "unknown_field"  # a field the message does not define
    TOO_LARGE = "too_large"  # frame, image or list over its limit
    UNAUTHORIZED = "unauthorized"  # no hello first, or a wrong token (closes with 4001)
    FORBIDDEN_ROLE = "forbidden_role"  # a message this peer's role may not send
    UNEXPECTED_BINARY = "unexpected_binary"  # a binary frame nobody announced
    BINARY_EXPECTED = "binary_expected"  # a text frame arrived where an image was announced
    IMAGE_MISMATCH = "image_mismatch"  # the bytes do not match the announced size / sha256
    UNKNOWN_TASK = "unknown_task"  # (hub) a result/progress for an attempt never assigned
    UNKNOWN_JOB = "unknown_job"  # (hub) a control/subscribe naming no job
    INTERNAL = "internal"  # the receiver failed; the frame itself may be fine


class CloseCode(enum.IntEnum):
    """WebSocket close codes. 1xxx are RFC 6455; 4xxx are this protocol's own."""

    NORMAL = 1000
    GOING_AWAY = 1001  # hub shutting down, tab closing
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    MESSAGE_TOO_BIG = 1009  # sent by the WebSocket library itself when max_size is exceeded
    INTERNAL_ERROR = 1011
    UNAUTHORIZED = 4001  # wrong token, or a first frame that is not a valid hello
    AUTH_TIMEOUT = 4002  # no hello within AUTH_TIMEOUT seconds
    FORBIDDEN_ORIGIN = 4003  # Origin header not allowed
    HEARTBEAT_TIMEOUT = 4004  # no data message for IDLE_TIMEOUT seconds
    REPLACED = 4005  # the same worker_id connected again; the older connection is closed
    POLICY = 4008  # policy violation: too large, too many errors, broken binary framing
    VERSION_UNSUPPORTED = 4009  # no common protocol version


class ProtocolError(Exception):
    """A frame was refused. ``code`` is stable; ``message`` is for humans and names the field."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r})"
