"""The client role: protocol requests turned into job-service calls, and progress streams.

A client (a script, the CLI, later the GUI of another machine) submits jobs, lists them,
pauses/resumes/cancels them and subscribes to their progress. Each request is answered by
exactly one frame carrying its ``request_id`` as ``re``: the answer, an ``ack``, or an
``error`` with a stable code. Nothing a client sends can stop the hub or reach a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from novelgen_desktop.engine.model import (
    DEFAULT_MAX_CHAT_TURNS,
    ChatStrategy,
    ErrorKind,
    JobState,
    MemoryLevel,
)
from novelgen_desktop.engine.service import (
    ErrorGroupView,
    JobService,
    JobView,
    MemoryStatus,
    specs_from_prompts,
)
from novelgen_desktop.errors import ConfigError, JobNotFoundError
from novelgen_desktop.prompts.issues import PromptImportError
from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.messages import (
    Ack,
    Control,
    ControlAction,
    Error,
    ErrorGroup,
    Errors,
    JobProgress,
    Jobs,
    JobSummary,
    ListJobs,
    MemoryState,
    Message,
    Submit,
    Submitted,
    Subscribe,
    WorkerStat,
)
from novelgen_desktop.style.bible import StyleBible
from novelgen_desktop.style.loader import StyleBibleError, load_style_bible

if TYPE_CHECKING:
    from novelgen_desktop.prompts.model import PromptSpec

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[bool]]
_FINAL = frozenset({JobState.FINISHED, JobState.INCOMPLETE, JobState.CANCELLED})
_ALL_JOBS_LIMIT = 64
"""A subscription to "every job" follows at most this many running or paused jobs."""


class ClientRequests:
    """Handles the requests of one client connection; owns its subscription stream."""

    def __init__(self, service: JobService, send: Send) -> None:
        self.service = service
        self.send = send
        self._subscription: asyncio.Task[None] | None = None
        self._following: tuple[Subscribe, tuple[str, ...]] | None = None
        self._subscribed_at = 0.0
        self._sent: dict[str, JobView] = {}
        self._live: dict[str, int] = {}  # failed attempts the last errors frame was sent for
        self._recorded: dict[str, int] = {}  # … and how many of them its groups included
        self._changed = asyncio.Event()
        service.on_change(self._changed.set)
        service.on_memory(self._memory_changed)
        self._sends: set[asyncio.Task[None]] = set()

    async def handle(self, message: Message) -> None:
        """Answer one request. ProtocolError (with ``re``) for a request that cannot be done."""
        if isinstance(message, Error):
            log.info("a client reported an error: %s %s", message.code, message.message)
            return
        if isinstance(message, Submit):
            await self._submit(message)
        elif isinstance(message, Subscribe):
            await self._subscribe(message)
        elif isinstance(message, Control):
            await self._control(message)
        elif isinstance(message, ListJobs):
            views = await self.service.list_jobs(message.states, message.limit)
            await self.send(Jobs(re=message.request_id, jobs=tuple(_summary(v) for v in views)))
        else:  # progress/result/… from a client were refused by decode (forbidden_role)
            raise ProtocolError(ErrorCode.FORBIDDEN_ROLE, f"a client cannot send {message.type}")

    async def close(self, *, final: bool = False) -> None:
        """Stop the progress stream (``final``: the connection is gone, forget this client)."""
        if final:
            self.service.remove_on_change(self._changed.set)
            self.service.remove_on_memory(self._memory_changed)
        task, self._subscription = self._subscription, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- requests -------------------------------------------------------------------------

    async def _submit(self, request: Submit) -> None:
        if self.service.stopping:
            raise ProtocolError(ErrorCode.INTERNAL, "the hub is shutting down; submit later")
        out_root = _absolute(request.out_dir, "out_dir") if request.out_dir else None
        sources: tuple[str, ...] = ()
        if request.prompts is not None:
            specs, skipped = specs_from_prompts(request.prompts)
            if not specs:
                raise ProtocolError(ErrorCode.BAD_FIELD, "every prompt is blank", field="prompts")
        else:
            assert request.path is not None
            path = _absolute(request.path, "path")
            specs = await _read_script(path)
            skipped, sources = 0, (str(path),)
        bible = await _read_bible(_absolute(request.style, "style")) if request.style else None
        try:
            job, count = await self.service.submit(
                request.name,
                specs,
                out_root=out_root,
                naming=request.naming,
                priority=request.priority or 0,
                sources=sources,
                style=bible,
                chat_strategy=request.chat_strategy or ChatStrategy.PANEL,
                max_chat_turns=request.max_chat_turns or DEFAULT_MAX_CHAT_TURNS,
            )
        except PromptImportError as exc:  # panels the bible cannot compose
            field = "path" if request.path is not None else "prompts"
            message = f"cannot be composed with style bible {request.style}:\n{exc}"
            raise ProtocolError(ErrorCode.BAD_FIELD, message[:4096], field=field) from exc
        except ConfigError as exc:
            field = "naming" if "template" in str(exc).lower() else "out_dir"
            raise ProtocolError(ErrorCode.BAD_FIELD, str(exc)[:4096], field=field) from exc
        await self.send(
            Submitted(re=request.request_id, job_id=job.id, tasks=count, skipped=skipped)
        )

    async def _control(self, request: Control) -> None:
        actions = {
            ControlAction.PAUSE: self.service.pause,
            ControlAction.RESUME: self.service.resume,
            ControlAction.CANCEL: self.service.cancel,
        }
        try:
            await actions[request.action](request.job_id)
        except JobNotFoundError as exc:
            raise ProtocolError(ErrorCode.UNKNOWN_JOB, str(exc), field="job_id") from exc
        except ConfigError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), field="action") from exc
        await self.send(Ack(re=request.request_id))

    async def _subscribe(self, request: Subscribe) -> None:
        job_ids = []
        for index, job_id in enumerate(request.job_ids):
            try:
                job_ids.append((await self.service.find_job(job_id)).id)
            except JobNotFoundError as exc:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_JOB, str(exc), field=f"job_ids[{index}]"
                ) from exc
        await self.close()
        await self.send(Ack(re=request.request_id))
        self._subscription = asyncio.create_task(
            self._stream(request, tuple(job_ids)), name="progress-stream"
        )
        status = self.service.memory_status
        if status is not None and status.state is not MemoryLevel.NORMAL:
            await self.send(_memory_state(status))

    async def _send_memory(self, status: MemoryStatus) -> None:
        await self.send(_memory_state(status))

    def _memory_changed(self, status: MemoryStatus) -> None:
        """Every governor transition reaches a subscribed client as ``memory_state``."""
        if self._subscription is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the hub is gone
            task = asyncio.get_running_loop().create_task(self._send_memory(status))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    # --- the progress stream ----------------------------------------------------------------

    async def _stream(self, request: Subscribe, job_ids: tuple[str, ...]) -> None:
        """Every ``interval``: the running job's progress; other jobs when they change; error
        groups when a job's failed attempts change. A job's final state is always sent."""
        self._following = (request, job_ids)
        self._subscribed_at = time.time()
        self._sent, self._live, self._recorded = {}, {}, {}
        while True:
            self._changed.clear()
            if not await self._tick():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(request.interval):
                    await self._changed.wait()
                    await asyncio.sleep(0.25)  # a burst of changes is one update

    async def flush(self) -> None:
        """One last update (the hub is about to say bye): final states are not left unsent."""
        await self.close()
        if self._following is not None:
            with contextlib.suppress(Exception):
                await self._tick()

    async def _tick(self) -> bool:
        """Send what changed; False once the connection is gone."""
        assert self._following is not None
        request, job_ids = self._following
        sent, live, recorded = self._sent, self._live, self._recorded
        ids = list(job_ids) or await self._followed(sent)
        for job_id in ids:
            try:
                view = await self.service.view(job_id, workers=request.workers)
            except JobNotFoundError:
                continue
            live_changed = view.failures_seen != live.get(job_id, 0)
            behind = recorded.get(job_id, 0) < view.failures_seen
            if request.errors and (live_changed or behind):
                # The running job's live count runs ahead of the store by one group commit:
                # send at once what is recorded, and again when it catches up. Errors go
                # before progress, so that a job's final state is the last word about it.
                count, groups = await self.service.error_report(job_id)
                changed = count != recorded.get(job_id, 0)
                if (live_changed or changed) and not await self.send(_errors(job_id, groups)):
                    return False
                recorded[job_id], live[job_id] = count, view.failures_seen
            previous = sent.get(job_id)
            if view.active or previous is None or _differs(previous, view):
                if not await self.send(_progress(view)):
                    return False
                sent[job_id] = view
        return True

    async def _followed(self, sent: dict[str, JobView]) -> list[str]:
        """ "Every job": the running and paused ones, every job submitted since the
        subscription began (even one that finished between two ticks), and any sent before
        that has not been seen in a final state yet (so its end is reported once)."""
        jobs = await self.service.recent_jobs(_ALL_JOBS_LIMIT)
        ids = [
            job.id
            for job in jobs
            if job.state in (JobState.RUNNING, JobState.PAUSED)
            or job.created_at >= self._subscribed_at
        ]
        ids += [job_id for job_id, v in sent.items() if v.state not in _FINAL and job_id not in ids]
        return ids


def _differs(a: JobView, b: JobView) -> bool:
    return (a.state, a.done, a.failed_terminal, a.total, a.active) != (
        b.state,
        b.done,
        b.failed_terminal,
        b.total,
        b.active,
    )


def _absolute(text: str, field: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{field} must be an absolute path on the hub's machine, got {text!r}",
            field=field,
        )
    return path


async def _read_script(path: Path) -> list[PromptSpec]:
    """Parse a script file the hub can read (any format the importer knows), off the loop."""
    from novelgen_desktop.prompts import (  # noqa: PLC0415 - parsers only when importing
        PromptImportError,
        require_prompts,
    )

    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, require_prompts, [path])
    except PromptImportError as exc:
        message = f"{path} cannot become a job:\n{exc}"
        raise ProtocolError(ErrorCode.BAD_FIELD, message[:4096], field="path") from exc


async def _read_bible(path: Path) -> StyleBible:
    """Load a style bible the hub can read, off the loop; every problem named at file:line."""
    try:
        return await asyncio.to_thread(load_style_bible, path)
    except StyleBibleError as exc:
        message = f"{path} is not a usable style bible:\n{exc}"
        raise ProtocolError(ErrorCode.BAD_FIELD, message[:4096], field="style") from exc


def _memory_state(status: MemoryStatus) -> MemoryState:
    return MemoryState(
        ts=status.ts,
        state=status.state,
        previous=status.previous,
        system_percent=min(100.0, max(0.0, status.system_percent)),
        reason=status.reason[:4096],
        held_workers=status.held_workers[:256],
    )


def _progress(view: JobView) -> JobProgress:
    return JobProgress(
        job_id=view.job_id,
        ts=time.time(),
        state=view.state,
        total=view.total,
        done=view.done,
        failed_terminal=view.failed_terminal,
        percent=min(100.0, max(0.0, view.percent)),
        throughput_per_min=max(0.0, view.throughput_per_min),
        eta_seconds=view.eta_seconds,
        cooling_until=view.cooling_until,
        workers=tuple(
            WorkerStat(
                worker_id=w.worker_id,
                account_id=w.account_id[:128],
                done=w.done,
                failed=w.failed,
                rate_limited=w.rate_limited,
                success_rate=w.success_rate,
                mean_latency=min(w.mean_latency, 604800.0) if w.mean_latency else w.mean_latency,
                p95_latency=min(w.p95_latency, 604800.0) if w.p95_latency else w.p95_latency,
                connected=w.connected,
                cooling_until=w.cooling_until,
            )
            for w in view.workers[:256]
        ),
    )


def _errors(job_id: str, groups: list[ErrorGroupView]) -> Errors:
    items = []
    for group in groups:
        try:
            kind = ErrorKind(group.kind)
        except ValueError:
            kind = ErrorKind.PAGE_ERROR
        items.append(
            ErrorGroup(
                kind=kind,
                count=max(1, group.count),
                message=group.message[:4096],
                last_at=group.last_at,
                task_ids=tuple(str(t) for t in group.task_ids[:20]),
            )
        )
    return Errors(job_id=job_id, ts=time.time(), groups=tuple(items[:100]))


def _summary(view: JobView) -> JobSummary:
    return JobSummary(
        job_id=view.job_id,
        name=view.name[:200],
        state=view.state,
        total=view.total,
        done=view.done,
        failed_terminal=view.failed_terminal,
        created_at=view.created_at,
    )


__all__ = ["ClientRequests"]
