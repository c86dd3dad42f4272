"""Screenshots of the desktop window during a simulated run, for the README and docs/gui.md.

Starts an X server (Xvfb) and a tray host (trayer) of its own, opens the real window on the
xcb platform (not offscreen: what an author sees), imports the sample script
``examples/the-lighthouse-keeper.script`` the way a drop does, runs it with simulated tabs
(a few failures, refusals and a rate limit, so the log and the charts have something to
show), and once the run is well under way grabs the screen for each tab:

    docs/images/gui-tasks.png     the job list and the task table
    docs/images/gui-workers.png   the workers table
    docs/images/gui-charts.png    memory, throughput and progress charts
    docs/images/gui-log.png       the event log with grouped errors
    docs/images/gui-gallery.png   the gallery of finished panels
    docs/images/gui-flags.png     Jobs → Feature flags…: a kill switch rolled back
    docs/images/gui-flags-experiments.png   the fresh_chat experiment compared on the run

Run: ``.venv/bin/python packaging/screenshot_gui.py [--out DIR] [--only NAME …] [--keep-data]``
(needs ``xvfb`` and ``trayer``: ``bash scripts/setup.sh --tests`` installs them). With
``flags`` among the shots, the run splits ``fresh_chat`` into two variants from the start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCRIPT = ROOT / "examples" / "the-lighthouse-keeper.script"
DEFAULT_OUT = ROOT / "docs" / "images"
SHOTS = ("tasks", "workers", "charts", "log", "gallery")
EXTRA_SHOTS = ("flags",)  # the flags window: gui-flags.png and gui-flags-experiments.png


@contextlib.contextmanager
def virtual_display(width: int = 1440, height: int = 900) -> Iterator[str]:
    """An Xvfb server on a free display number, with trayer as its tray host."""
    if shutil.which("Xvfb") is None:
        raise SystemExit("screenshot_gui: Xvfb is missing (bash scripts/setup.sh --tests)")
    for number in range(90, 140):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            break
    display = f":{number}"
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"screenshot_gui: Xvfb did not start on {display}")
        time.sleep(0.05)
    tray = None
    if shutil.which("trayer"):
        tray = subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request"],
            env={**os.environ, "DISPLAY": display},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield display
    finally:
        for process in (tray, server):
            if process is not None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)


async def take(
    out: Path, data_dir: Path, shots: tuple[str, ...] = SHOTS + EXTRA_SHOTS
) -> list[Path]:
    from novelgen_desktop.desktop.session import DesktopSession
    from novelgen_desktop.desktop.settings import DesktopSettings
    from novelgen_desktop.flags.document import FlagSetting, Variant
    from novelgen_desktop.gui.bridge import EngineBridge
    from novelgen_desktop.gui.flags_view import open_flags_window
    from novelgen_desktop.gui.main_window import MainWindow
    from novelgen_desktop.gui.qt import QtGui, QtWidgets
    from novelgen_desktop.paths import DataPaths
    from novelgen_desktop.sim.worker import SimBehaviour

    settings = replace(DesktopSettings(), hub_port=0, default_workers=6, notifications=False)
    session = DesktopSession(DataPaths(data_dir), settings)
    await session.start(port=0, simulate=False)
    bridge = EngineBridge(session)
    window = MainWindow(bridge)
    window.resize(1400, 860)
    window.move(20, 20)
    window.show()
    bridge.start_ticking()
    if "flags" in shots:  # an experiment for the whole run, so the report has two variants
        session.flags.set_local(
            "fresh_chat",
            FlagSetting(
                variants=(Variant("control", 50, False), Variant("fresh", 50, True)),
                salt="screenshots",
            ),
        )
    result = await asyncio.get_running_loop().run_in_executor(None, session.preview_files, [SCRIPT])
    job_id = await session.create_job("The Lighthouse Keeper", result)
    bridge.select_job(job_id)
    session.start_simulated_workers(
        6,
        SimBehaviour(
            latency_median=0.6,
            latency_sigma=0.4,
            failure_rate=0.04,
            refusal_rate=0.01,
            rate_limit_rate=0.004,
            rate_limit_reset=20.0,
            image_size=384,
            seed=7,
        ),
    )
    # Well under way: the charts have a history, the gallery a few rows of panels.
    while (await session.service.view(job_id)).done < 150:
        await asyncio.sleep(0.5)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    screen = QtGui.QGuiApplication.primaryScreen()

    def grab(widget: QtWidgets.QWidget, name: str) -> None:
        frame = widget.frameGeometry()
        pixmap = screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        if pixmap.isNull() or pixmap.width() < 100:
            pixmap = widget.grab()
        path = out / f"gui-{name}.png"
        pixmap.save(str(path), "PNG")
        written.append(path)

    for index, name in enumerate(SHOTS):
        if name not in shots:
            continue
        window.tabs.setCurrentIndex(index)
        await asyncio.sleep(2.5)  # two refresh beats and the thumbnails of the gallery
        grab(window, name)
    if "flags" in shots:
        flags = open_flags_window(window, bridge)
        flags.move(80, 60)
        flags.resize(1040, 680)
        flags.set_switch("selector_updates", False)  # a kill switch thrown …
        await asyncio.sleep(0.5)
        flags.roll_back()  # … and rolled back from the window
        await asyncio.sleep(1.5)
        grab(flags, "flags")
        flags.tabs.setCurrentIndex(1)
        flags.load_jobs()
        await asyncio.sleep(2.5)
        grab(flags, "flags-experiments")
        flags.close()
    done = asyncio.Event()
    window.quit_finished.connect(done.set)
    window.request_quit()
    try:  # the images are written; a slow drain (a loaded machine) must not lose them
        await asyncio.wait_for(done.wait(), 180)
    except TimeoutError:
        print("screenshot_gui: the app took over 180 s to quit", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep-data", action="store_true", help="keep the run's data folder")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SHOTS + EXTRA_SHOTS,
        metavar="NAME",
        help=f"take only these shots ({', '.join(SHOTS + EXTRA_SHOTS)}; default: all)",
    )
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="novelgen-shots-"))
    with virtual_display() as display:
        os.environ["DISPLAY"] = display
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        os.environ["QT_API"] = "pyside6"
        import qasync

        from novelgen_desktop.gui.qt import QtWidgets

        app = QtWidgets.QApplication(sys.argv[:1])
        app.setQuitOnLastWindowClosed(False)
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        try:
            shots = tuple(args.only) if args.only else SHOTS + EXTRA_SHOTS
            written = loop.run_until_complete(take(args.out, data_dir, shots))
        finally:
            loop.close()
    for path in written:
        print(path)
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
