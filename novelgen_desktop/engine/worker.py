"""The worker interface the engine drives.

In-process simulated workers implement it directly; the WebSocket hub will implement it for
remote workers (extension tabs, remote simulators) by sending the assignment as a frame and
awaiting the matching result frame. The engine cannot tell the difference.
"""

from __future__ import annotations

from typing import Protocol

from novelgen_desktop.engine.model import Assignment, WorkerOutcome


class WorkerCrashed(Exception):  # noqa: N818 - it is an event, not a bug in our code
    """The worker died mid-task (tab crashed, service worker killed, process gone)."""


class Worker(Protocol):
    worker_id: str
    account_id: str
    kind: str

    async def execute(self, assignment: Assignment) -> WorkerOutcome:
        """Draw one image. Raise :class:`WorkerCrashed` if the worker itself died."""
        ...

    async def restart(self) -> bool:
        """Come back after a crash; False if the worker is gone for good."""
        ...
