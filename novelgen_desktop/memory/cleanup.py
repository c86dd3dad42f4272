"""Cleanup strategies: giving memory back, tried in order, each one measured.

The order is the requirement's, cheapest loss first:

1. ``reload_tab`` — reload the heaviest idle worker tabs (a ChatGPT tab's heap only grows: every
   turn keeps its DOM and image). Measured as the browser's PSS before and after.
2. ``new_chat`` — a fresh chat in idle tabs with long conversations (per-sequence chat mode).
3. ``drop_images`` — the extension forgets image bytes the hub already acknowledged.
4. ``prune_snapshots`` — old JSON snapshots of jobs not running (disk, not RAM, but it is the
   desktop's own footprint and costs nothing).
5. ``checkpoint_wal`` — the SQLite WAL folded back into the database and truncated.
6. ``collect_garbage`` — ``gc.collect()`` in the desktop process.

A tab with an attempt in hand is never reloaded or sent to a new chat (the worker refuses too):
cleanup cannot lose or repeat a paid image. The tabs being cleaned are held (no new attempt)
until their answer comes. A round stops early once system memory is back under ``stop_below``.
The I/O (the hub's workers, psutil, the data folder) is behind :class:`CleanupEnvironment`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from novelgen_desktop.memory.governor import CleanupRequest
from novelgen_desktop.protocol.messages import CleanupAction, CleanupDone, Status
from novelgen_desktop.store.snapshot import compress_and_prune

MiB = 2**20

STRATEGIES = (
    "reload_tab",
    "new_chat",
    "drop_images",
    "prune_snapshots",
    "checkpoint_wal",
    "collect_garbage",
)


@dataclass(frozen=True, slots=True)
class CleanupSettings:
    reload_heap_bytes: int = 256 * MiB  # a tab heavier than this is worth a reload
    max_reloads: int = 10  # heavy tabs reloaded per browser and round (critical: every tab)
    long_conversation_turns: int = 20
    keep_snapshots: int = 3  # per job not running
    # A reloaded page's old heap leaves the renderer when V8's memory reducer runs (10–15 s
    # after a reload, measured): the browser's PSS is watched for up to this long.
    measure_delay: float = 15.0
    idle_wait: float = 30.0  # how long a chosen tab (held meanwhile) may finish its attempt

    def __post_init__(self) -> None:
        if self.reload_heap_bytes < 0 or self.max_reloads < 1 or self.keep_snapshots < 1:
            raise ValueError(
                "cleanup settings: reload_heap_bytes ≥ 0, max_reloads ≥ 1, keep_snapshots ≥ 1"
            )
        if self.long_conversation_turns < 1 or self.measure_delay < 0 or self.idle_wait < 0:
            raise ValueError(
                "cleanup settings: long_conversation_turns ≥ 1, measure_delay ≥ 0, idle_wait ≥ 0"
            )


@dataclass(frozen=True, slots=True)
class CleanupResult:
    """One strategy applied to one target, with what it freed as measured."""

    strategy: str
    target: str  # a browser key, "desktop", "database", "snapshots"
    ok: bool
    freed_bytes: int
    before_bytes: int | None
    after_bytes: int | None
    measure: str  # "pss", "heap", "images", "disk", "uss"/"rss"
    seconds: float
    detail: str = ""
    heap_before: int | None = None  # the tabs' own JS heaps (reload_tab, new_chat)
    heap_after: int | None = None

    @property
    def freed_share(self) -> float | None:
        if not self.before_bytes:
            return None
        return self.freed_bytes / self.before_bytes

    def describe(self) -> str:
        text = f"{self.strategy} on {self.target}: "
        if not self.ok:
            return text + (self.detail or "nothing done")
        if self.before_bytes is not None and self.after_bytes is not None:
            text += (
                f"{self.measure} {self.before_bytes / MiB:.0f} → {self.after_bytes / MiB:.0f} MiB"
            )
            share = self.freed_share
            if share is not None:
                text += f" (−{share:.0%})" if share > 0 else " (nothing freed)"
            if self.measure != "heap" and self.heap_before is not None:
                text += (
                    f", tab heaps {self.heap_before / MiB:.0f} → "
                    f"{(self.heap_after or 0) / MiB:.0f} MiB"
                )
        else:
            text += f"{self.freed_bytes / MiB:.1f} MiB freed ({self.measure})"
        return text + (f"; {self.detail}" if self.detail else "")


class CleanableTab(Protocol):
    """What cleanup needs of a worker (``server.remote_worker.RemoteWorker`` is one)."""

    worker_id: str
    last_status: Status | None

    @property
    def busy(self) -> bool: ...

    @property
    def can_clean_up(self) -> bool: ...

    async def request_cleanup(
        self, action: CleanupAction, reason: str | None = None, *, timeout: float = ...
    ) -> CleanupDone: ...


class CleanupEnvironment(Protocol):
    def tabs(self) -> list[CleanableTab]: ...

    def browser_of(self, worker_id: str) -> str | None: ...

    async def browser_bytes(self, key: str) -> tuple[int, str] | None:
        """A fresh figure for one browser: (bytes, measure), or None if it is gone."""

    def hold(self, worker_ids: Iterable[str], held: bool) -> None: ...

    def system_percent(self) -> float: ...

    def data_dir(self) -> Path: ...

    def database(self) -> Path: ...

    def active_job(self) -> str | None: ...

    def own_bytes(self) -> tuple[int, str]: ...


def _heap(tab: CleanableTab) -> int:
    status = tab.last_status
    return status.memory_bytes or 0 if status is not None else 0


def _turns(tab: CleanableTab) -> int:
    status = tab.last_status
    return status.conversation_turns or 0 if status is not None else 0


class CleanupRound:
    """One round of cleanup for one request (see the module docstring)."""

    def __init__(
        self,
        env: CleanupEnvironment,
        settings: CleanupSettings | None = None,
        *,
        on_result: Callable[[CleanupResult], None] | None = None,
    ) -> None:
        self.env = env
        self.settings = settings or CleanupSettings()
        self.on_result = on_result
        self.results: list[CleanupResult] = []
        self._measuring: set[asyncio.Task[None]] = set()

    def _record(self, result: CleanupResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    async def run(
        self,
        request: CleanupRequest,
        *,
        stop_below: float | None = None,
        strategies: Iterable[str] = STRATEGIES,
    ) -> list[CleanupResult]:
        steps = {
            "reload_tab": self._reload_tabs,
            "new_chat": self._new_chats,
            "drop_images": self._drop_images,
            "prune_snapshots": self._prune_snapshots,
            "checkpoint_wal": self._checkpoint_wal,
            "collect_garbage": self._collect_garbage,
        }
        for name in strategies:
            if name not in steps:
                raise ValueError(f"unknown cleanup strategy {name!r}; known: {', '.join(steps)}")
        for name in strategies:
            await steps[name](request)
            if stop_below is not None and self.env.system_percent() <= stop_below:
                break
        return self.results

    # -- browser tabs ---------------------------------------------------------------------------

    def _candidates(self, request: CleanupRequest) -> list[CleanableTab]:
        """Tabs that answer ``cleanup``, the requested browsers first, heaviest first."""
        order = {key: i for i, key in enumerate(request.browsers)}

        def rank(tab: CleanableTab) -> tuple[int, int]:
            browser = self.env.browser_of(tab.worker_id) or ""
            return order.get(browser, len(order)), -_heap(tab)

        return sorted((t for t in self.env.tabs() if t.can_clean_up), key=rank)

    def _by_browser(self, tabs: list[CleanableTab]) -> dict[str, list[CleanableTab]]:
        groups: dict[str, list[CleanableTab]] = {}
        for tab in tabs:
            groups.setdefault(self.env.browser_of(tab.worker_id) or "unknown", []).append(tab)
        return groups

    async def _reload_tabs(self, request: CleanupRequest) -> None:
        candidates = self._candidates(request)
        if request.urgent:
            chosen = candidates
        else:
            heavy = [t for t in candidates if _heap(t) >= self.settings.reload_heap_bytes]
            # No tab is heavy: the heaviest one still frees the most a reload can.
            chosen = heavy or sorted(candidates, key=_heap, reverse=True)[:1]
        limit = len(chosen) if request.urgent else self.settings.max_reloads
        # Browsers side by side: each one's reloads and its settle time overlap the others'.
        await asyncio.gather(
            *(
                self._on_browser(key, tabs[:limit], CleanupAction.RELOAD_TAB, request.reason)
                for key, tabs in self._by_browser(chosen).items()
            )
        )

    async def _new_chats(self, request: CleanupRequest) -> None:
        long = [
            t
            for t in self._candidates(request)
            if _turns(t) >= self.settings.long_conversation_turns
        ]
        await asyncio.gather(
            *(
                self._on_browser(key, tabs, CleanupAction.NEW_CHAT, request.reason)
                for key, tabs in self._by_browser(long).items()
            )
        )

    async def _until_idle(self, tabs: list[CleanableTab]) -> list[CleanableTab]:
        """The chosen tabs are held (no new attempt); give those with an attempt in hand
        ``idle_wait`` to finish it. Returns the idle ones."""
        deadline = time.monotonic() + self.settings.idle_wait
        while any(t.busy for t in tabs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return [t for t in tabs if not t.busy and t.can_clean_up]

    async def _on_browser(
        self, key: str, chosen: list[CleanableTab], action: CleanupAction, reason: str
    ) -> None:
        started = time.monotonic()
        ids = [t.worker_id for t in chosen]
        self.env.hold(ids, True)
        try:
            tabs = await self._until_idle(chosen)
            if not tabs:
                self._record(
                    CleanupResult(
                        strategy=action.value,
                        target=key,
                        ok=False,
                        freed_bytes=0,
                        before_bytes=None,
                        after_bytes=None,
                        measure="heap",
                        seconds=time.monotonic() - started,
                        detail=f"no tab went idle within {self.settings.idle_wait:g} s",
                    )
                )
                return
            before = await self.env.browser_bytes(key)
            answers = await asyncio.gather(*(t.request_cleanup(action, reason) for t in tabs))
        finally:
            self.env.hold(ids, False)
        done = [a for a in answers if a.ok]
        if done and before is not None and before[1] != "heap":
            # The browser gives the memory back over the next seconds: measure in the
            # background so the round (and the next one) need not wait for it.
            measuring = asyncio.get_running_loop().create_task(
                self._measure_after(key, tabs, answers, before, started)
            )
            self._measuring.add(measuring)
            measuring.add_done_callback(self._measuring.discard)
            return
        after = await self.env.browser_bytes(key) if done else before
        self._record_tabs(
            action, key, tabs=tabs, answers=answers, before=before, after=after, started=started
        )

    async def _measure_after(
        self,
        key: str,
        tabs: list[CleanableTab],
        answers: list[CleanupDone],
        before: tuple[int, str],
        started: float,
    ) -> None:
        expected = sum(max(0, (a.heap_before or 0) - (a.heap_after or 0)) for a in answers if a.ok)
        after = await self._settled(key, before, expected)
        self._record_tabs(
            answers[0].action,
            key,
            tabs=tabs,
            answers=answers,
            before=before,
            after=after,
            started=started,
        )

    async def settle(self) -> list[CleanupResult]:
        """Wait for the measurements still running in the background; all the results."""
        while self._measuring:
            await asyncio.gather(*self._measuring, return_exceptions=True)
        return self.results

    def _record_tabs(
        self,
        action: CleanupAction,
        key: str,
        *,
        tabs: list[CleanableTab],
        answers: list[CleanupDone],
        before: tuple[int, str] | None,
        after: tuple[int, str] | None,
        started: float,
    ) -> None:
        parts = []
        for tab, answer in zip(tabs, answers, strict=True):
            if answer.ok and answer.heap_before is not None and answer.heap_after is not None:
                parts.append(
                    f"{tab.worker_id} heap {answer.heap_before / MiB:.0f} → "
                    f"{answer.heap_after / MiB:.0f} MiB"
                )
            elif not answer.ok:
                parts.append(f"{tab.worker_id} refused: {answer.detail or 'no reason'}")
        heap_before = sum(a.heap_before or 0 for a in answers)
        heap_after = sum((a.heap_after if a.ok else a.heap_before) or 0 for a in answers)
        if before is not None and after is not None and before[1] != "heap":
            before_bytes, measure = before
            after_bytes = after[0]
        else:  # the browser cannot be seen: the tabs' own figures are what there is
            measure, before_bytes, after_bytes = "heap", heap_before, heap_after
        self._record(
            CleanupResult(
                strategy=action.value,
                target=key,
                ok=any(a.ok for a in answers),
                freed_bytes=max(0, before_bytes - after_bytes),
                before_bytes=before_bytes,
                after_bytes=after_bytes,
                measure=measure,
                seconds=time.monotonic() - started,
                detail="; ".join(parts),
                heap_before=heap_before,
                heap_after=heap_after,
            )
        )

    async def _settled(
        self, key: str, before: tuple[int, str], expected: int
    ) -> tuple[int, str] | None:
        """The browser's lowest figure within ``measure_delay``: read every second, done
        early once half of what the tabs said they freed (when that is 8 MiB or more) is
        gone."""
        deadline = time.monotonic() + self.settings.measure_delay
        lowest: tuple[int, str] | None = None
        while True:
            current = await self.env.browser_bytes(key)
            if current is not None and (lowest is None or current[0] < lowest[0]):
                lowest = current
            # Done early only against a figure worth trusting: Chrome's tab heaps are coarse,
            # and the heap_after a tab reports still holds the old page (not yet collected).
            if (
                expected >= 8 * MiB
                and lowest is not None
                and before[0] - lowest[0] >= expected // 2
            ):
                return lowest
            if time.monotonic() >= deadline:
                return lowest
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    async def _drop_images(self, request: CleanupRequest) -> None:
        tabs = [t for t in self.env.tabs() if t.can_clean_up]
        for key, group in self._by_browser(tabs).items():
            started = time.monotonic()
            # The extension keeps images per browser profile: one request per browser.
            answer = await group[0].request_cleanup(CleanupAction.DROP_IMAGES, request.reason)
            freed = answer.freed_bytes or 0
            self._record(
                CleanupResult(
                    strategy="drop_images",
                    target=key,
                    ok=answer.ok,
                    freed_bytes=freed,
                    before_bytes=None,
                    after_bytes=None,
                    measure="images",
                    seconds=time.monotonic() - started,
                    detail=answer.detail or "",
                )
            )

    # -- the desktop itself ---------------------------------------------------------------------

    async def _prune_snapshots(self, request: CleanupRequest) -> None:
        started = time.monotonic()
        jobs = self.env.data_dir() / "jobs"
        active = self.env.active_job()
        keep = self.settings.keep_snapshots

        def prune() -> tuple[int, int, int]:
            before = after = folders = 0
            if not jobs.is_dir():
                return 0, 0, 0
            for folder in sorted(jobs.glob("*/snapshots")):
                if folder.parent.name == active:
                    continue  # its writer prunes it; two pruners would race
                size = _folder_bytes(folder)
                with contextlib.suppress(OSError):
                    compress_and_prune(folder, keep=keep)
                before, after, folders = before + size, after + _folder_bytes(folder), folders + 1
            return before, after, folders

        before, after, folders = await asyncio.to_thread(prune)
        self._measured(
            "prune_snapshots", "snapshots", (before, after, "disk"), started,
            detail=f"{folders} job(s) not running, newest {keep} kept",
        )  # fmt: skip

    async def _checkpoint_wal(self, request: CleanupRequest) -> None:
        started = time.monotonic()
        database = self.env.database()
        wal = database.with_name(database.name + "-wal")

        def checkpoint() -> tuple[int, int, str]:
            before = wal.stat().st_size if wal.exists() else 0
            detail = ""
            try:
                connection = sqlite3.connect(database, timeout=1.0)
                try:
                    row = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    if row is not None and row[0]:
                        detail = "busy: a reader kept part of the WAL"
                finally:
                    connection.close()
            except sqlite3.Error as exc:
                detail = f"checkpoint failed: {exc}"
            after = wal.stat().st_size if wal.exists() else 0
            return before, after, detail

        if not database.exists():
            return
        before, after, detail = await asyncio.to_thread(checkpoint)
        self._measured(
            "checkpoint_wal", "database", (before, after, "disk"), started,
            detail=detail, ok=not detail.startswith("checkpoint failed"),
        )  # fmt: skip

    async def _collect_garbage(self, request: CleanupRequest) -> None:
        started = time.monotonic()
        before, measure = self.env.own_bytes()
        unreachable = gc.collect()
        after, _ = self.env.own_bytes()
        self._measured(
            "collect_garbage", "desktop", (before, after, measure), started,
            detail=f"{unreachable} unreachable object(s)",
        )  # fmt: skip

    def _measured(
        self,
        strategy: str,
        target: str,
        figures: tuple[int, int, str],
        started: float,
        *,
        detail: str = "",
        ok: bool = True,
    ) -> None:
        """Record a strategy measured as (before, after, measure)."""
        before, after, measure = figures
        self._record(
            CleanupResult(
                strategy=strategy,
                target=target,
                ok=ok,
                freed_bytes=max(0, before - after),
                before_bytes=before,
                after_bytes=after,
                measure=measure,
                seconds=time.monotonic() - started,
                detail=detail,
            )
        )


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total
