"""The WebSocket protocol between the hub, workers and clients (spec: docs/protocol.md)."""

from novelgen_desktop.protocol.codes import CloseCode, ErrorCode, ProtocolError
from novelgen_desktop.protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Message,
    Role,
    decode,
    encode,
    negotiate,
)

__all__ = [
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "CloseCode",
    "ErrorCode",
    "Message",
    "ProtocolError",
    "Role",
    "decode",
    "encode",
    "negotiate",
]
