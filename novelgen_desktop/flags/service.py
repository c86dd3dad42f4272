"""The live flag set of one process: sources read, changes versioned, subscribers told.

Files, in ``<data dir>/flags/``: ``flags.json`` (the local layer, what ``novelgen flags set``
writes and an author may edit), ``remote-cache.json`` (the remote's last known good copy),
``history.sqlite3`` (every version, the rollback pin).

A running hub or window calls :meth:`FlagService.watch`: every ``poll`` seconds it looks at
the local file's stat and the history's ``data_version`` (cheap), re-resolves only when one
moved, and fetches the remote every ``remote_every`` seconds in a thread. Subscribers (the
hub's configure, the memory monitor, the runners) are called on the event loop with the new
set, so a rollback typed in another terminal is in force within one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import (
    FlagConfigError,
    FlagLayer,
    FlagSetting,
    document_of,
    parse_document_text,
    parse_text_value,
)
from novelgen_desktop.flags.flagset import FlagSet, resolve_shared
from novelgen_desktop.flags.history import FlagHistory, FlagVersion
from novelgen_desktop.flags.registry import REGISTRY
from novelgen_desktop.flags.remote import FetchResult, RemoteConfig, cached_layer_of
from novelgen_desktop.flags.text import flagset_json

log = logging.getLogger(__name__)
_T = TypeVar("_T")
ENV_PREFIX = "NOVELGEN_FLAG_"
REMOTE_ENV = "NOVELGEN_FLAGS_URL"
DEFAULT_POLL = 0.2
DEFAULT_REMOTE_EVERY = 300.0

FlagListener = Callable[[FlagSet, str], None]


@dataclass(frozen=True, slots=True)
class FlagFiles:
    root: Path

    @property
    def local(self) -> Path:
        return self.root / "flags.json"

    @property
    def remote_cache(self) -> Path:
        return self.root / "remote-cache.json"

    @property
    def history(self) -> Path:
        return self.root / "history.sqlite3"


def flag_files(data_root: Path) -> FlagFiles:
    return FlagFiles(data_root / "flags")


def overrides_from(
    environ: Mapping[str, str], cli: list[str] | None = None
) -> tuple[FlagLayer, dict[str, str]]:
    """Environment (``NOVELGEN_FLAG_MULTI_TAB=off``) then ``--flag name=value`` on top."""
    layer: FlagLayer = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for key, text in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        flag = REGISTRY.get(name)
        if flag is None:
            problems.append(f"{key}: unknown flag {name!r} (known: {', '.join(REGISTRY)})")
            continue
        try:
            layer[name] = FlagSetting(value=parse_text_value(flag, text))
            sources[name] = f"environment {key}"
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    for item in cli or ():
        name, sep, text = item.partition("=")
        flag = REGISTRY.get(name.strip())
        if not sep or flag is None:
            problems.append(
                f"--flag {item!r}: expected NAME=VALUE with NAME one of {', '.join(REGISTRY)}"
            )
            continue
        try:
            layer[flag.name] = FlagSetting(value=parse_text_value(flag, text))
            sources[flag.name] = "--flag"
        except ValueError as exc:
            problems.append(f"--flag {item!r}: {exc}")
    if problems:
        raise FlagConfigError("flag overrides", problems)
    return layer, sources


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class FlagService:
    """The one place a process reads flags from; see the module docstring."""

    def __init__(
        self,
        files: FlagFiles,
        *,
        remote: str | None = None,
        overrides: FlagLayer | None = None,
        override_sources: Mapping[str, str] | None = None,
        remote_timeout: float = 5.0,
        strict: bool = True,
    ) -> None:
        self.files = files
        files.root.mkdir(parents=True, exist_ok=True)
        self.history = FlagHistory(files.history)
        self.remote = (
            RemoteConfig(remote, files.remote_cache, timeout=remote_timeout) if remote else None
        )
        self.overrides: FlagLayer = dict(overrides or {})
        self.override_sources = dict(override_sources or {})
        self._listeners: list[FlagListener] = []
        self._local: FlagLayer | None = None
        self._local_key: tuple[int, int] | None = None
        self._remote_layer: FlagLayer | None = None
        self._data_version = -1
        self.problems: list[str] = []  # why a source is not being used right now
        self.current = FlagSet()
        self._load_local(strict=strict)
        self._remote_layer = self._cached_remote()
        self.refresh("started", force=True)

    def close(self) -> None:
        self.history.close()

    # --- reading the sources ------------------------------------------------------------------

    def _load_local(self, *, strict: bool) -> bool:
        """Re-read flags.json if it changed; a bad file keeps the previous layer (and raises
        when ``strict``: a command started with a bad file should say so and stop)."""
        key = _stat_key(self.files.local)
        if key == self._local_key:
            return False
        self._local_key = key
        if key is None:
            changed = self._local is not None
            self._local = None
            return changed
        try:
            layer = parse_document_text(
                self.files.local.read_text(encoding="utf-8"), str(self.files.local)
            )
        except (OSError, UnicodeDecodeError) as exc:
            error: ConfigError = ConfigError(f"cannot read {self.files.local}: {exc}")
            layer = None
        except FlagConfigError as exc:
            error, layer = exc, None
        if layer is None:
            if strict:
                raise error
            self.problems = [f"local flag file ignored, the previous set stays: {error}"]
            log.warning("%s", self.problems[0])
            return False
        self._local = layer
        self.problems = []
        return True

    def _cached_remote(self) -> FlagLayer | None:
        """The remote layer's last known good copy. A process given no remote source (a
        ``novelgen flags`` command, a window started without ``--flags-url``) follows the copy
        the data folder has, fetched by the process that has the source: every process on one
        folder then sees the same set, and none records a version without the remote."""
        if self.remote is not None:
            return self.remote.cached_layer()
        return cached_layer_of(self.files.remote_cache)

    def forget_remote(self) -> bool:
        """Stop following a remote: its last known good copy is deleted. False if none."""
        try:
            self.files.remote_cache.unlink()
        except FileNotFoundError:
            return False
        self._remote_layer = None
        self.refresh("remote configuration forgotten", force=True)
        return True

    def _resolve(self) -> tuple[FlagLayer, dict[str, str], FlagVersion | None]:
        pinned = self.history.pinned()
        if pinned is not None:
            layer, sources = resolve_shared(pinned.settings, None)
            return layer, {k: f"rollback to v{pinned.version}" for k in sources}, pinned
        layer, sources = resolve_shared(self._local, self._remote_layer)
        return layer, sources, None

    def refresh(self, reason: str = "changed", *, force: bool = False) -> bool:
        """Look at the sources; record and announce a new set. True if the set changed."""
        data_version = self.history.data_version()
        local_changed = self._load_local(strict=False)
        if not (force or local_changed or data_version != self._data_version):
            return False
        if data_version != self._data_version:
            # Another process may have fetched a newer remote copy (its cache is written before
            # it records): take it, or the two processes would each re-record their own view
            # on every poll, flipping the set between them.
            # A process without the source also drops the layer when the copy is gone
            # (`novelgen flags forget-remote` elsewhere); one with it keeps what it fetched.
            cached = self._cached_remote()
            if cached is not None or self.remote is None:
                self._remote_layer = cached
        layer, sources, pinned = self._resolve()
        if pinned is None:
            why = reason
            if local_changed and reason == "changed":
                why = f"{self.files.local.name} changed"
            version = self.history.record(layer, sources, why)
        else:
            version = self.history.latest() or self.history.record(layer, sources, reason)
        self._data_version = self.history.data_version()
        new = FlagSet(
            shared=layer,
            sources=sources,
            overrides=self.overrides,
            override_sources=self.override_sources,
            version=version.version,
            pinned_to=None if pinned is None else pinned.version,
        )
        old = self.current
        self.current = new
        if (new.version, new.pinned_to) == (old.version, old.pinned_to) and not force:
            return False
        if old.version:
            log.info("feature flags now v%d (%s)", new.version, version.reason)
        for listener in list(self._listeners):
            try:
                listener(new, version.reason)
            except Exception:  # a listener's bug must not stop the others hearing it
                log.exception("flag listener failed")
        return True

    def subscribe(self, listener: FlagListener) -> Callable[[], None]:
        """``listener(flagset, reason)`` on every change; returns the unsubscribe call."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def apply_remote(self, result: FetchResult) -> bool:
        """Take a fetch's outcome in (on the loop). A refused or unreachable source keeps the
        last known good layer, which is what ``result.layer`` is then."""
        if result.status == "rejected":
            self.problems = [result.reason]
        if (
            result.status in ("updated", "unchanged")
            and self.problems[:1]
            and (self.problems[0].startswith("remote flags"))
        ):
            self.problems = []
        if result.status != "updated":
            return False
        self._remote_layer = result.layer
        return self.refresh(f"remote configuration updated ({result.reason})", force=True)

    async def fetch_remote(self) -> FetchResult | None:
        if self.remote is None:
            return None
        result = await asyncio.to_thread(self.remote.fetch)
        self.apply_remote(result)
        return result

    async def watch(
        self, *, poll: float = DEFAULT_POLL, remote_every: float = DEFAULT_REMOTE_EVERY
    ) -> None:
        """Run until cancelled: pick up local edits, rollbacks and remote changes."""
        next_remote = time.monotonic()
        while True:
            try:
                self.refresh()
                if self.remote is not None and time.monotonic() >= next_remote:
                    next_remote = time.monotonic() + remote_every
                    await self.fetch_remote()
            except Exception:  # a broken disk or a bug: keep the set in force, keep trying
                log.exception("reading the feature flags failed; the current set stays")
            await asyncio.sleep(poll)

    def start_watching(self, **kwargs: float) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.watch(**kwargs), name="flags")

    async def following(self, work: Awaitable[_T]) -> _T:
        """``work``, awaited while this set follows its sources (a command's one job)."""
        watch = self.start_watching()
        try:
            return await work
        finally:
            await stop_watching(watch)

    # --- changing the shared set ------------------------------------------------------------

    def _local_layer_strict(self) -> FlagLayer:
        if not self.files.local.exists():
            return {}
        return parse_document_text(
            self.files.local.read_text(encoding="utf-8"), str(self.files.local)
        )

    def set_local(
        self, name: str, setting: FlagSetting | None, *, reason: str | None = None
    ) -> FlagSet:
        """Write ``name`` into flags.json (None: remove it, the default or remote decides).
        A rollback in force ends: the author has just said what they want now. ``reason``
        is what the new version records (default: ``flags set NAME``)."""
        if name not in REGISTRY:
            raise ConfigError(f"unknown flag {name!r} (known: {', '.join(REGISTRY)})")
        pinned = self.history.pinned()
        if pinned is not None:
            # Rolled back: the change builds on the restored set, not on the file the
            # rollback undid (which would otherwise come back with this unrelated change).
            layer = {
                flag: setting
                for flag, setting in pinned.settings.items()
                if pinned.sources.get(flag) == "local file"
            }
        else:
            layer = self._local_layer_strict()
        if setting is None:
            layer.pop(name, None)
        else:
            layer[name] = setting
        temp = self.files.local.with_name(self.files.local.name + ".tmp")
        temp.write_text(json.dumps(document_of(layer), indent=2) + "\n", encoding="utf-8")
        os.replace(temp, self.files.local)
        self.history.release()
        self.refresh(reason or f"flags set {name}", force=True)
        return self.current

    def fall_back_to_single_tab(self, why: str) -> str:
        """Switch multi_tab off in flags.json because tab orchestration is failing (the
        engine's breaker decided so); say what happened, for the log. The local file is
        where it goes so that it lasts (a restart does not walk back into the same failure),
        shows in ``flags show`` and the window, and is undone like any change: ticking
        multi_tab again, ``flags set multi_tab on`` or ``flags rollback``."""
        above = self._remote_layer or {}
        if "multi_tab" in self.overrides or "multi_tab" in above:
            # The file would not win; writing it anyway would surprise later, when that
            # layer lets go.
            source = self.current.source("multi_tab")
            return (
                f"multi_tab is decided by {source}, above the local flag file: the tabs go "
                "on (switch it there)"
            )
        self.set_local(
            "multi_tab", FlagSetting(value=False), reason=f"automatic single-tab fallback: {why}"
        )
        return (
            f"switched to the single-tab fallback (multi_tab off, flags v{self.current.version}); "
            "switch multi_tab on again once the cause is fixed"
        )

    def rollback(self, to: int | None = None) -> FlagVersion:
        version = self.history.rollback(to)
        self.refresh(version.reason, force=True)
        return version

    def release(self) -> bool:
        released = self.history.release()
        if released:
            self.refresh("rollback released", force=True)
        return released

    def versions(self, limit: int = 50) -> list[FlagVersion]:
        return self.history.versions(limit)


