"""The window's process keeps asyncio's running loop for every task step, start to quit.

qasync's ``run_until_complete`` ends with one more pass of Qt events after it has cleared
asyncio's running loop. ``run_gui`` once ran the session's start and the window in two such
runs: a task stepped in the pass between them (the job dispatcher, back from its thread) met
no running loop, bound its wake Event to none and died, so the hub never ran a job again and
quitting logged "the session did not stop cleanly". Here a probe task is started as the
session's start returns and steps constantly until the session has stopped; in the old shape
some of its steps fell into that pass. It runs in a child process: run_gui owns its
QApplication and loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, threading

    from novelgen_desktop.desktop.session import DesktopSession
    from novelgen_desktop.gui.app import run_gui
    from novelgen_desktop.paths import resolve_data_dir

    steps = {"with_loop": 0, "without_loop": 0}
    stopped = []
    real_start, real_stop = DesktopSession.start, DesktopSession.stop

    async def start(self, **kwargs):
        await real_start(self, **kwargs)

        async def probe():
            while not stopped:  # the steps after the session has stopped do not count
                await asyncio.sleep(0)
                running = asyncio.events._get_running_loop() is not None
                steps["with_loop" if running else "without_loop"] += 1

        asyncio.get_running_loop().create_task(probe())
        # SIGTERM quits the way the menu does once the window is up.
        threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()

    async def stop(self):
        await real_stop(self)
        stopped.append(True)

    DesktopSession.start, DesktopSession.stop = start, stop
    code = run_gui(resolve_data_dir(None), simulate=True, port=0)
    print(json.dumps({"code": code, **steps}))
    """
)


def test_no_task_step_runs_without_a_running_loop(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    assert result["with_loop"] > 0, result
    assert result["without_loop"] == 0, result
    assert "did not stop cleanly" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
