"""Start the desktop window: one QApplication, one qasync loop for Qt, hub, engine and sims.

``novelgen`` with no command lands here. Without a display it explains how to run headless
instead of letting Qt abort with a platform-plugin error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace

from novelgen_desktop.desktop.settings import load_settings
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.service import FlagService
from novelgen_desktop.paths import DataPaths

log = logging.getLogger(__name__)

NO_DISPLAY_HELP = """\
novelgen: no display: the window needs a graphical session (DISPLAY or WAYLAND_DISPLAY is
not set). Headless, the same engine runs from the command line:
  novelgen serve                      the hub: extension tabs connect, `novelgen submit` jobs
  novelgen run FILE --simulate        run a job with simulated tabs, no browser
  novelgen run FILE                   (with `novelgen serve` elsewhere: submit instead)
To see the window on a server: xvfb-run novelgen   (or ssh -X, or QT_QPA_PLATFORM=offscreen)
"""


def display_available(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """A display Qt can open: X11/Wayland on Linux, always on Windows and macOS, or a
    platform chosen explicitly (offscreen for tests and screenshots)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY") or environ.get("QT_QPA_PLATFORM")
    )


def run_gui(
    paths: DataPaths,
    *,
    simulate: bool | None = None,
    port: int | None = None,
    workers: int | None = None,
    flags: FlagService | None = None,
) -> int:
    """Open the window and run until the author quits; returns the exit code."""
    if not display_available():
        sys.stderr.write(NO_DISPLAY_HELP)
        return 2
    os.environ.setdefault("QT_API", "pyside6")  # before qasync picks a binding
    import qasync  # noqa: PLC0415

    from novelgen_desktop.desktop.session import DesktopSession  # noqa: PLC0415
    from novelgen_desktop.gui.bridge import EngineBridge  # noqa: PLC0415
    from novelgen_desktop.gui.icons import app_icon  # noqa: PLC0415
    from novelgen_desktop.gui.main_window import (  # noqa: PLC0415
        MainWindow,
        settings_problems_text,
    )
    from novelgen_desktop.gui.qt import QtWidgets  # noqa: PLC0415 - Qt only with a display

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    assert isinstance(app, QtWidgets.QApplication)
    app.setApplicationName("NovelGen Desktop")
    app.setOrganizationName("NovelGen")
    # Matches packaging/linux/novelgen.desktop: Wayland docks find the window's menu entry.
    app.setDesktopFileName("novelgen")
    app.setWindowIcon(app_icon())
    # The tray keeps the app alive while the window is hidden; quitting is explicit.
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    # Ctrl-C in the terminal or a session logout: quit the way the menu does (drain,
    # snapshot, bye), not by dying mid-write. Python runs the handler between Qt events (the
    # bridge's tick guarantees some); installed first, so a signal during start-up counts.
    quit_asked: list[int] = []
    window_ref: list[MainWindow] = []

    def on_signal(number: int, _frame: object) -> None:
        quit_asked.append(number)
        if window_ref:
            loop.call_soon_threadsafe(window_ref[0].request_quit)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, on_signal)

    paths.ensure()
    settings, problems = load_settings(paths)
    if workers is not None:
        settings = replace(settings, default_workers=workers)
    session = DesktopSession(paths, settings, flags=flags)
    start_error: list[ConfigError] = []

    async def lifetime() -> None:
        """The whole life of the window inside one run of the loop. qasync's
        run_until_complete ends with a last pass of Qt events after it has cleared asyncio's
        running loop; two runs (start, then the window) let a task stepped in that pass (the
        job dispatcher back from its thread) meet no running loop and die, and with it every
        later job."""
        try:
            await session.start(port=port, simulate=simulate)
        except ConfigError as exc:
            start_error.append(exc)
            return
        bridge = EngineBridge(session)
        window = MainWindow(bridge)
        window_ref.append(window)
        done = asyncio.Event()
        window.quit_finished.connect(done.set)
        if quit_asked:  # a signal came while the session was starting
            asyncio.get_running_loop().call_soon(window.request_quit)
        window.show()
        bridge.start_ticking()
        if problems:  # said, but not in a modal box: the engine is already running
            box = QtWidgets.QMessageBox(
                QtWidgets.QMessageBox.Icon.Warning,
                "NovelGen Desktop",
                settings_problems_text(problems),
                QtWidgets.QMessageBox.StandardButton.Ok,
                window,
            )
            box.open()
        await done.wait()

    try:
        loop.run_until_complete(lifetime())
    except KeyboardInterrupt:
        loop.run_until_complete(session.stop())
    finally:
        loop.close()
    if start_error:
        QtWidgets.QMessageBox.critical(None, "NovelGen Desktop", str(start_error[0]))
        sys.stderr.write(f"novelgen: {start_error[0]}\n")
        return 2
    return 0


__all__ = ["NO_DISPLAY_HELP", "display_available", "run_gui"]
