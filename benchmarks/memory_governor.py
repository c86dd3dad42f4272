"""Memory governor benchmarks: detection latency and the monitor's CPU overhead.

``python -m benchmarks.memory_governor latency`` — a real job service, hub and four simulated
tabs run a job; a scripted synthetic reading jumps over 80 % and back under 60 % ``--flips``
times (every other time climbing through 75 % first, where the monitor samples faster).
Measured per crossing: (a) reading → dispatch held (the governor and the hold applied,
``monitor.detection_latencies``), (b) the moment the scripted memory crossed → dispatch held
(includes waiting for the next sample: 100 ms far from the line, 25 ms within ten points of
it), and whether any attempt started after the hold.

``python -m benchmarks.memory_governor overhead`` — the desktop process's CPU time over
``--seconds`` with the monitor at its default intervals (system memory every 0.1 s; PSS of a
real headless Chromium tree with ``--tabs`` tabs and this process's USS every 30 s when calm,
every 3 s when tight) against the same process without it. Overhead = extra CPU seconds /
wall seconds (one core = 100 %).
Results go to stdout as JSON (paste the figures into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.common import machine, scratch
from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.service import JobService, ServiceSettings
from novelgen_desktop.memory.monitor import MemoryMonitor, MonitorSettings, SyntheticSystem
from novelgen_desktop.memory.probe import BrowserLocator, roots_by_profile, tree_memory
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.sim.remote import run_sim_workers
from novelgen_desktop.sim.worker import SimBehaviour

TOKEN = "bench-token-0123456789abcdefghijkl"
GiB = 2**30


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.5) * 1000, 3),
        "p99_ms": round(at(0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


async def _latency(flips: int, interval: float) -> dict[str, Any]:
    root = scratch("ng-mem-latency-")
    paths = DataPaths(root / "data").ensure()
    run = RunSettings(
        policy=SchedulerPolicy(backoff_base=0.02, backoff_cap=0.2),
        fsync_files=False,
        wait_for_workers=True,
    )
    service = JobService(paths, ServiceSettings(run=run))
    await service.start()
    hub = Hub(TOKEN, service=service)
    port = await hub.start("127.0.0.1", 0)
    level = {"percent": 50.0}
    monitor = MemoryMonitor(
        service,
        hub.connected_workers,
        MonitorSettings(interval=interval),
        system=SyntheticSystem(8 * GiB, 0, offset_percent=lambda: level["percent"]),
        measure_browsers=False,
    )
    stop = asyncio.Event()
    behaviour = SimBehaviour(latency_median=0.02, latency_sigma=0.0, image_size=64, reuse_images=8)
    workers = asyncio.create_task(
        run_sim_workers(f"ws://127.0.0.1:{port}/", TOKEN, 4, behaviour, stop=stop)
    )
    crossing: list[float] = []  # memory jumps from 50 % straight over the line
    rise: list[float] = []  # memory climbs through 75 % first
    leaked = 0
    try:
        await hub.wait_for_workers(4, 10)
        job, _count = await service.submit("latency", _specs(100_000))
        while service.runner is None or service.runner.job.id != job.id:
            await asyncio.sleep(0.05)
        monitor.start()
        await asyncio.sleep(1.0)
        jitter = random.Random(7)
        for flip in range(flips):
            rising = flip % 2 == 1
            await asyncio.sleep(0.3)  # dispatch running
            if rising:  # memory climbs through the last ten points before the line
                level["percent"] = 75.0
                await asyncio.sleep(0.3)
            await asyncio.sleep(jitter.uniform(0.0, 0.1))  # any phase of the sampling
            crossed = time.monotonic()
            level["percent"] = 85.0
            while service.memory_hold[0] is None:
                await asyncio.sleep(0.0005)
            held_at = time.time()
            (rise if rising else crossing).append(time.monotonic() - crossed)
            await asyncio.sleep(0.3)
            runner = service.runner
            if runner is not None:
                leaked += sum(
                    1 for lease in runner.scheduler.leases.values() if lease.started_at > held_at
                )
            level["percent"] = 50.0
            while monitor.state.value != "normal":
                await asyncio.sleep(0.01)
        done = service.runner.progress.done if service.runner is not None else 0
    finally:
        await monitor.stop()
        stop.set()
        await hub.stop()
        await asyncio.wait_for(workers, 20)
        await service.close()
        shutil.rmtree(root, ignore_errors=True)
    into_pressure = [
        latency
        for latency, transition in zip(
            monitor.detection_latencies, monitor.transitions, strict=True
        )
        if transition.state.value == "pressure"
    ]
    return {
        "flips": flips,
        "interval_s": interval,
        "reading_to_hold": _percentiles(list(monitor.detection_latencies)),
        "reading_to_hold_pressure_only": _percentiles(into_pressure),
        "crossing_to_hold_jump_from_50": _percentiles(crossing),
        "crossing_to_hold_rise_through_75": _percentiles(rise),
        "attempts_started_after_hold": leaked,
        "images_done_meanwhile": done,
    }


def _specs(count: int) -> list[Any]:
    from benchmarks.common import synthetic_specs

    return synthetic_specs(count)


class _FixedLocator(BrowserLocator):
    """Every connection comes from the one Chromium this benchmark started (its tree is
    measured for real; only the socket tracing is skipped)."""

    def __init__(self, root: int) -> None:
        super().__init__()
        self.root = root

    def root_for_peer(self, peer_port: int, server_port: int | None = None) -> int | None:
        return self.root


def _chromium(tabs: int, profile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "/usr/bin/chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",  # to open the other tabs (headless takes one URL)
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,  # headless Chromium exits when it reads EOF on a terminal
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _open_tabs(profile_dir: Path, count: int) -> None:
    """More tabs through the DevTools HTTP endpoint (``PUT /json/new``)."""
    port = (profile_dir / "DevToolsActivePort").read_text().split()[0]
    for _ in range(count):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


async def _cpu_for(seconds: float, monitor: MemoryMonitor | None) -> tuple[float, float]:
    """CPU seconds of this process (all threads) and wall seconds over ``seconds``."""
    if monitor is not None:
        monitor.start()
    await asyncio.sleep(1.0)  # warm-up: the first browser read, thread start
    before, wall = os.times(), time.monotonic()
    await asyncio.sleep(seconds)
    after, elapsed = os.times(), time.monotonic() - wall
    if monitor is not None:
        await monitor.stop()
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu, elapsed


async def _overhead(seconds: float, tabs: int) -> dict[str, Any]:
    root = scratch("ng-mem-overhead-")
    paths = DataPaths(root / "data").ensure()
    service = JobService(paths)
    await service.start()
    browser = _chromium(tabs, root / "profile")
    try:
        chromium_root = None
        for _ in range(100):
            found = roots_by_profile(str(root / "profile"))
            if found:
                chromium_root = found[0]
                break
            await asyncio.sleep(0.1)
        if chromium_root is None:
            raise RuntimeError("chromium did not start")
        await asyncio.sleep(2.0)
        _open_tabs(profile_dir=root / "profile", count=tabs - 1)
        await asyncio.sleep(3.0)  # pages loaded
        fake_workers = [
            SimpleNamespace(
                worker_id=f"tab-{i}",
                kind="extension",
                session=SimpleNamespace(
                    ws=SimpleNamespace(remote_address=("127.0.0.1", 40000 + i))
                ),
                last_status=None,
                busy=False,
                can_clean_up=False,
                connected=True,
            )
            for i in range(tabs)
        ]
        started = time.process_time()
        tree = tree_memory(chromium_root)
        tree_ms = (time.process_time() - started) * 1000

        def monitor(settings: MonitorSettings, **options: Any) -> MemoryMonitor:
            return MemoryMonitor(
                service,
                lambda: fake_workers,  # type: ignore[arg-type,return-value]
                settings,
                locator=_FixedLocator(chromium_root),
                **options,
            )

        calm = monitor(MonitorSettings())
        tight = monitor(MonitorSettings(browser_interval=MonitorSettings().browser_interval_tight))
        baseline_cpu, baseline_wall = await _cpu_for(seconds, None)
        calm_cpu, calm_wall = await _cpu_for(seconds, calm)
        tight_cpu, tight_wall = await _cpu_for(seconds, tight)
        # Memory at 75 %: within ten points of the pause line (system read every 25 ms) and
        # over the resume line (browser PSS every 3 s): the most the watch costs short of a hold.
        near = monitor(MonitorSettings(), system=SyntheticSystem(8 * GiB, 6 * GiB))
        near_cpu, near_wall = await _cpu_for(seconds, near)
        reading = tight.last_reading
        browsers = [
            {"key": b.key, "mib": round(b.bytes / 2**20), "processes": b.processes}
            for b in (reading.browsers if reading is not None else ())
        ]
    finally:
        browser.terminate()
        browser.wait(10)
        await service.close()
        shutil.rmtree(root, ignore_errors=True)
    base = baseline_cpu / baseline_wall
    return {
        "seconds": seconds,
        "interval_s": MonitorSettings().interval,
        "browser_interval_s": MonitorSettings().browser_interval,
        "browser_interval_tight_s": MonitorSettings().browser_interval_tight,
        "chromium_tabs": tabs,
        "chromium_tree": None
        if tree is None
        else {"processes": tree.processes, "pss_mib": round(tree.pss_bytes / 2**20)},
        "tree_read_cpu_ms": round(tree_ms, 2),
        "browsers_seen": browsers,
        "cpu_percent_without": round(base * 100, 3),
        "overhead_percent_calm": round((calm_cpu / calm_wall - base) * 100, 3),
        "overhead_percent_tight": round((tight_cpu / tight_wall - base) * 100, 3),
        "overhead_percent_near_the_line": round((near_cpu / near_wall - base) * 100, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_governor")
    commands = parser.add_subparsers(dest="command", required=True)
    latency = commands.add_parser("latency")
    latency.add_argument("--flips", type=int, default=50)
    latency.add_argument("--interval", type=float, default=MonitorSettings().interval)
    overhead = commands.add_parser("overhead")
    overhead.add_argument("--seconds", type=float, default=60.0)
    overhead.add_argument("--tabs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "latency":
        result = asyncio.run(_latency(args.flips, args.interval))
    else:
        result = asyncio.run(_overhead(args.seconds, args.tabs))
    print(json.dumps({"machine": machine(), args.command: result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
