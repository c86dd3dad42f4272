"""Memory and throughput figures for the desktop's charts, without Qt.

Why this exists: ten ChatGPT tabs can take several GB, and the author needs to see whether the
machine is near the point where dispatch pauses (``memory_pause_percent``) and which part is
to blame — the browser, a single tab's page, or this app. Chromium is many processes sharing
pages, so the browser figure is the PSS of its whole process tree (RSS would count the shared
pages once per process: about three times too much for a browser with a few tabs). The
readings themselves come from :mod:`novelgen_desktop.memory.probe`, which the memory governor
shares.

Finding a browser's processes reads every process on the machine, so :class:`PsutilProbe`
keeps the process list and only looks for new processes every few samples, and
:class:`MetricsRecorder` runs it on its own thread so the window never waits for it. Every
history is a fixed-size ring: a week-long run keeps the last hour, not the week.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import psutil

from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.memory.probe import (
    MEASURE_MIXED,
    MEASURE_NONE,
    MEASURE_PSS,
    MEASURE_RSS,
    ProcessMemory,
    measure_of,
    own_memory,
    read_process,
    read_system,
    roots_by_profile,
    tree_processes,
)

if TYPE_CHECKING:
    from novelgen_desktop.desktop.session import DesktopSession
    from novelgen_desktop.memory.monitor import MemoryMonitor

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

BROWSER_NAMES: tuple[str, ...] = ("chrome", "chromium", "chromium-browser", "google chrome")
"""Process names of a browser's root process (compared without case or ``.exe``)."""

DEFAULT_CAPACITY = 3600
"""Samples kept per series: one hour at one sample a second."""

MAX_TAB_SERIES = 16
"""Per-tab heap lines kept at once (ten tabs plus some that went away); the stalest goes."""


@dataclass(frozen=True, slots=True)
class MemorySample:
    """One reading of the machine's, the browser's and this app's memory."""

    ts: float  # wall-clock time
    system_percent: float  # what the dispatch thresholds compare against
    system_used_bytes: int  # total minus available
    system_total_bytes: int
    desktop_rss_bytes: int
    browser_pss_bytes: int  # over every Chrome/Chromium process tree; see browser_measure
    browser_processes: int = 0
    browser_measure: str = MEASURE_NONE  # MEASURE_PSS, MEASURE_RSS, MEASURE_MIXED or NONE
    tab_heaps: Mapping[str, int] = field(default_factory=dict)  # worker_id -> JS heap bytes


class MemoryProbe(Protocol):
    """Something that reads memory figures (psutil, or a test's synthetic readings). It is
    called on a worker thread; ``tab_heaps`` is filled in by the recorder."""

    def read(self) -> MemorySample: ...


class MonitorProbe:
    """Chart figures from the memory monitor's readings (``memory.monitor``), so the window
    does not measure the browsers a second time: a Chromium tree's PSS costs ~40 ms of CPU,
    which the monitor spends every 30 s while memory is calm and every 3 s while it is tight.
    The system figure is read fresh (~40 µs)."""

    def __init__(self, monitor: MemoryMonitor, *, clock: Callable[[], float] = time.time) -> None:
        self.monitor = monitor
        self.clock = clock

    def read(self) -> MemorySample:
        system = read_system()
        reading = self.monitor.last_reading  # one reference, replaced whole: thread-safe
        browsers = [b for b in reading.browsers if b.measure != "heap"] if reading else []
        desktop = reading.desktop_bytes if reading is not None else None
        return MemorySample(
            ts=self.clock(),
            system_percent=system.percent,
            system_used_bytes=system.used_bytes,
            system_total_bytes=system.total_bytes,
            desktop_rss_bytes=desktop if desktop is not None else own_memory(),
            browser_pss_bytes=sum(b.bytes for b in browsers),
            browser_processes=sum(b.processes for b in browsers),
            browser_measure=measure_of(browsers),
        )


