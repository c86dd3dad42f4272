"""A worker on the other end of a WebSocket connection, seen by the engine as a ``Worker``.

The hub owns the connections; a :class:`RemoteWorker` is keyed by the worker's ``worker_id``
and outlives them: after a drop the same instance is re-attached when the worker says hello
again, which is what :meth:`RemoteWorker.restart` waits for.

A drop does not lose the attempt in flight at once: MV3 service workers are killed and
restarted routinely, and a restarted worker that still holds the attempt (it says so in
``hello.holding``) goes on and delivers. Only when the worker is not back within
``restart_grace``, or comes back without the attempt (a crashed tab, a new process that
forgot it), does ``execute`` raise ``WorkerCrashed`` and the lease go back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from novelgen_desktop.engine.model import (
    Assignment,
    ErrorKind,
    WorkerFailure,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.worker import WorkerCrashed
from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.convert import assign_from, reference_image_from
from novelgen_desktop.protocol.messages import (
    Cancel,
    Cleanup,
    CleanupAction,
    CleanupDone,
    Hello,
    Progress,
    Stage,
    Status,
    TabHealth,
)

if TYPE_CHECKING:
    from novelgen_desktop.server.hub import Session

log = logging.getLogger(__name__)

RESTART_GRACE = 30.0
"""How long a disconnected worker keeps its attempt in flight (and :meth:`RemoteWorker.restart`
waits) for the worker to reconnect."""
_WORKABLE = frozenset({TabHealth.OK, TabHealth.LOADING})
"""Tab health states in which a worker is given new work."""
_REMEMBERED = 1000  # attempts remembered per worker (issued / finished), oldest forgotten
CLEANUP_TIMEOUT = 75.0
"""How long the hub waits for ``cleanup_done`` (a reload answers once the page is back, at
most 60 s later by the protocol)."""
UNPAID_STAGES = frozenset({Stage.ACCEPTED, Stage.TYPING})
"""Stages of an attempt before the prompt was sent to ChatGPT: calling it back costs nothing."""
KEEP_TIMEOUT = 60.0
"""How long an accepted image may take to be written before the hub gives up on acking it
(the worker then keeps it and sends it again after reconnecting)."""

LateOutcomeHandler = Callable[["RemoteWorker", WorkerOutcome], str]
"""Called for a result/task_error of an attempt issued earlier but no longer in flight (the
worker crashed and came back); returns the ``ack`` outcome (the scheduler's verdict)."""
UnverifiedOutcomeHandler = Callable[["RemoteWorker", WorkerOutcome], Awaitable[str | None]]
"""Called for an outcome of an attempt this hub process never issued to the worker — one
issued before the hub restarted, whose image the worker kept. Returns the ``ack`` outcome, or
None when the store does not show that attempt as this worker's (refused: ``unknown_task``)."""


class RemoteWorker:
    """``engine.worker.Worker`` for one remote worker instance (one ``worker_id``)."""

    def __init__(
        self,
        worker_id: str,
        account_id: str,
        kind: str,
        *,
        restart_grace: float = RESTART_GRACE,
        on_late_outcome: LateOutcomeHandler | None = None,
        on_unverified_outcome: UnverifiedOutcomeHandler | None = None,
        is_stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.worker_id = worker_id
        self.account_id = account_id
        self.kind = kind
        self.restart_grace = restart_grace
        self.on_late_outcome = on_late_outcome
        self.on_unverified_outcome = on_unverified_outcome
        self._is_stopping = is_stopping
        self.session: Session | None = None
        self.last_progress: Progress | None = None
        self.last_status: Status | None = None
        self.instance_id: str | None = None
        self.tab_id: str | None = None  # the browser tab it drives, from its hello
        self.capabilities: frozenset[str] = frozenset()
        self._references_sent: set[str] = set()  # sha256 of reference_image sent on session
        self._cleanups: dict[str, tuple[CleanupAction, asyncio.Future[CleanupDone]]] = {}
        self._cleanup_seq = 0
        self.restarts = 0  # reconnections under a new instance id
        self._said_goodbye = False  # the last connection ended with a bye other than restart
        self.connections = 0
        self._detached_at: float | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._attached = asyncio.Event()
        self._in_flight: tuple[int, int] | None = None
        self._future: asyncio.Future[WorkerOutcome] | None = None
        self._issued: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._finished: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._kept: dict[tuple[int, int], asyncio.Future[str]] = {}
        self.keep_timeout = KEEP_TIMEOUT
        # Set by the job runner, which promises to call result_kept for every image it is
        # handed: acks then wait for the image to be on disk.
        self.ack_after_write = False

    # -- engine side ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.session is not None

    @property
    def last_heard(self) -> float | None:
        """Wall-clock time of the last frame from this worker (None while disconnected)."""
        session = self.session
        if session is None:
            return None
        return time.time() - (time.monotonic() - session.last_received)

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    @property
    def accepting_work(self) -> bool:
        """Connected, and its last ``status`` (if any) says the tab can work."""
        status = self.last_status
        return self.session is not None and (status is None or status.tab_health in _WORKABLE)

    async def execute(self, assignment: Assignment) -> WorkerOutcome:
        """Send ``assign`` and wait for the matching ``result`` or ``task_error``."""
        session = self.session
        if session is None:
            raise WorkerCrashed("the worker is not connected")
        if self._in_flight is not None:
            raise RuntimeError(f"worker {self.worker_id} already has an attempt in flight")
        key = (assignment.task_id, assignment.attempt)
        attaches = "references" in self.capabilities
        if assignment.references and not attaches:
            log.warning(
                "worker %s cannot attach reference images (no 'references' capability): "
                "task %s is sent without them",
                self.worker_id,
                assignment.task_id,
            )
        frame = assign_from(assignment, references=attaches)
        future: asyncio.Future[WorkerOutcome] = asyncio.get_running_loop().create_future()
        self._in_flight, self._future = key, future
        _remember(self._issued, key)
        try:
            if attaches:
                failure = await self._send_references(session, assignment)
                if failure is not None:
                    return failure
            if not await session.send(frame):
                raise WorkerCrashed("connection lost sending assign")
            outcome = await future
            if (
                attaches
                and assignment.references
                and isinstance(outcome, WorkerFailure)
                and outcome.kind is ErrorKind.PAGE_ERROR
            ):
                # The worker may have lost or refused the bytes (a failed hash check, storage
                # cleared): the next attempt sends them again rather than failing the same way.
                self._references_sent.difference_update(r.sha256 for r in assignment.references)
            return outcome
        except asyncio.CancelledError:
            if self.session is not None and (future.cancelled() or not future.done()):
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._send_cancel(frame.task_id, frame.attempt))
            raise
        finally:
            if self._future is future:
                self._in_flight, self._future = None, None

    async def _send_references(
        self, session: Session, assignment: Assignment
    ) -> WorkerFailure | None:
        """Send each reference image this connection has not had yet, before the assign.

        The job's copy of an image is named by its hash; one that is missing or changed is
        the job folder's damage, reported on the attempt rather than sent wrong.
        """
        for reference in assignment.references:
            if reference.sha256 in self._references_sent:
                continue
            try:
                data = await asyncio.to_thread(Path(reference.path).read_bytes)
            except OSError as exc:
                return WorkerFailure(
                    assignment.task_id,
                    assignment.attempt,
                    ErrorKind.OUTPUT_ERROR,
                    f"reference image {reference.name} cannot be read from the job folder: "
                    f"{exc.strerror or exc}",
                )
            if hashlib.sha256(data).hexdigest() != reference.sha256:
                return WorkerFailure(
                    assignment.task_id,
                    assignment.attempt,
                    ErrorKind.OUTPUT_ERROR,
                    f"reference image {reference.name} in the job folder is damaged "
                    f"(its SHA-256 changed): {reference.path}",
                )
            if not await session.send(reference_image_from(reference, data)):
                raise WorkerCrashed("connection lost sending a reference image")
            self._references_sent.add(reference.sha256)
        return None

    @property
    def in_flight(self) -> tuple[int, int] | None:
        """(task id, attempt) of the attempt in hand, or None."""
        return self._in_flight

    def attempt_unpaid(self) -> bool:
        """The attempt in hand has not been sent to ChatGPT yet (its last ``progress`` says
        accepted or typing): calling it back costs no image. False when unknown."""
        key, progress = self._in_flight, self.last_progress
        if key is None or progress is None:
            return False
        if (int(progress.task_id), progress.attempt) != key:
            return False
        return progress.stage in UNPAID_STAGES

    @property
    def can_clean_up(self) -> bool:
        return self.session is not None and "cleanup" in self.capabilities

    async def request_cleanup(
        self, action: CleanupAction, reason: str | None = None, *, timeout: float = CLEANUP_TIMEOUT
    ) -> CleanupDone:
        """Send ``cleanup`` and wait for its ``cleanup_done``. A worker without the capability,
        a lost connection or no answer in ``timeout`` gives an ``ok: false`` answer with the
        reason in ``detail`` (never an exception: cleanup is best effort)."""
        self._cleanup_seq += 1
        request_id = f"mem-{self._cleanup_seq}"
        session = self.session
        if session is None or "cleanup" not in self.capabilities:
            why = "not connected" if session is None else "the worker cannot clean up"
            return CleanupDone(re=request_id, action=action, ok=False, detail=why)
        future: asyncio.Future[CleanupDone] = asyncio.get_running_loop().create_future()
        self._cleanups[request_id] = (action, future)
        try:
            if not await session.send(Cleanup(request_id=request_id, action=action, reason=reason)):
                return CleanupDone(re=request_id, action=action, ok=False, detail="connection lost")
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                return CleanupDone(
                    re=request_id, action=action, ok=False, detail=f"no answer in {timeout:g} s"
                )
        finally:
            self._cleanups.pop(request_id, None)

    def cleanup_done(self, answer: CleanupDone) -> None:
        """The worker answered a ``cleanup``; refused (``bad_field``, field ``re``) if no
        cleanup of that action is waiting for this answer."""
        action, future = self._cleanups.get(answer.re, (None, None))
        if future is None or action is not answer.action:
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                f"no {answer.action} cleanup {answer.re!r} is waiting for an answer",
                field="re",
            )
        if not future.done():
            future.set_result(answer)

    async def _send_cancel(self, task_id: str, attempt: int) -> None:
        session = self.session
        if session is not None:
            await session.send(Cancel(task_id=task_id, attempt=attempt, reason="cancelled"))

    async def restart(self) -> bool:
        """True once the same worker id is connected again, waiting at most what is left of
        ``restart_grace`` since the connection dropped."""
        if self.session is not None:
            return True
        if self._is_stopping() or self._said_goodbye:
            return False  # it said it is not coming back; a new hello adds it to the run again
        loop = asyncio.get_running_loop()
        dropped = self._detached_at if self._detached_at is not None else loop.time()
        remaining = dropped + self.restart_grace - loop.time()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._attached.wait()
        return self.connected and not self._is_stopping()

    # -- hub side -------------------------------------------------------------------------

    def attach(self, session: Session, hello: Hello) -> None:
        """A connection of this worker id said hello. An attempt in flight survives only if
        the worker says it still holds it."""
        assert hello.account_id is not None and hello.kind is not None
        self.session = session
        self.account_id, self.kind = hello.account_id, hello.kind
        if (
            hello.instance_id is not None
            and self.instance_id is not None
            and hello.instance_id != self.instance_id
        ):
            self.restarts += 1
        self.instance_id = hello.instance_id
        self.tab_id = hello.tab_id
        self.capabilities = frozenset(hello.capabilities)
        self._references_sent = set()  # a new connection has none of them
        self.connections += 1
        self.last_status = None  # a new connection reports its own health
        self._detached_at = None
        self._said_goodbye = False
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        holding = {(int(ref.task_id), ref.attempt) for ref in hello.holding}
        future = self._future
        if future is not None and not future.done() and self._in_flight not in holding:
            # No worker id in the text: error groups are keyed by message, the worker is
            # recorded on the attempt.
            future.set_exception(WorkerCrashed("the worker came back without its attempt"))
        self._attached.set()

    def detach(self, session: Session, reason: str, *, coming_back: bool = True) -> None:
        """The connection ``session`` ended. An attempt in flight waits ``restart_grace`` for
        the worker to come back with it, unless the worker said goodbye for another reason
        than a restart (``coming_back`` False: a closed tab gives its task back at once)."""
        if self.session is not session:
            return  # an older, replaced connection
        self.session = None
        self._said_goodbye = not coming_back
        for request_id, (action, waiting) in list(self._cleanups.items()):
            if not waiting.done():
                waiting.set_result(
                    CleanupDone(
                        re=request_id,
                        action=action,
                        ok=False,
                        detail=f"connection ended: {reason}",
                    )
                )
        self._attached.clear()
        loop = asyncio.get_running_loop()
        self._detached_at = loop.time()
        future = self._future
        if future is None or future.done():
            return
        error = WorkerCrashed(reason)
        if not coming_back or self.restart_grace <= 0 or self._is_stopping():
            future.set_exception(error)
            return

        def grace_over() -> None:
            self._grace_timer = None
            if self.session is None and self._future is future and not future.done():
                future.set_exception(
                    WorkerCrashed(f"{reason}; not back within {self.restart_grace:g} s")
                )

        self._grace_timer = loop.call_later(self.restart_grace, grace_over)

    def hub_stopping(self) -> None:
        """The hub is going away: nothing in flight can be delivered any more."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        future = self._future
        if self.session is None and future is not None and not future.done():
            future.set_exception(WorkerCrashed("the hub is stopping"))
        self._attached.set()  # wake restart() waiters: they see the hub stopping

    def check_attempt(self, task_id: int, attempt: int) -> None:
        """Refuse (``unknown_task``) an attempt never assigned to this worker."""
        if (task_id, attempt) not in self._issued:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TASK,
                f"task {task_id} attempt {attempt} was never assigned to this worker",
                field="task_id",
            )

    async def deliver(self, outcome: WorkerOutcome) -> str:
        """Hand a verified outcome over; returns the ``ack`` outcome. For an image accepted
        by the engine, only once it is written (``result_kept``): the ``ack`` tells the worker
        it may forget the image, so it must not come before the image is safe on disk."""
        key = (outcome.task_id, outcome.attempt)
        if key in self._finished:
            return "duplicate"
        waiting = (
            self.ack_after_write and isinstance(outcome, WorkerResult) and key not in self._kept
        )
        if waiting:
            kept: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._kept[key] = kept
        try:
            verdict = await self._hand_over(key, outcome)
            if not waiting or verdict != "accepted":
                return verdict
            try:
                async with asyncio.timeout(self.keep_timeout):
                    return await kept
            except TimeoutError:
                raise ProtocolError(
                    ErrorCode.INTERNAL,
                    "the image could not be confirmed on disk in time; keep it and send it "
                    "again after reconnecting",
                ) from None
        finally:
            if waiting:
                self._kept.pop(key, None)

    async def _hand_over(self, key: tuple[int, int], outcome: WorkerOutcome) -> str:
        future = self._future
        if key == self._in_flight and future is not None and not future.done():
            future.set_result(outcome)
            _remember(self._finished, key)
            return "accepted"
        if key not in self._issued and self.on_unverified_outcome is not None:
            # Not issued by this hub process: perhaps by the one before a restart.
            verdict = await self.on_unverified_outcome(self, outcome)
            if verdict is not None:
                _remember(self._finished, key)
                return verdict
        self.check_attempt(*key)
        _remember(self._finished, key)
        verdict = "unknown"
        if self.on_late_outcome is not None:
            verdict = self.on_late_outcome(self, outcome)
        if verdict == "unknown" and self.on_unverified_outcome is not None:
            # No running job knows it (it finished or stopped): the store may (a task that
            # already has its image is a duplicate; a paused job's image is parked).
            verdict = await self.on_unverified_outcome(self, outcome) or "unknown"
        return verdict

    def result_kept(self, task_id: int, attempt: int, verdict: str) -> None:
        """The engine's last word on an image this worker sent (see ``deliver``)."""
        kept = self._kept.get((task_id, attempt))
        if kept is not None and not kept.done():
            kept.set_result(verdict)


def _remember(seen: OrderedDict[tuple[int, int], None], key: tuple[int, int]) -> None:
    seen[key] = None
    seen.move_to_end(key)
    while len(seen) > _REMEMBERED:
        seen.popitem(last=False)


__all__ = ["RESTART_GRACE", "LateOutcomeHandler", "RemoteWorker", "UnverifiedOutcomeHandler"]
