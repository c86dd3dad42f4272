"""One process per job: a second runner of the same job is refused, a dead holder is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from novelgen_desktop.engine.joblock import JobBusyError, JobLock


def test_second_lock_on_the_same_job_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with JobLock(path, "job-a"):
        other = JobLock(path, "job-a")
        # flock locks belong to open file descriptions: a second open in this process
        # conflicts just as another process would.
        with pytest.raises(JobBusyError, match=rf"job-a is already running .*pid {os.getpid()}"):
            other.acquire()
    with JobLock(path, "job-a"):  # released on exit: free again
        pass


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from novelgen_desktop.engine.joblock import JobLock; "
            f"JobLock(Path({str(path)!r}), 'job-b').acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(JobBusyError):
        JobLock(path, "job-b").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            JobLock(path, "job-b").acquire().release()
            break
        except JobBusyError:
            assert time.monotonic() < deadline, "lock of a SIGKILLed process never freed"
            time.sleep(0.05)
