"""The remote flag configuration: fetched politely, checked, cached as last known good.

The source is an HTTPS URL (plain HTTP only to this machine, for a local config server) or a
file path (a shared drive). A fetch sends ``If-None-Match`` / ``If-Modified-Since`` from the
cache, so an unchanged file costs a 304. A document that fails validation is refused with
the reason logged and changes nothing: the last known good copy (kept next to the history)
stays in force, and is what a restart uses while the source is unreachable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from novelgen_desktop import __version__
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import (
    MAX_DOCUMENT_BYTES,
    FlagConfigError,
    FlagLayer,
    parse_document_text,
)

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 5.0
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True, slots=True)
class FetchResult:
    status: str  # "updated", "unchanged", "rejected", "unreachable"
    reason: str
    layer: FlagLayer | None = None  # the last known good layer after this fetch


def check_location(location: str) -> str:
    """``location`` if it is a usable source; ConfigError says why not."""
    parts = urlsplit(location)
    if parts.scheme in ("https", "file"):
        return location
    if parts.scheme == "http":
        if (parts.hostname or "") in _LOOPBACK:
            return location
        raise ConfigError(
            f"remote flags {location}: plain http is only allowed to this machine; use https"
        )
    if len(parts.scheme) > 1:  # "C:" is a Windows drive, not a scheme
        raise ConfigError(f"remote flags {location}: expected an https:// URL or a file path")
    return location


def cached_layer_of(cache_path: Path) -> FlagLayer | None:
    """The last known good copy in ``cache_path`` whatever its source, or None."""
    try:
        data = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    try:
        return parse_document_text(data["text"], f"{data.get('location')} (cached)")
    except FlagConfigError as exc:
        log.warning("ignoring the cached remote flags: %s", exc)
        return None


class RemoteConfig:
    def __init__(
        self, location: str, cache_path: Path, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.location = check_location(location)
        self.cache_path = cache_path
        self.timeout = timeout
        self.last_result: FetchResult | None = None

    # --- the last-known-good cache ----------------------------------------------------------

    def _read_cache(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("location") != self.location:
            return None  # a cache of another source: not this one's last known good
        return data

    def cached_layer(self) -> FlagLayer | None:
        """The last known good document, or None (never fetched, or another source)."""
        cache = self._read_cache()
        if cache is None or not isinstance(cache.get("text"), str):
            return None
        try:
            return parse_document_text(cache["text"], f"{self.location} (cached)")
        except FlagConfigError as exc:  # written by a newer version that knows more flags
            log.warning("ignoring the cached remote flags: %s", exc)
            return None

    def _write_cache(self, text: str, etag: str | None, modified: str | None) -> None:
        data = {
            "location": self.location,
            "etag": etag,
            "last_modified": modified,
            "fetched_at": time.time(),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "text": text,
        }
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.cache_path.with_name(self.cache_path.name + ".tmp")
        temp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temp, self.cache_path)

    # --- fetching ----------------------------------------------------------------------------

    def _get(self, cache: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
        """(text or None when not modified, etag, last-modified). OSError when unreachable."""
        parts = urlsplit(self.location)
        if parts.scheme not in ("http", "https"):
            path = Path(parts.path if parts.scheme == "file" else self.location).expanduser()
            with path.open("rb") as handle:
                raw = handle.read(MAX_DOCUMENT_BYTES + 1)
            modified = str(path.stat().st_mtime)
            text = raw.decode("utf-8") if len(raw) <= MAX_DOCUMENT_BYTES else raw.decode("latin-1")
            return text, None, modified
        request = urllib.request.Request(
            self.location, headers={"User-Agent": f"NovelGen/{__version__}"}
        )
        if cache is not None:
            if cache.get("etag"):
                request.add_header("If-None-Match", cache["etag"])
            if cache.get("last_modified"):
                request.add_header("If-Modified-Since", cache["last_modified"])
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_DOCUMENT_BYTES + 1)
                etag = response.headers.get("ETag")
                modified = response.headers.get("Last-Modified")
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None, None, None
            raise OSError(f"HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise OSError(str(exc.reason)) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = f"\x00not UTF-8: {exc}"
        return text, etag, modified

    def fetch(self) -> FetchResult:
        """One fetch (blocking: run it in a thread). Never raises for the source's faults."""
        cache = self._read_cache()
        try:
            text, etag, modified = self._get(cache)
        except (OSError, TimeoutError) as exc:
            result = FetchResult(
                "unreachable",
                f"remote flags {self.location} unreachable ({exc}); keeping the last known good",
                self.cached_layer(),
            )
            log.warning("%s", result.reason)
            return self._done(result)
        if text is None or (
            cache is not None and cache.get("sha256") == hashlib.sha256(text.encode()).hexdigest()
        ):
            return self._done(FetchResult("unchanged", "not modified", self.cached_layer()))
        try:
            layer = parse_document_text(text, self.location)
        except FlagConfigError as exc:
            result = FetchResult(
                "rejected",
                f"remote flags refused, nothing changed: {exc}",
                self.cached_layer(),
            )
            log.warning("%s", result.reason)
            return self._done(result)
        self._write_cache(text, etag, modified)
        return self._done(
            FetchResult("updated", f"{len(layer)} flag(s) from {self.location}", layer)
        )

    def _done(self, result: FetchResult) -> FetchResult:
        self.last_result = result
        return result


__all__ = ["FetchResult", "RemoteConfig", "cached_layer_of", "check_location"]
