"""One running process per job.

Two processes driving the same job would lease the same tasks twice — paying twice for the
same image — and race on its files. An exclusive ``flock`` on ``DATA/jobs/<job>/run.lock``
prevents that. The kernel drops the lock when the holder dies, even by SIGKILL, so a crash
never leaves a stale lock behind; the file only records who holds it, for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from novelgen_desktop.errors import ConfigError


class JobBusyError(ConfigError):
    """The job is already being run by another process."""


class JobLock:
    def __init__(self, path: Path, job_id: str) -> None:
        self.path = path
        self.job_id = job_id
        self._fd: int | None = None

    def acquire(self) -> JobLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise JobBusyError(
                f"job {self.job_id} is already running in another NovelGen process "
                f"(pid {holder}); stop that one first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
