"""The memory monitor: readings in, the governor's decisions applied to the job service.

The thin asyncio adapter around :mod:`.governor` (pure) and :mod:`.cleanup` (strategies):

* every ``interval`` (default 100 ms) it reads system memory on the event loop (≈80 µs) and
  builds a :class:`~.readings.MemoryReading` with the tabs' latest ``status`` (heap, busy,
  conversation turns); so a crossing is seen within one interval and acted on at once;
* every ``browser_interval`` (default 2 s), on a thread, it traces each worker's connection to
  its browser process (:class:`~.probe.BrowserLocator`) and sums each browser tree's PSS, and
  reads the desktop's own memory;
* it applies each decision (:meth:`JobService.set_memory_hold`, ``recall_unpaid`` in
  critical), logs every transition and browser hold as an engine event (the GUI's log, the
  store), publishes the state (:meth:`JobService.publish_memory` → protocol clients get
  ``memory_state``) and runs a cleanup round when the governor asks for one.

``system`` is any callable returning a :class:`~.probe.SystemMemory`: :class:`SyntheticSystem`
makes pressure scenarios in CI out of the simulated tabs' reported heaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from novelgen_desktop.engine.model import MemoryLevel
from novelgen_desktop.engine.service import JobService, MemoryStatus
from novelgen_desktop.memory.cleanup import (
    STRATEGIES,
    CleanableTab,
    CleanupResult,
    CleanupRound,
    CleanupSettings,
)
from novelgen_desktop.memory.governor import (
    CleanupRequest,
    GovernorDecision,
    GovernorSettings,
    MemoryGovernor,
    Transition,
)
from novelgen_desktop.memory.probe import (
    BrowserLocator,
    SystemMemory,
    own_memory,
    read_system,
    tree_memory,
)
from novelgen_desktop.memory.readings import BrowserMemory, MemoryReading, TabMemory

if TYPE_CHECKING:
    from novelgen_desktop.server.remote_worker import RemoteWorker

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SystemSource = Callable[[], SystemMemory]
WorkerSource = Callable[[], Sequence["RemoteWorker"]]
FULL_READING_EVERY = 1.0
"""Seconds between full readings (tabs, browsers, the governor) while nothing can change."""
_LEVELS = {
    MemoryLevel.PRESSURE: "warning",
    MemoryLevel.CRITICAL: "error",
    MemoryLevel.RECOVERING: "info",
    MemoryLevel.NORMAL: "info",
}


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    interval: float = 0.1  # a reading is acted on in < 1 ms; 10 Hz costs ~0.7 % CPU
    # Within ``near_margin`` points of a line memory must not cross unseen (pause, critical),
    # sample every ``near_interval``: a crossing is then seen within 25 ms, and the faster
    # sampling costs only while memory is that close.
    near_interval: float = 0.025
    near_margin: float = 10.0
    # A browser tree's PSS costs ~40 ms of CPU to read (smaps_rollup of every process): every
    # 30 s while memory is calm, every 3 s once it is over the resume line or held.
    browser_interval: float = 30.0
    browser_interval_tight: float = 3.0
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    cleanup: CleanupSettings = field(default_factory=CleanupSettings)
    cleanup_enabled: bool = True
    enabled: bool = True  # False: watch and log only; never hold dispatch or clean up
    strategies: tuple[str, ...] = STRATEGIES

    def __post_init__(self) -> None:
        if not 0.01 <= self.interval <= 60:
            raise ValueError(
                f"memory setting interval: {self.interval:g} s is not within 0.01–60 s"
            )
        if not 0.005 <= self.near_interval <= 60 or not 0 <= self.near_margin <= 100:
            raise ValueError(
                f"memory settings: need 0.005 s ≤ near_interval ({self.near_interval:g} s) "
                f"≤ 60 s and 0 ≤ near_margin ({self.near_margin:g}) ≤ 100"
            )
        if not self.interval <= self.browser_interval_tight <= self.browser_interval <= 600:
            raise ValueError(
                f"memory settings: need interval ({self.interval:g} s) ≤ browser_interval_tight "
                f"({self.browser_interval_tight:g} s) ≤ browser_interval "
                f"({self.browser_interval:g} s) ≤ 600 s"
            )
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown cleanup strategies: {', '.join(sorted(unknown))}")


def reported_heaps(workers: Iterable[RemoteWorker]) -> int:
    """The sum of the heaps the tabs last reported (what a :class:`SyntheticSystem` adds)."""
    statuses = [w.last_status for w in workers]
    return sum(s.memory_bytes or 0 for s in statuses if s is not None)


class SyntheticSystem:
    """A machine of ``total_bytes`` whose use is ``base_used_bytes`` plus whatever ``extra``
    says (the simulated tabs' heaps) plus a scripted ``offset_percent`` — pressure without
    exhausting the real machine."""

    def __init__(
        self,
        total_bytes: int,
        base_used_bytes: int,
        extra: Callable[[], int] = lambda: 0,
        offset_percent: Callable[[], float] = lambda: 0.0,
    ) -> None:
        if total_bytes <= 0 or not 0 <= base_used_bytes <= total_bytes:
            raise ValueError("SyntheticSystem: need total > 0 and 0 ≤ base_used ≤ total")
        self.total_bytes = total_bytes
        self.base_used_bytes = base_used_bytes
        self.extra = extra
        self.offset_percent = offset_percent

    def __call__(self) -> SystemMemory:
        used = self.base_used_bytes + self.extra()
        used += int(self.total_bytes * self.offset_percent() / 100.0)
        used = max(0, min(self.total_bytes, used))
        return SystemMemory(self.total_bytes, used, used / self.total_bytes * 100.0)


@dataclass
class _Measured:
    """What the last browser read found (thread → loop)."""

    browsers: dict[str, BrowserMemory] = field(default_factory=dict)
    browser_of: dict[str, str] = field(default_factory=dict)
    desktop_bytes: int | None = None


class MemoryMonitor:
    """Samples memory, feeds the governor, applies its decisions (see the module docstring)."""

    def __init__(
        self,
        service: JobService,
        workers: WorkerSource,
        settings: MonitorSettings | None = None,
        *,
        system: SystemSource = read_system,
        locator: BrowserLocator | None = None,
        server_port: int | None = None,
        measure_browsers: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.workers = workers
        self.settings = settings or MonitorSettings()
        self.flag_allows = True  # the memory_governor feature flag (see set_flag_allows)
        self.system = system
        self.locator = locator or BrowserLocator()
        self.server_port = server_port
        self.measure_browsers = measure_browsers
        self.clock = clock
        self.governor = MemoryGovernor(self.settings.governor)
        self.last_reading: MemoryReading | None = None
        self.transitions: deque[Transition] = deque(maxlen=1000)
        self.cleanups: deque[CleanupResult] = deque(maxlen=1000)
        self.detection_latencies: deque[float] = deque(maxlen=10_000)
        self._measured = _Measured()
        self._observed_measure: _Measured | None = None  # browser figures last decided on
        self._observed_at = -math.inf
        self._last_percent = 0.0
        self._measuring: asyncio.Task[None] | None = None
        self._next_measure = 0.0
        self._cleaning: set[str] = set()
        self._hold_reason: str | None = None
        self._round: asyncio.Task[list[CleanupResult]] | None = None
        self._queued: tuple[CleanupRequest, float | None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading_callbacks: list[Callable[[MemoryReading, GovernorDecision], None]] = []
        self._cleanup_callbacks: list[Callable[[CleanupResult], None]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop_task is None:
            # Kept for the thread hand-offs: under qasync a task may be stepped by Qt's event
            # processing between two run_until_complete calls (the window being shown), when
            # asyncio has no running loop and asyncio.to_thread would fail.
            self._loop = asyncio.get_running_loop()
            self._loop_task = self._loop.create_task(self._run(), name="memory-monitor")

    async def _in_thread(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = self._loop or asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(function, *args))

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, self._round, self._measuring) if t is not None]
        self._loop_task = self._round = self._measuring = None
        self._queued = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._cleaning.clear()
        self.service.set_memory_hold(None, frozenset())

    @property
    def state(self) -> MemoryLevel:
        return self.governor.state

    @property
    def active(self) -> bool:
        """Whether the governor may hold dispatch and clean up: the setting, and the
        ``memory_governor`` feature flag (a kill switch flipped live)."""
        return self.settings.enabled and self.flag_allows

    def update_settings(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.governor.update_settings(settings.governor)
        if not self.active:
            self._cleaning.clear()
            self.service.set_memory_hold(None, frozenset())

    def set_flag_allows(self, allowed: bool) -> None:
        """The ``memory_governor`` flag changed. Off: every hold is released at once (the
        readings go on, logged only). On again: the governor's current decision applies."""
        if allowed == self.flag_allows:
            return
        self.flag_allows = allowed
        if not self.active:
            self._cleaning.clear()
            self.service.set_memory_hold(None, frozenset())
        elif self.last_reading is not None:
            self._apply_hold()

    def on_reading(self, callback: Callable[[MemoryReading, GovernorDecision], None]) -> None:
        self._reading_callbacks.append(callback)

    def on_cleanup(self, callback: Callable[[CleanupResult], None]) -> None:
        self._cleanup_callbacks.append(callback)

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a bad reading must not end the watch
                log.exception("memory sample failed")
            await asyncio.sleep(self._next_interval())

    def _next_interval(self) -> float:
        """Fast sampling only near a line memory must not cross unseen (see MonitorSettings)."""
        settings = self.settings
        near = settings.governor.pause_percent - settings.near_margin
        if self._last_percent >= near:
            return min(settings.near_interval, settings.interval)
        return settings.interval

    # -- one reading --------------------------------------------------------------------------

    def sample(self) -> GovernorDecision:
        """Read memory now; decide and apply when anything could change. Returns the
        decision (the last one when nothing could)."""
        now = time.monotonic()
        if self.measure_browsers and now >= self._next_measure and self._measuring is None:
            self._next_measure = now + self._browser_interval()
            self._measuring = asyncio.get_running_loop().create_task(self._measure())
        taken_at = time.monotonic()
        system = self.system()
        self._last_percent = system.percent
        if self._quiet(system.percent, taken_at):
            return self.governor.last_decision
        self._observed_at = taken_at
        return self.observe(self._compose(system, taken_at))

    def _quiet(self, percent: float, now: float) -> bool:
        """Nothing can change: normal, nothing held, under the pause line, no new browser
        figures, and the last full reading is under a second old. Most samples stop here
        (a system read and a comparison), which keeps the 10 Hz watch under 1 % CPU."""
        governor = self.governor
        return (
            governor.state is MemoryLevel.NORMAL
            and not governor.held_browsers
            and not self._cleaning
            and percent < self.settings.governor.pause_percent
            and self._measured is self._observed_measure
            and now - self._observed_at < FULL_READING_EVERY
        )

    def _browser_interval(self) -> float:
        """Browsers are measured often only while memory is tight (see MonitorSettings)."""
        reading, settings = self.last_reading, self.settings
        tight = self.governor.state is not MemoryLevel.NORMAL or bool(self.governor.held_browsers)
        if reading is not None and reading.system_percent >= settings.governor.resume_percent:
            tight = True
        return settings.browser_interval_tight if tight else settings.browser_interval

    def _tab(self, worker: RemoteWorker) -> TabMemory:
        status = worker.last_status
        return TabMemory(
            worker_id=worker.worker_id,
            browser=self.browser_of(worker.worker_id),
            heap_bytes=status.memory_bytes if status is not None else None,
            busy=worker.busy,
            conversation_turns=status.conversation_turns if status is not None else None,
            cleanable=worker.can_clean_up,
        )

    def _compose(self, system: SystemMemory, taken_at: float) -> MemoryReading:
        workers = list(self.workers())
        tabs = tuple(self._tab(w) for w in workers)
        measured = self._measured
        browsers = [b for b in measured.browsers.values()]
        by_heap: dict[str, list[TabMemory]] = {}
        for tab in tabs:
            if tab.browser is not None and tab.browser not in measured.browsers:
                by_heap.setdefault(tab.browser, []).append(tab)
        for key, group in by_heap.items():  # browsers the desktop cannot see: their heaps
            browsers.append(
                BrowserMemory(
                    key,
                    sum(t.heap_bytes or 0 for t in group),
                    measure="heap",
                    worker_ids=tuple(t.worker_id for t in group),
                )
            )
        return MemoryReading(
            ts=self.clock(),
            system_percent=system.percent,
            system_total_bytes=system.total_bytes,
            system_used_bytes=system.used_bytes,
            desktop_bytes=measured.desktop_bytes,
            browsers=tuple(browsers),
            tabs=tabs,
            taken_at=taken_at,
            synthetic=self.system is not read_system,
        )

    async def _measure(self) -> None:
        """Trace connections to browsers and sum their trees' PSS, on a thread."""
        try:
            ports: list[tuple[str, int, str]] = []
            for worker in self.workers():
                session = worker.session
                address = session.ws.remote_address if session is not None else None
                if isinstance(address, tuple) and len(address) >= 2:
                    ports.append((worker.worker_id, int(address[1]), worker.kind))
            self._measured = await self._in_thread(self._measure_in_thread, ports)
        except Exception:
            log.exception("browser memory read failed")
        finally:
            self._measuring = None

    def _measure_in_thread(self, ports: list[tuple[str, int, str]]) -> _Measured:
        browser_of: dict[str, str] = {}
        roots: dict[int, list[str]] = {}
        untraced: list[str] = []
        for worker_id, port, kind in ports:
            root = self.locator.root_for_peer(port, self.server_port)
            if root is not None:
                roots.setdefault(root, []).append(worker_id)
                browser_of[worker_id] = f"pid:{root}"
            elif kind == "extension":
                untraced.append(worker_id)
        if untraced:
            # The connection could not be traced (another user's sockets; macOS without
            # root): by name, but only when exactly one Chrome/Chromium runs — two would be
            # a guess.
            by_name = self.locator.roots_by_profile()
            if len(by_name) == 1:
                roots.setdefault(by_name[0], []).extend(untraced)
                browser_of.update(dict.fromkeys(untraced, f"pid:{by_name[0]}"))
        browsers: dict[str, BrowserMemory] = {}
        for root, worker_ids in roots.items():
            tree = tree_memory(root)
            if tree is None:
                continue
            browsers[f"pid:{root}"] = BrowserMemory(
                f"pid:{root}",
                tree.pss_bytes,  # a process that denies PSS is counted by its RSS already
                measure=tree.measure,
                processes=tree.processes,
                worker_ids=tuple(worker_ids),
            )
        return _Measured(browsers, browser_of, own_memory())

    # -- applying a decision --------------------------------------------------------------------

    def observe(self, reading: MemoryReading) -> GovernorDecision:
        """Feed one reading to the governor and apply its decision (tests and benchmarks
        call this with synthetic readings)."""
        self.last_reading = reading
        self._observed_measure = self._measured
        decision = self.governor.observe(reading)
        transition = decision.transition
        if transition is not None and decision.hold_all:
            self._hold_reason = transition.reason
        enabled = self.active
        if enabled:
            self._apply_hold(decision)
        if transition is not None:
            self.detection_latencies.append(time.monotonic() - reading.taken_at)
            self._announce(transition, decision)
            if decision.recall_unpaid and enabled:
                self.service.recall_unpaid(transition.reason)
        for change in decision.browser_changes:
            verb = "held" if change.held else "released"
            self.service.log_event(
                "warning" if change.held else "info",
                f"memory_browser_{verb}",
                f"{change.reason}: its tabs {'get no new work' if change.held else 'work again'}",
                data={"browser": change.browser, "bytes": change.bytes},
            )
        if decision.cleanup is not None and self.settings.cleanup_enabled and enabled:
            self._start_round(decision.cleanup, stop_below=self.settings.governor.resume_percent)
        for callback in list(self._reading_callbacks):
            try:
                callback(reading, decision)
            except Exception:
                log.exception("memory reading callback failed")
        return decision

    def _apply_hold(self, decision: GovernorDecision | None = None) -> None:
        decision = decision or self.governor.last_decision
        reason = (self._hold_reason or "memory pressure") if decision.hold_all else None
        self.service.set_memory_hold(reason, frozenset(decision.held_workers | self._cleaning))

    def _announce(self, transition: Transition, decision: GovernorDecision) -> None:
        state = transition.state
        held = sorted(decision.held_workers) if not decision.hold_all else ["*"]
        words = {
            MemoryLevel.PRESSURE: "dispatch paused, attempts in flight finish",
            MemoryLevel.CRITICAL: "dispatch paused, attempts not yet sent called back",
            MemoryLevel.RECOVERING: "workers let back a few at a time",
            MemoryLevel.NORMAL: "dispatch as usual",
        }
        self.transitions.append(transition)
        effect = words[state] if self.active else "governor off: nothing held"
        self.service.log_event(
            _LEVELS[state],
            f"memory_{state.value}",
            f"memory {state.value}: {transition.reason}; {effect}",
            data={
                "state": state.value,
                "previous": transition.previous.value,
                "system_percent": round(transition.system_percent, 2),
                "held_workers": held,
            },
        )
        self.service.publish_memory(
            MemoryStatus(
                ts=transition.ts,
                state=state,
                previous=transition.previous,
                system_percent=transition.system_percent,
                reason=transition.reason,
                held_workers=tuple(decision.held_workers)
                if not decision.hold_all
                else tuple(w.worker_id for w in self.workers()),
            )
        )

    # -- cleanup --------------------------------------------------------------------------------

    def _start_round(self, request: CleanupRequest, *, stop_below: float | None) -> None:
        if self._round is not None and not self._round.done():
            # One round at a time; this request is kept (the newest wins) and runs when the
            # current round ends, if memory is still short then.
            self._queued = (request, stop_below)
            return
        self._queued = None
        self._round = asyncio.get_running_loop().create_task(
            self._cleanup(request, stop_below=stop_below), name="memory-cleanup"
        )
        self._round.add_done_callback(self._round_over)

    def _round_over(self, _done: asyncio.Task[list[CleanupResult]]) -> None:
        queued, self._queued = self._queued, None
        if queued is None:
            return
        decision = self.governor.last_decision
        if decision.hold_all or self.governor.held_browsers:
            request, stop_below = queued
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._start_round(request, stop_below=stop_below)

    async def _cleanup(
        self, request: CleanupRequest, *, stop_below: float | None, settle: bool = False
    ) -> list[CleanupResult]:
        """One round. Its browser measurements may still run when it returns (they log
        their results when done); ``settle``: wait for them too."""
        cleanup = CleanupRound(self, self.settings.cleanup, on_result=self._record)
        try:
            await cleanup.run(request, stop_below=stop_below, strategies=self.settings.strategies)
            if settle:
                await cleanup.settle()
        except Exception:
            log.exception("memory cleanup failed")
        return cleanup.results

    async def free_memory_now(self, reason: str = "asked by the author") -> list[CleanupResult]:
        """Every strategy, now, whatever the state ("Free memory" in the window); returns
        once every result is measured."""
        if self._round is not None and not self._round.done():
            with contextlib.suppress(Exception):
                await self._round
        reading = self.last_reading or self._compose(self.system(), time.monotonic())
        request = self.governor.force_cleanup(reading, reason)
        self._round = asyncio.get_running_loop().create_task(
            self._cleanup(request, stop_below=None, settle=True), name="memory-cleanup"
        )
        return await self._round

    def _record(self, result: CleanupResult) -> None:
        self.cleanups.append(result)
        data: dict[str, Any] = asdict(result)
        self.service.log_event(
            "info" if result.ok else "warning",
            "memory_cleanup",
            result.describe(),
            data=data,
        )
        for callback in list(self._cleanup_callbacks):
            try:
                callback(result)
            except Exception:
                log.exception("cleanup callback failed")

    # -- CleanupEnvironment -----------------------------------------------------------------

    def tabs(self) -> list[CleanableTab]:
        return [w for w in self.workers() if w.connected]

    def browser_of(self, worker_id: str) -> str | None:
        known = self._measured.browser_of.get(worker_id)
        if known is not None:
            return known
        worker = next((w for w in self.workers() if w.worker_id == worker_id), None)
        return f"tabs:{worker.kind}" if worker is not None else None

    async def browser_bytes(self, key: str) -> tuple[int, str] | None:
        if key.startswith("pid:"):
            tree = await self._in_thread(tree_memory, int(key[4:]))
            if tree is None:
                return None
            return tree.pss_bytes, tree.measure
        tabs = [w for w in self.workers() if self.browser_of(w.worker_id) == key]
        return (reported_heaps(tabs), "heap") if tabs else None

    def hold(self, worker_ids: Iterable[str], held: bool) -> None:
        if held:
            self._cleaning.update(worker_ids)
        else:
            self._cleaning.difference_update(worker_ids)
        self._apply_hold()

    def system_percent(self) -> float:
        return self.system().percent

    def data_dir(self) -> Path:
        return self.service.paths.root

    def database(self) -> Path:
        return self.service.paths.database

    def active_job(self) -> str | None:
        job = self.service.active_job
        return job.id if job is not None else None

    def own_bytes(self) -> tuple[int, str]:
        return own_memory(), "uss"
