"""Memory and throughput figures: synthetic probes for the maths and bounds, psutil for the
real readings (this process, and a process tree spawned under a browser's name)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from novelgen_desktop.desktop.metrics import (
    MEASURE_NONE,
    MEASURE_PSS,
    JobProgress,
    MemorySample,
    MetricsRecorder,
    PsutilProbe,
    SeriesBuffer,
    ThroughputTracker,
)


class FakeProbe:
    """Readings from a script; remembers which thread read them."""

    def __init__(self) -> None:
        self.n = 0
        self.threads: set[str] = set()

    def read(self) -> MemorySample:
        self.n += 1
        self.threads.add(threading.current_thread().name)
        return MemorySample(
            ts=1000.0 + self.n,
            system_percent=50.0 + self.n % 10,
            system_used_bytes=8_000_000_000,
            system_total_bytes=16_000_000_000,
            desktop_rss_bytes=200_000_000,
            browser_pss_bytes=1_000_000_000 + self.n,
            browser_processes=5,
            browser_measure=MEASURE_PSS,
        )


# --- the ring buffer ----------------------------------------------------------------------


def test_series_buffer_keeps_the_newest_points_in_order() -> None:
    buf = SeriesBuffer(5)
    assert len(buf) == 0 and buf.last() is None
    for i in range(3):
        buf.append(float(i), float(i * 10))
    assert buf.times().tolist() == [0.0, 1.0, 2.0]
    for i in range(3, 12):
        buf.append(float(i), float(i * 10))
    assert len(buf) == 5
    assert buf.times().tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert buf.values().tolist() == [70.0, 80.0, 90.0, 100.0, 110.0]
    assert buf.last() == (11.0, 110.0)


def test_series_buffer_arrays_are_copies() -> None:
    buf = SeriesBuffer(3)
    buf.append(1.0, 1.0)
    times, _values = buf.arrays()
    times[0] = 99.0
    assert buf.times().tolist() == [1.0]
    buf.clear()
    assert len(buf) == 0 and buf.times().size == 0


def test_series_buffer_refuses_no_capacity() -> None:
    with pytest.raises(ValueError):
        SeriesBuffer(0)


# --- throughput ---------------------------------------------------------------------------


def test_throughput_is_images_per_minute_over_the_window() -> None:
    tracker = ThroughputTracker(window=60.0, capacity=100)
    assert tracker.observe(0.0, 0) == 0.0
    # 2 images a second for 30 s: 120 a minute.
    for second in range(1, 31):
        rate = tracker.observe(float(second), second * 2)
    assert rate == pytest.approx(120.0)
    # Then a stall: after the window has passed, nothing is being made.
    for second in range(31, 100):
        rate = tracker.observe(float(second), 60)
    assert rate == 0.0
    assert tracker.done == 60


def test_throughput_window_interpolates_its_start() -> None:
    tracker = ThroughputTracker(window=10.0)
    tracker.observe(0.0, 0)
    tracker.observe(20.0, 200)  # 10 a second, observed rarely
    # Window [15, 25]: done at 15 interpolates to 150, at 25 it is 250.
    assert tracker.observe(25.0, 250) == pytest.approx(600.0)


def test_throughput_starts_again_when_done_goes_down() -> None:
    tracker = ThroughputTracker(window=60.0)
    tracker.observe(0.0, 0)
    tracker.observe(10.0, 100)
    tracker.observe(11.0, 3)  # another job
    assert len(tracker.cumulative) == 1
    assert tracker.rate() == 0.0


def test_throughput_history_is_bounded() -> None:
    tracker = ThroughputTracker(window=60.0, capacity=50)
    for second in range(1000):
        tracker.observe(float(second), second)
    assert len(tracker.cumulative) == 50
    assert len(tracker.rates) == 50
    assert tracker.cumulative.times()[0] == 950.0
    assert tracker.rate() == pytest.approx(60.0)
    assert len(tracker._recent) <= 62  # only the window is kept for the rate


# --- the recorder -------------------------------------------------------------------------


def test_recorder_samples_on_its_own_thread_and_adds_tab_heaps() -> None:
    probe = FakeProbe()
    heaps = {"w1": 50_000_000, "w2": 70_000_000}
    progress = [JobProgress("job-a", 0, 10, "a")]

    async def source() -> JobProgress | None:
        return progress[-1]

    recorder = MetricsRecorder(probe, capacity=10, tab_heaps=lambda: heaps, progress=source)

    async def go() -> MemorySample:
        first = await recorder.sample_once()
        progress.append(JobProgress("job-a", 4, 10, "a"))
        await recorder.sample_once()
        return first

    first = asyncio.run(go())
    recorder.stop()
    assert first.tab_heaps == heaps
    assert probe.threads and all(t.startswith("metrics") for t in probe.threads)
    assert len(recorder.memory.system_percent) == 2
    assert set(recorder.memory.tabs) == {"w1", "w2"}
    assert recorder.memory.tabs["w2"].values().tolist() == [70_000_000.0, 70_000_000.0]
    assert recorder.throughput.job_id == "job-a"
    assert recorder.throughput.done == 4
    assert recorder.throughput.total == 10
    assert recorder.throughput.rate() == pytest.approx(240.0)  # 4 images in 1 s
    assert recorder.version == 4


def test_recorder_history_stays_bounded() -> None:
    probe = FakeProbe()
    count = {"n": 0}

    def heaps() -> dict[str, int]:
        count["n"] += 1
        return {f"tab-{count['n']}": 1}  # a new tab every sample

    recorder = MetricsRecorder(probe, capacity=20, tab_heaps=heaps)

    async def go() -> None:
        for _ in range(200):
            await recorder.sample_once()

    asyncio.run(go())
    recorder.stop()
    memory = recorder.memory
    for series in (memory.system_percent, memory.browser, memory.desktop, memory.system_used):
        assert len(series) == 20
    assert len(memory.tabs) == memory.max_tabs
    assert "tab-200" in memory.tabs and "tab-1" not in memory.tabs


def test_recorder_switches_job_and_runs_at_its_interval() -> None:
    probe = FakeProbe()
    recorder = MetricsRecorder(probe, interval=0.01, capacity=100)
    recorder.record_progress(JobProgress("a", 5, 10), ts=1.0)
    recorder.record_progress(JobProgress("b", 7, 10), ts=2.0)
    assert recorder.throughput.job_id == "b"
    assert len(recorder.throughput.cumulative) == 1

    async def go() -> None:
        recorder.start()
        recorder.start()  # no second loop
        while len(recorder.memory.browser) < 5:
            await asyncio.sleep(0.01)
        recorder.stop()

    asyncio.run(go())
    assert not recorder.running
    assert len(recorder.memory.browser) >= 5


def test_recorder_survives_a_failing_reading() -> None:
    class Broken:
        def read(self) -> MemorySample:
            raise RuntimeError("no /proc here")

    recorder = MetricsRecorder(Broken(), interval=0.01)

    async def go() -> None:
        recorder.start()
        await asyncio.sleep(0.05)
        assert recorder.running  # the loop logs and goes on
        recorder.stop()

    asyncio.run(go())
    assert recorder.last is None


# --- psutil -------------------------------------------------------------------------------


def test_psutil_probe_reads_sane_numbers_for_this_process() -> None:
    probe = PsutilProbe(browser_names=("no-such-browser-here",))
    sample = probe.read()
    assert 0.0 < sample.system_percent <= 100.0
    assert 0 < sample.system_used_bytes <= sample.system_total_bytes
    assert 10 * 2**20 < sample.desktop_rss_bytes < sample.system_total_bytes
    assert sample.desktop_rss_bytes == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)
    assert sample.browser_pss_bytes == 0
    assert sample.browser_processes == 0
    assert sample.browser_measure == MEASURE_NONE
    assert abs(sample.ts - time.time()) < 60


# Unique per test process (and within Linux's 15-character process names): another test run
# on the same machine must not count as this one's browser.
FAKE_BROWSER = f"fakebr{os.getpid() % 10**9}"


@pytest.fixture
def fake_browser(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process tree rooted at a process named ``fakebrowser``: the root (a shell script),
    a child also named ``fakebrowser`` (a copy of sleep: it must not count as a second
    browser) and a ``sleep`` child (a helper with another name, as Chromium's are)."""
    sleep = shutil.which("sleep")
    if sleep is None:
        pytest.skip("no sleep binary")
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(sleep, sub / FAKE_BROWSER)
    script = tmp_path / FAKE_BROWSER
    script.write_text(f'#!/bin/sh\n"{sub / FAKE_BROWSER}" 60 &\nsleep 60 &\nwait\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    proc = subprocess.Popen([str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(proc.pid).children()) < 2:
            assert time.monotonic() < deadline, "the fake browser's children did not start"
            time.sleep(0.01)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(not psutil.LINUX, reason="PSS is read from /proc on Linux")
def test_psutil_probe_sums_pss_over_a_browser_process_tree(
    fake_browser: subprocess.Popen[bytes],
) -> None:
    root = psutil.Process(fake_browser.pid)
    children = root.children(recursive=True)
    expected = {root.pid} | {c.pid for c in children}
    assert len(expected) == 3

    probe = PsutilProbe(browser_names=(FAKE_BROWSER,), refresh_every=100)
    sample = probe.read()
    assert probe.browser_pids == expected
    assert sample.browser_processes == 3
    assert sample.browser_measure == MEASURE_PSS
    pss = sum(psutil.Process(pid).memory_full_info().pss for pid in expected)
    rss = sum(psutil.Process(pid).memory_info().rss for pid in expected)
    assert 0 < sample.browser_pss_bytes <= rss
    assert sample.browser_pss_bytes == pytest.approx(pss, rel=0.5)

    # A process of the tree vanishes between two reads: the read goes on without it, and the
    # next one finds the tree again.
    victim = next(c for c in children if c.name() == "sleep")
    victim.kill()
    victim.wait(5)
    after = probe.read()
    assert after.browser_processes == 2
    assert probe.browser_pids == expected - {victim.pid}
    assert probe.read().browser_processes == 2


def test_the_window_charts_what_the_memory_monitor_measured() -> None:
    """MonitorProbe: browsers' PSS and the desktop's memory from the monitor's last reading
    (tabs only known by their heaps are not a browser figure), the system read fresh."""
    from types import SimpleNamespace

    from novelgen_desktop.desktop.metrics import MonitorProbe
    from novelgen_desktop.memory.readings import BrowserMemory, MemoryReading

    reading = MemoryReading(
        ts=1.0,
        system_percent=12.0,
        desktop_bytes=77,
        browsers=(
            BrowserMemory("pid:1", 600, measure="pss", processes=9),
            BrowserMemory("pid:2", 400, measure="pss", processes=5),
            BrowserMemory("tabs:simulated", 999, measure="heap"),
        ),
    )
    monitor = SimpleNamespace(last_reading=reading)
    sample = MonitorProbe(monitor, clock=lambda: 5.0).read()  # type: ignore[arg-type]
    assert (sample.browser_pss_bytes, sample.browser_processes) == (1000, 14)
    assert sample.browser_measure == "pss" and sample.desktop_rss_bytes == 77
    assert 0 < sample.system_percent < 100 and sample.ts == 5.0
    empty = MonitorProbe(SimpleNamespace(last_reading=None)).read()  # type: ignore[arg-type]
    assert empty.browser_pss_bytes == 0 and empty.browser_measure == "none"
    assert empty.desktop_rss_bytes > 0
