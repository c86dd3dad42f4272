"""Pairing token and Origin rule for the hub's WebSocket endpoint."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable

TOKEN_BYTES = 32  # 256 bits; the protocol requires at least 128
_EXTENSION_ORIGIN = re.compile(r"chrome-extension://([a-p]{32})")


def new_pairing_token() -> str:
    """A fresh token: 43 URL-safe characters (256 bits), shown to the user once for pairing."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison, so a wrong token reveals nothing through timing."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def origin_allowed(origin: str | None, extension_ids: Iterable[str]) -> bool:
    """No Origin header (a local process) or the paired extension's origin; never a web page."""
    if origin is None:
        return True
    match = _EXTENSION_ORIGIN.fullmatch(origin)
    return match is not None and match.group(1) in set(extension_ids)