def open_flags(
    data_root: Path,
    *,
    remote: str | None = None,
    cli_overrides: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    strict: bool = True,
) -> FlagService:
    """The flag service for a data folder, with this process's overrides; the remote comes
    from ``remote`` or ``$NOVELGEN_FLAGS_URL``. ConfigError on a bad local file or override."""
    env = os.environ if environ is None else environ
    overrides, sources = overrides_from(env, cli_overrides)
    location = remote or env.get(REMOTE_ENV) or None
    return FlagService(
        flag_files(data_root),
        remote=location,
        overrides=overrides,
        override_sources=sources,
        strict=strict,
    )


async def stop_watching(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = [
    "ENV_PREFIX",
    "REMOTE_ENV",
    "FlagFiles",
    "FlagListener",
    "FlagService",
    "describe_flags",
    "flag_files",
    "open_flags",
    "overrides_from",
    "stop_watching",
]


def describe_flags(data_root: Path, *, limit: int = 20) -> dict[str, Any]:
    """The flag set for a bug report (``novelgen diagnose``): what is in force and why, the
    recent versions, the remote's cache state. A remote URL's query string is left out (it
    may carry an access key)."""
    service = open_flags(data_root, strict=False)
    try:
        current = service.current
        remote: dict[str, Any] | None = None
        if service.remote is not None:
            parts = urlsplit(service.remote.location)
            remote = {"location": urlunsplit(parts._replace(query="", fragment=""))}
            with contextlib.suppress(OSError, ValueError):
                cache = json.loads(service.files.remote_cache.read_text(encoding="utf-8"))
                remote.update(fetched_at=cache.get("fetched_at"), sha256=cache.get("sha256"))
        return {
            **flagset_json(current, service.problems, details=False),
            "remote": remote,
            "history": [
                {"version": v.version, "parent": v.parent, "at": v.created_at, "reason": v.reason}
                for v in service.versions(limit)
            ],
        }
    finally:
        service.close()
