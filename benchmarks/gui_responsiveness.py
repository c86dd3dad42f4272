"""Responsiveness of the desktop window while the engine works flat out.

The window, the hub, the engine and the simulated tabs share one qasync loop, so anything slow
in a view (a table reset of 10,000 rows, a chart re-created every result) shows up as loop
lag: the delay between when a 10 ms timer should fire and when it does. This run opens the
real main window on a job of ``--tasks`` tasks (10,000 by default, the task table showing
all of them), connects ``--workers`` zero-latency simulated tabs over the real WebSocket
protocol, and while they work measures:

* loop lag: a coroutine sleeps 10 ms in a loop and records how late each wake-up is
  (p50/p99/max); the target is p99 < 50 ms;
* the desktop process's peak RSS (sampled every 100 ms, and ``ru_maxrss`` at the end);
* images per second, to show the engine was really busy.

The tab shown is switched every few seconds (tasks → workers → charts → log → gallery) so
every view paints during the run. Run from the repository root:

    .venv/bin/python -m benchmarks.gui_responsiveness [--tasks 10000] [--workers 10] [--json F]

It uses ``QT_QPA_PLATFORM=offscreen`` unless a display is set (run it under ``xvfb-run`` to
measure with a real X server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import replace
from typing import Any

import psutil

from benchmarks.common import machine, scratch, synthetic_specs

os.environ.setdefault("QT_API", "pyside6")
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    tasks: int,
    workers: int,
    switch_every: float,
    window_open: bool = True,
    tab: str | None = None,
) -> dict[str, Any]:
    from novelgen_desktop.desktop.session import DesktopSession
    from novelgen_desktop.desktop.settings import DesktopSettings
    from novelgen_desktop.engine.model import JobState
    from novelgen_desktop.gui.bridge import EngineBridge
    from novelgen_desktop.gui.main_window import MainWindow
    from novelgen_desktop.paths import DataPaths
    from novelgen_desktop.sim.worker import SimBehaviour

    paths = DataPaths(scratch("novelgen-gui-bench-"))
    settings = replace(DesktopSettings(), hub_port=0, default_workers=min(workers, 10))
    session = DesktopSession(paths, settings)
    await session.start(port=0, simulate=False)
    bridge = EngineBridge(session)
    window = MainWindow(bridge)
    if window_open:
        window.show()
        bridge.start_ticking()
    job, _count = await session.service.submit("bench", synthetic_specs(tasks))
    bridge.select_job(job.id)
    process = psutil.Process()
    peak_rss = process.memory_info().rss
    lags: list[float] = []
    lags_by_tab: dict[str, list[float]] = {}
    stop = asyncio.Event()

    async def lag_probe() -> None:
        interval = 0.010
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(interval)
            lag = max(0.0, time.perf_counter() - before - interval)
            lags.append(lag)
            tab = window.tabs.tabText(window.tabs.currentIndex()) if window_open else "none"
            lags_by_tab.setdefault(tab, []).append(lag)

    async def rss_probe() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            peak_rss = max(peak_rss, process.memory_info().rss)
            await asyncio.sleep(0.1)

    async def switch_tabs() -> None:
        index = 0
        if tab is not None:  # one tab all along, as an author watching it would
            names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
            window.tabs.setCurrentIndex(names.index(tab))
            return
        while not stop.is_set() and window_open:
            window.tabs.setCurrentIndex(index % window.tabs.count())
            index += 1
            await asyncio.sleep(switch_every)

    probes = [asyncio.create_task(p()) for p in (lag_probe, rss_probe, switch_tabs)]
    await asyncio.sleep(1.0)  # the window's first paint and the table's first fill
    lags.clear()
    lags_by_tab.clear()
    started = time.perf_counter()
    session.start_simulated_workers(
        workers,
        SimBehaviour(latency_median=0.0, latency_sigma=0.0, image_size=64, reuse_images=16),
    )
    while True:
        view = await session.service.view(job.id)
        if view.state is not JobState.RUNNING or view.done >= tasks:
            break
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)  # the views catch up with the end
    stop.set()
    for probe in probes:
        probe.cancel()
    await asyncio.gather(*probes, return_exceptions=True)
    final = await session.service.view(job.id)
    window.request_quit()
    done = asyncio.Event()
    window.quit_finished.connect(done.set)
    await asyncio.wait_for(done.wait(), 60)
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "tasks": tasks,
        "workers": workers,
        "done": final.done,
        "elapsed_s": round(elapsed, 2),
        "images_per_s": round(final.done / elapsed, 1) if elapsed else 0.0,
        "lag_samples": len(lags),
        "lag_p50_ms": round(percentile(lags, 0.50) * 1000, 2),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 2),
        "lag_max_ms": round(max(lags, default=0.0) * 1000, 2),
        "lag_p99_ms_by_tab": {
            tab: round(percentile(values, 0.99) * 1000, 2) for tab, values in lags_by_tab.items()
        },
        "peak_rss_mib": round(peak_rss / 2**20, 1),
        "ru_maxrss_mib": round(max_rss_kib / 1024, 1),
        "platform_plugin": os.environ.get("QT_QPA_PLATFORM") or "xcb",
        "window_open": window_open,
        "tab": tab or f"switching every {switch_every:g} s",
    }


def run(
    tasks: int,
    workers: int,
    switch_every: float = 3.0,
    window_open: bool = True,
    tab: str | None = None,
) -> dict[str, Any]:
    import qasync

    from novelgen_desktop.gui.qt import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    assert isinstance(app, QtWidgets.QApplication)
    app.setQuitOnLastWindowClosed(False)  # as the app: quitting ends the loop, not a close
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        result: dict[str, Any] = loop.run_until_complete(
            measure(tasks, workers, switch_every, window_open, tab)
        )
        return result
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--switch-every", type=float, default=3.0, help="seconds per tab")
    parser.add_argument(
        "--no-window",
        action="store_true",
        help="baseline: the same run with the window never shown (the engine's own lag)",
    )
    parser.add_argument(
        "--tab",
        choices=("Tasks", "Workers", "Charts", "Log", "Gallery"),
        help="stay on this tab (default: switch tabs every --switch-every seconds)",
    )
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = {
        "machine": machine(),
        **run(args.tasks, args.workers, args.switch_every, not args.no_window, args.tab),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