class PsutilProbe:
    """The real probe: the machine's memory, this process's RSS and the PSS of every browser
    process tree.

    ``browser_names`` says which process names are a browser (tests pass the name of a
    process tree they spawn). The tree is found again every ``refresh_every`` reads, and at
    once after one of its processes vanished; in between only the known processes are read.
    """

    def __init__(
        self,
        browser_names: Iterable[str] = BROWSER_NAMES,
        *,
        refresh_every: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.browser_names = frozenset(
            n.strip().lower().removesuffix(".exe") for n in browser_names
        )
        self.refresh_every = max(1, refresh_every)
        self.clock = clock
        self._me = psutil.Process()
        self._tree: list[psutil.Process] = []
        self._reads_since_refresh = self.refresh_every  # find the tree on the first read

    def find_browser_processes(self) -> list[psutil.Process]:
        """Every process of every browser tree: each root browser process
        (:func:`~novelgen_desktop.memory.probe.roots_by_profile`, any profile) and all its
        descendants (Chromium's zygotes and renderers, whatever their names)."""
        tree: dict[int, psutil.Process] = {}
        for root_pid in roots_by_profile(names=self.browser_names):
            for process in tree_processes(root_pid) or ():
                tree.setdefault(process.pid, process)
        return list(tree.values())

    @property
    def browser_pids(self) -> set[int]:
        """The processes summed by the last read."""
        return {p.pid for p in self._tree}

    def _browser_memory(self) -> tuple[int, int, str]:
        if self._reads_since_refresh >= self.refresh_every:
            self._tree = self.find_browser_processes()
            self._reads_since_refresh = 0
        self._reads_since_refresh += 1
        readings: list[ProcessMemory] = []
        alive: list[psutil.Process] = []
        for process in self._tree:
            reading = read_process(process)
            if reading is None:
                if not process.is_running():  # gone, not merely unreadable: look again
                    self._reads_since_refresh = self.refresh_every
                continue
            readings.append(reading)
            alive.append(process)
        self._tree = alive
        return sum(r.pss_bytes for r in readings), len(readings), measure_of(readings)

    def read(self) -> MemorySample:
        system = read_system()
        try:
            desktop = int(self._me.memory_info().rss)
        except psutil.Error:
            desktop = 0
        browser, processes, measure = self._browser_memory()
        return MemorySample(
            ts=self.clock(),
            system_percent=system.percent,
            system_used_bytes=system.used_bytes,
            system_total_bytes=system.total_bytes,
            desktop_rss_bytes=desktop,
            browser_pss_bytes=browser,
            browser_processes=processes,
            browser_measure=measure,
        )


class SeriesBuffer:
    """A fixed-capacity ring of (time, value) points; the oldest point goes first.

    numpy arrays rather than a deque: the charts hand them to pyqtgraph as they are, and a
    full hour of points is copied out in one slice instead of 3,600 Python floats.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._t = np.zeros(capacity, dtype=np.float64)
        self._v = np.zeros(capacity, dtype=np.float64)
        self._next = 0  # where the next point goes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, ts: float, value: float) -> None:
        self._t[self._next] = ts
        self._v[self._next] = value
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def clear(self) -> None:
        self._next = 0
        self._count = 0

    def _ordered(self, data: FloatArray) -> FloatArray:
        if self._count < self.capacity:
            return data[: self._count].copy()
        return np.concatenate((data[self._next :], data[: self._next]))

    def times(self) -> FloatArray:
        """Oldest first (a copy: the ring keeps changing)."""
        return self._ordered(self._t)

    def values(self) -> FloatArray:
        return self._ordered(self._v)

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        return self.times(), self.values()

    def last(self) -> tuple[float, float] | None:
        if self._count == 0:
            return None
        i = (self._next - 1) % self.capacity
        return float(self._t[i]), float(self._v[i])


class ThroughputTracker:
    """Images per minute over a sliding window, and cumulative progress over time, from
    (time, done count) observations of one job.

    The job's own ETA figure comes from the engine; this one is what the chart draws: the
    rate over the last ``window`` seconds, so a burst or a stall shows within a minute. A
    done count that goes down (another job, a job retried from scratch) starts again.
    """

    def __init__(self, window: float = 60.0, capacity: int = DEFAULT_CAPACITY) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.window = window
        self.job_id: str | None = None
        self.total: int | None = None
        self.cumulative = SeriesBuffer(capacity)  # (ts, done)
        self.rates = SeriesBuffer(capacity)  # (ts, images/min)
        self._recent: deque[tuple[float, int]] = deque()

    def reset(self, job_id: str | None = None) -> None:
        self.job_id = job_id
        self.total = None
        self.cumulative.clear()
        self.rates.clear()
        self._recent.clear()

    def observe(self, ts: float, done: int, total: int | None = None) -> float:
        """Record the done count at ``ts``; returns the images/min now."""
        if self._recent and (done < self._recent[-1][1] or ts < self._recent[-1][0]):
            self.reset(self.job_id)
        if total is not None:
            self.total = total
        self._recent.append((ts, done))
        # Keep one point at or before the window's start, so the rate spans the whole window.
        while len(self._recent) > 2 and self._recent[1][0] <= ts - self.window:
            self._recent.popleft()
        rate = self.rate()
        self.cumulative.append(ts, float(done))
        self.rates.append(ts, rate)
        return rate

    def rate(self) -> float:
        """Images per minute over the window (0 until two observations are apart)."""
        if len(self._recent) < 2:
            return 0.0
        t_end, d_end = self._recent[-1]
        t_start, d_first = self._recent[0]
        d_start = float(d_first)
        if t_start < t_end - self.window:  # the kept point before the window: interpolate
            t_next, d_next = self._recent[1]
            cut = t_end - self.window
            share = (cut - t_start) / (t_next - t_start) if t_next > t_start else 1.0
            d_start += share * (d_next - d_first)
            t_start = cut
        span = t_end - t_start
        if span <= 0:
            return 0.0
        return max(0.0, (d_end - d_start) * 60.0 / span)

    @property
    def done(self) -> int | None:
        last = self.cumulative.last()
        return int(last[1]) if last is not None else None


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What the recorder asks of a progress source every interval."""

    job_id: str
    done: int
    total: int
    name: str = ""


ProgressSource = Callable[[], Awaitable[JobProgress | None]]
TabHeapSource = Callable[[], Mapping[str, int]]


class MemorySeries:
    """The memory chart's history: one ring per line, per-tab rings made as tabs appear."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_tabs: int = MAX_TAB_SERIES) -> None:
        self.capacity = capacity
        self.max_tabs = max_tabs
        self.system_percent = SeriesBuffer(capacity)
        self.system_used = SeriesBuffer(capacity)
        self.browser = SeriesBuffer(capacity)
        self.desktop = SeriesBuffer(capacity)
        self.tabs: dict[str, SeriesBuffer] = {}

    def add(self, sample: MemorySample) -> None:
        self.system_percent.append(sample.ts, sample.system_percent)
        self.system_used.append(sample.ts, float(sample.system_used_bytes))
        self.browser.append(sample.ts, float(sample.browser_pss_bytes))
        self.desktop.append(sample.ts, float(sample.desktop_rss_bytes))
        for worker_id, heap in sample.tab_heaps.items():
            series = self.tabs.get(worker_id)
            if series is None:
                if len(self.tabs) >= self.max_tabs:
                    stalest = min(self.tabs, key=lambda w: (self.tabs[w].last() or (0.0, 0.0))[0])
                    del self.tabs[stalest]
                series = self.tabs[worker_id] = SeriesBuffer(self.capacity)
            series.append(sample.ts, float(heap))


class MetricsRecorder:
    """Samples memory (and, given a progress source, one job's done count) every
    ``interval`` seconds into bounded series the charts read.

    The probe runs on a thread of its own (PSS takes milliseconds per process and must
    neither block the window nor queue behind the store's thread); tab heaps and progress are
    read on the event loop, where the session lives. ``version`` grows with every sample so a
    view can skip redrawing when nothing new arrived.
    """

    def __init__(
        self,
        probe: MemoryProbe | None = None,
        *,
        interval: float = 1.0,
        capacity: int = DEFAULT_CAPACITY,
        throughput_window: float = 60.0,
        tab_heaps: TabHeapSource | None = None,
        progress: ProgressSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.probe: MemoryProbe = probe if probe is not None else PsutilProbe(clock=clock)
        self.interval = interval
        self.clock = clock
        self.tab_heaps = tab_heaps
        self.progress = progress
        self.memory = MemorySeries(capacity)
        self.throughput = ThroughputTracker(throughput_window, capacity)
        self.last: MemorySample | None = None
        self.last_progress: JobProgress | None = None
        self.version = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[MemorySample], None]] = []

    @classmethod
    def for_session(
        cls,
        session: DesktopSession,
        *,
        job_id: Callable[[], str | None] = lambda: None,
        probe: MemoryProbe | None = None,
        interval: float = 1.0,
        capacity: int = DEFAULT_CAPACITY,
        throughput_window: float = 60.0,
    ) -> MetricsRecorder:
        """A recorder fed by a desktop session: tab heaps from its workers, progress of the
        job ``job_id()`` names, else of the running job, else of the job followed last (a
        finished job's curve stays up)."""
        recorder: MetricsRecorder

        def heaps() -> dict[str, int]:
            return {
                row.worker_id: row.memory_bytes
                for row in session.worker_rows()
                if row.connected and row.memory_bytes is not None
            }

        async def progress() -> JobProgress | None:
            service = session.service
            wanted = job_id()
            if not wanted and service.active_job is not None:
                wanted = service.active_job.id
            wanted = wanted or recorder.throughput.job_id
            if not wanted:
                return None
            try:
                view = await service.view(wanted, workers=False)
            except NovelGenError:  # the job was deleted: nothing to follow
                return None
            return JobProgress(view.job_id, view.done, view.total, view.name)

        if probe is None and session.monitor is not None:
            probe = MonitorProbe(session.monitor)
        recorder = cls(
            probe,
            interval=interval,
            capacity=capacity,
            throughput_window=throughput_window,
            tab_heaps=heaps,
            progress=progress,
        )
        return recorder

    def on_sample(self, callback: Callable[[MemorySample], None]) -> None:
        self._callbacks.append(callback)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Sample every ``interval`` on the current event loop (again: no effect)."""
        if self.running:
            return
        self._task = asyncio.ensure_future(self._loop())

    def stop(self) -> None:
        """Stop sampling; a read in progress on the thread finishes and is dropped."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed reading must not end the charts for the session
                log.exception("metrics sample failed")
            # A fixed rate, not "interval after the last one finished": no drift, and a slow
            # read skips ahead instead of queueing samples.
            next_at += self.interval
            now = loop.time()
            if next_at < now:
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)

    async def sample_once(self) -> MemorySample:
        """Read memory (on the probe's thread) and progress; append both to the series."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")
        loop = asyncio.get_running_loop()
        sample = await loop.run_in_executor(self._executor, self.probe.read)
        if self.tab_heaps is not None:
            try:
                heaps = dict(self.tab_heaps())
            except Exception:
                log.exception("reading the tabs' heaps failed")
                heaps = {}
            sample = replace(sample, tab_heaps=heaps)
        self.record(sample)
        if self.progress is not None:
            progress = await self.progress()
            if progress is not None:
                self.record_progress(progress, sample.ts)
        return sample

    def record(self, sample: MemorySample) -> None:
        """Add a memory sample taken elsewhere (tests, or a caller with its own probe)."""
        self.last = sample
        self.memory.add(sample)
        self.version += 1
        for callback in list(self._callbacks):
            with contextlib.suppress(Exception):
                callback(sample)

    def record_progress(self, progress: JobProgress, ts: float | None = None) -> None:
        if progress.job_id != self.throughput.job_id:
            self.throughput.reset(progress.job_id)
        self.last_progress = progress
        self.throughput.observe(self.clock() if ts is None else ts, progress.done, progress.total)
        self.version += 1


__all__ = [
    "BROWSER_NAMES",
    "DEFAULT_CAPACITY",
    "MEASURE_MIXED",
    "MEASURE_NONE",
    "MEASURE_PSS",
    "MEASURE_RSS",
    "JobProgress",
    "MemoryProbe",
    "MemorySample",
    "MemorySeries",
    "MetricsRecorder",
    "PsutilProbe",
    "SeriesBuffer",
    "ThroughputTracker",
]
