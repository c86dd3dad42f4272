"""The hub's job service: a durable queue of jobs run one at a time by whichever workers are
connected. Pure asyncio and the store — no sockets (``server/`` adapts it to the protocol)
and no Qt (the GUI will call the same methods).

Why one job at a time: every worker is a paid ChatGPT tab and the accounts' rate limits are
shared; splitting tabs between jobs would only make each job slower and its ETA a guess. Jobs
wait in order of priority, then submission. Pausing the running job stops new dispatch, lets
its attempts in flight finish (up to their lease) and moves on to the next job.

Every SQLite call goes through one store thread, so the event loop (and later the GUI) never
waits on the disk; the job runner keeps its own writer thread as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from novelgen_desktop.engine.composition import COMPOSITION_KEY
from novelgen_desktop.engine.joblock import JobBusyError, JobLock
from novelgen_desktop.engine.jobs import JobOptions, create_job
from novelgen_desktop.engine.model import (
    DEFAULT_MAX_CHAT_TURNS,
    ChatStrategy,
    JobState,
    MemoryLevel,
    TaskState,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.orchestration import NOTHING_SWITCHES, OrchestrationTrip
from novelgen_desktop.engine.recovery import open_store, reconcile_job
from novelgen_desktop.engine.replaced import (
    ReplacedImage,
    RunnerStoppingError,
    drop_original,
    regenerated_message,
    set_aside,
    undo_set_aside,
)
from novelgen_desktop.engine.runner import JobRunner, RunSettings, planned_relative, task_slots
from novelgen_desktop.engine.scheduler import QueueMove, QueuePlace, Scheduler
from novelgen_desktop.engine.worker import Worker
from novelgen_desktop.errors import ConfigError, OutputError
from novelgen_desktop.flags.flagset import FixedFlags, FlagSource
from novelgen_desktop.output.imagecheck import InvalidImageError, inspect_image
from novelgen_desktop.output.naming import DEFAULT_TEMPLATE, NamingTemplate, TemplateError
from novelgen_desktop.output.writer import OutputExistsError, write_image_atomically
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import (
    EventLogged,
    JobRecord,
    JobUpdated,
    TaskQueuePlaced,
    TaskRecord,
    TaskReplaced,
    TaskRequeued,
)
from novelgen_desktop.style.apply import style_job
from novelgen_desktop.style.bible import StyleBible

log = logging.getLogger(__name__)

T = TypeVar("T")
ORIGIN_HUB = "hub"
"""``settings["origin"]`` of jobs submitted through the hub: the ones ``serve`` resumes."""
_TERMINAL_JOB = frozenset({JobState.FINISHED, JobState.INCOMPLETE, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    run: RunSettings = field(default_factory=lambda: RunSettings(wait_for_workers=True))
    out_root: Path | None = None  # default: DATA/output
    naming_template: str = DEFAULT_TEMPLATE


@dataclass(frozen=True, slots=True)
class WorkerView:
    worker_id: str
    account_id: str
    done: int
    failed: int
    rate_limited: int
    success_rate: float | None
    mean_latency: float | None
    p95_latency: float | None
    connected: bool
    cooling_until: float | None


@dataclass(frozen=True, slots=True)
class JobView:
    """One job's progress, whether it runs now or waits in the queue."""

    job_id: str
    name: str
    state: JobState
    total: int
    done: int
    failed_terminal: int
    percent: float
    throughput_per_min: float
    eta_seconds: float | None
    cooling_until: float | None
    created_at: float
    active: bool
    failures_seen: int  # failed attempts so far: a change means the error groups changed
    workers: tuple[WorkerView, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task as the task table shows it (live for the running job)."""

    task_id: int
    seq: int
    chapter: str | None
    page: int | None
    panel: int | None
    variant: int
    prompt: str
    state: TaskState
    attempts: int
    failures: int
    worker_id: str | None
    duration: float | None  # seconds of the successful attempt
    error_kind: str | None
    error: str | None
    priority: int
    queue_position: int | None  # 1 = next to be dispatched; None when not queued
    planned_path: str
    output_path: str | None
    source: str | None
    finished_at: float | None
    # How the prompt was composed (a style bible): the panel's own text, who is in it, and
    # the bible version. ``description`` is None when the prompt was not composed.
    characters: tuple[str, ...] = ()
    description: str | None = None
    style_version: str | None = None


@dataclass(frozen=True, slots=True)
class TaskTable:
    """A job's task rows (``queue_position`` left empty) and the queue positions apart."""

    rows: list[TaskRow]
    positions: dict[int, int]  # task id -> place in the queue, 1 = next


@dataclass(frozen=True, slots=True)
class ErrorGroupView:
    kind: str
    message: str
    count: int
    last_at: float | None
    task_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MemoryStatus:
    """The memory governor's state as the service publishes it (GUI, protocol clients)."""

    ts: float
    state: MemoryLevel
    previous: MemoryLevel
    system_percent: float
    reason: str = ""
    held_workers: tuple[str, ...] = ()


class JobService:
    """Submit, list, control and watch jobs; run them with the workers the hub attaches."""

    def __init__(
        self,
        paths: DataPaths,
        settings: ServiceSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        flags: FlagSource | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings or ServiceSettings()
        # The live feature flags every job's runner reads (see set_flags).
        self.flags: FlagSource = flags or FixedFlags()
        # Who switches to the single-tab fallback when a job's tabs keep failing together
        # (the flag wiring of the hub or the window); None: the runner only logs it.
        self.on_orchestration_failing: Callable[[OrchestrationTrip], str] | None = None
        if not self.settings.run.wait_for_workers:
            self.settings = replace(
                self.settings, run=replace(self.settings.run, wait_for_workers=True)
            )
        self.clock = clock
        self.workers: dict[str, Worker] = {}
        self.runner: JobRunner | None = None
        self.active_job: JobRecord | None = None
        self._store: Store | None = None
        self._db_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        self._wake = asyncio.Event()
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._busy_jobs: set[str] = set()  # locked by another process: not retried until restart
        self._resume_when_stopped: set[str] = set()
        # The job being reconciled before its runner exists: a late image for it waits for
        # the runner (parked, it would land after reconcile and be drawn again).
        self._starting_job: str | None = None
        self._started = asyncio.Event()
        self._run_over = asyncio.Event()  # set when the job being run has fully stopped
        self._gate = asyncio.Lock()  # job start vs the author's changes to a stored job
        self._changed_callbacks: list[Callable[[], None]] = []
        self._event_callbacks: list[Callable[[EventLogged], None]] = []
        # The task table of the job on screen (store thread only): unchanged rows are reused.
        self._row_cache: dict[str, _TaskTable] = {}
        self._stale_tables: set[str] = set()  # a prompt changed: read the fixed columns again
        # Workers the author paused: every job's runner keeps away from them.
        self.held_workers: set[str] = set()
        # The memory governor's holds, applied to every job's runner (see set_memory_hold).
        self._memory_hold: tuple[str | None, frozenset[str]] = (None, frozenset())
        self.memory_status: MemoryStatus | None = None
        self._memory_callbacks: list[Callable[[MemoryStatus], None]] = []
        # Per-worker figures of the last run of each job (a finished job's final progress
        # still says who did what); bounded.
        self._last_workers: dict[str, tuple[WorkerView, ...]] = {}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (and if need be repair) the store, then start taking jobs."""
        store, recovery = await self._in_thread(open_store, self.paths)
        self._store = store
        if recovery is not None:
            log.warning("store recovery: %s", recovery.describe())
        self._dispatcher = asyncio.create_task(self._dispatch(), name="job-dispatcher")

    async def stop(self) -> None:
        """Stop running jobs (see :meth:`stop_running`), then close the store."""
        await self.stop_running()
        await self.close()

    async def stop_running(self) -> None:
        """Stop dispatching; attempts in flight may finish within the run's ``stop_grace``;
        the job's state and a snapshot are written. Views still work (the hub reports the
        final states to its clients before it says ``bye``)."""
        self._stopping = True
        self._wake.set()
        if self.runner is not None:
            self.runner.request_stop()
        if self._dispatcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    async def close(self) -> None:
        if self._store is not None:
            await self._in_thread(self._store.close)
            self._store = None
        self._db_thread.shutdown(wait=True)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a job starts, stops or changes state (for subscribers)."""
        self._changed_callbacks.append(callback)

    def remove_on_change(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._changed_callbacks.remove(callback)

    def on_event(self, callback: Callable[[EventLogged], None]) -> None:
        """Call ``callback`` with every engine event as it happens (the GUI's log)."""
        self._event_callbacks.append(callback)

    def remove_on_event(self, callback: Callable[[EventLogged], None]) -> None:
        with contextlib.suppress(ValueError):
            self._event_callbacks.remove(callback)

    def _emit(self, event: EventLogged) -> None:
        for callback in self._event_callbacks:
            try:
                callback(event)
            except Exception:  # a view must never break the service
                log.exception("event callback failed")

    def log_event(
        self,
        level: str,
        kind: str,
        message: str,
        *,
        job_id: str | None = None,
        worker_id: str | None = None,
        task_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Record an event that no job runner logs (a job submitted, a worker connected) and
        tell the subscribers at once; the store write happens on the store thread."""
        event = EventLogged(
            ts=self.clock(),
            level=level,
            kind=kind,
            message=message,
            job_id=job_id,
            worker_id=worker_id,
            task_id=task_id,
            data=data,
        )
        self._emit(event)
        if self._store is not None:
            store = self._store
            with contextlib.suppress(RuntimeError):  # the store thread is shutting down
                self._db_thread.submit(store.apply, [event])

    # --- feature flags -----------------------------------------------------------------------

    def flags_changed(self) -> None:
        """The flag set changed (a kill switch, a rollback): the running job looks at its
        dispatch again now instead of at its next wake-up."""
        if self.runner is not None:
            self.runner.poke()

    def _orchestration_failing(self, trip: OrchestrationTrip) -> str:
        """A runner's breaker tripped: whoever owns the flags now (see the attribute)."""
        if self.on_orchestration_failing is None:
            return NOTHING_SWITCHES
        return self.on_orchestration_failing(trip)

    # --- the memory governor --------------------------------------------------------------

    def set_memory_hold(self, reason: str | None, held_workers: frozenset[str]) -> None:
        """The governor's decision: no new attempt for anyone while ``reason`` is set, nor
        for ``held_workers``. Kept for the next job's runner too; in-flight attempts go on.
        Unlike a pause, the job's state does not change."""
        self._memory_hold = (reason, held_workers)
        if self.runner is not None:
            self.runner.set_memory_hold(reason, held_workers)

    @property
    def memory_hold(self) -> tuple[str | None, frozenset[str]]:
        return self._memory_hold

    def recall_unpaid(self, reason: str) -> int:
        """Call back attempts not yet sent to ChatGPT (memory critical); how many."""
        return len(self.runner.recall_unpaid(reason)) if self.runner is not None else 0

    def on_memory(self, callback: Callable[[MemoryStatus], None]) -> None:
        """Call ``callback`` with every change of the governor's state."""
        self._memory_callbacks.append(callback)

    def remove_on_memory(self, callback: Callable[[MemoryStatus], None]) -> None:
        with contextlib.suppress(ValueError):
            self._memory_callbacks.remove(callback)

    def publish_memory(self, status: MemoryStatus) -> None:
        self.memory_status = status
        for callback in list(self._memory_callbacks):
            try:
                callback(status)
            except Exception:  # a view must never break the service
                log.exception("memory callback failed")

    def last_worker_views(self) -> tuple[WorkerView, ...]:
        """Per-worker figures of the running job, or else of the job that ran last."""
        if self.runner is not None:
            return self._worker_views(self.runner)
        if self._last_workers:
            return next(reversed(self._last_workers.values()))
        return ()

    def _changed(self) -> None:
        for callback in self._changed_callbacks:
            try:
                callback()
            except Exception:  # a view must never break the service
                log.exception("job change callback failed")

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, func, *args)

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the job service is not started")
        return self._store

    # --- workers --------------------------------------------------------------------------

    def add_worker(self, worker: Worker) -> None:
        """A worker connected (or reconnected): give it work from the running job."""
        self.workers[worker.worker_id] = worker
        if self.runner is not None:
            self.runner.add_worker(worker)
        self._wake.set()

    def worker_changed(self, worker: Worker) -> None:
        """A worker's health changed: dispatch looks again."""
        if self.runner is not None:
            self.runner.poke()
        self._wake.set()

    def deliver_late(self, worker: Worker, outcome: WorkerOutcome) -> str:
        """A result for an attempt the worker no longer holds; the verdict is the ``ack``."""
        runner = self.runner
        if runner is None or outcome.task_id not in runner.tasks:
            return "unknown"
        return runner.deliver_late(worker, outcome)

    async def deliver_unverified(self, worker: Worker, outcome: WorkerOutcome) -> str | None:
        """An outcome for an attempt this process never issued: one issued before a restart
        of the hub, whose image the worker kept and resends. Accepted if the store shows that
        attempt as this worker's (None otherwise: the hub refuses it as ``unknown_task``).

        If the task's job is running, the result is judged like any late result. If not (the
        job is paused, or waits behind another), the image is written to the task's planned
        path, where the next run of the job adopts it — it was paid for; it is not redrawn.
        """
        if self._store is None:
            return None
        owner = await self._in_thread(self.store.attempt_owner, outcome.task_id, outcome.attempt)
        if owner is None or owner[0] != worker.worker_id:
            return None
        if self._starting_job == owner[1]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), 60.0)
        runner = self.runner
        if runner is not None and outcome.task_id in runner.tasks:
            return runner.deliver_late(worker, outcome)
        if not isinstance(outcome, WorkerResult):
            return "accepted"  # a failure of an attempt nobody waits for: nothing to do
        verdict = await self._in_thread(self._park_image, owner[1], outcome)
        result_kept = getattr(worker, "result_kept", None)
        if result_kept is not None:  # the file is written (or refused): the ack may go
            result_kept(outcome.task_id, outcome.attempt, verdict)
        log.info(
            "late image for task %d attempt %d of job %s (not running): %s",
            outcome.task_id,
            outcome.attempt,
            owner[1],
            verdict,
        )
        return verdict

    def _park_image(self, job_id: str, result: WorkerResult) -> str:
        task = self.store.load_task(result.task_id)
        if task is None:
            return "unknown"
        if task.state is TaskState.DONE:
            return "duplicate"
        try:
            info = inspect_image(result.image)
        except InvalidImageError:
            return "unknown"  # not an image: nothing worth keeping
        job = self.store.find_job(job_id, exact=True)
        try:
            write_image_atomically(Path(job.out_dir), planned_relative(task, info), result.image)
        except OutputExistsError:
            return "duplicate"
        except OutputError as exc:
            log.warning("could not keep a late image of task %d: %s", task.id, exc)
            return "unknown"
        return "accepted"

    def _connected_workers(self) -> list[Worker]:
        return [w for w in self.workers.values() if getattr(w, "connected", True)]

    # --- jobs -----------------------------------------------------------------------------

    async def submit(
        self,
        name: str,
        specs: Sequence[PromptSpec],
        *,
        out_root: Path | None = None,
        naming: str | None = None,
        priority: int = 0,
        sources: Sequence[str] = (),
        style: StyleBible | None = None,
        chat_strategy: ChatStrategy | str = ChatStrategy.PANEL,
        max_chat_turns: int = DEFAULT_MAX_CHAT_TURNS,
    ) -> tuple[JobRecord, int]:
        """Create a durable job (tasks, first snapshot) and queue it. ConfigError on a bad
        naming template or output folder.

        With a ``style`` bible every prompt is composed first (PromptImportError lists each
        panel that cannot be); ``chat_strategy`` decides how prompts share conversations.
        """
        if not specs:
            raise ConfigError("the job has no prompts")
        styled = await self._in_thread(
            lambda: style_job(specs, style, chat_strategy, max_chat_turns)
        )
        template = naming or self.settings.naming_template
        try:
            NamingTemplate(template)
        except TemplateError as exc:
            raise ConfigError(f"naming template {template!r}: {exc}") from exc
        root = out_root or self.settings.out_root or self.paths.default_output_dir
        options = JobOptions(
            name=name,
            out_root=root,
            naming_template=template,
            sources=tuple(sources),
            settings={"origin": ORIGIN_HUB, "priority": priority, **styled.settings},
            references=styled.references,
        )

        def create() -> tuple[JobRecord, int]:
            job, tasks = create_job(self.store, self.paths, styled.specs, options)
            return job, len(tasks)

        try:
            job, count = await self._in_thread(create)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder under {root}: {exc}") from exc
        log.info("job %s submitted: %d task(s)", job.id, count)
        self.log_event(
            "info", "job_submitted", f"job {job.name} submitted: {count} task(s)", job_id=job.id
        )
        self._wake.set()
        self._changed()
        return job, count

    async def find_job(self, job_id: str) -> JobRecord:
        """The job with exactly this id (no prefixes: a program names a job by its id, and a
        prefix could pause the wrong job); JobNotFoundError otherwise."""
        return await self._in_thread(lambda: self.store.find_job(job_id, exact=True))

    async def list_jobs(self, states: Sequence[JobState] = (), limit: int = 100) -> list[JobView]:
        """Newest first."""

        def rows() -> list[JobView]:
            jobs = sorted(self.store.list_jobs(), key=lambda j: j.created_at, reverse=True)
            views = []
            for job in jobs:
                view = self._view_from_store(job)
                if states and view.state not in states:
                    continue
                views.append(view)
                if len(views) >= limit:
                    break
            return views

        views = await self._in_thread(rows)
        return [self._live_view(v) if self._is_active(v.job_id) else v for v in views]

    async def recent_jobs(self, limit: int = 100) -> list[JobRecord]:
        """Newest first, as recorded — no per-job counts (cheap enough for every tick of a
        progress stream)."""

        def rows() -> list[JobRecord]:
            jobs = sorted(self.store.list_jobs(), key=lambda j: j.created_at, reverse=True)
            return jobs[:limit]

        return await self._in_thread(rows)

    async def view(self, job_id: str, *, workers: bool = True) -> JobView:
        active, runner = self.active_job, self.runner
        if active is not None and runner is not None and job_id == active.id:
            # The running job is followed every interval by every subscriber: answer from
            # memory, without touching the store.
            base = JobView(
                job_id=active.id,
                name=active.name,
                state=JobState.RUNNING,
                total=len(runner.tasks),
                done=0,
                failed_terminal=0,
                percent=0.0,
                throughput_per_min=0.0,
                eta_seconds=None,
                cooling_until=None,
                created_at=active.created_at,
                active=True,
                failures_seen=0,
            )
            return self._live_view(base, workers)
        job = await self.find_job(job_id)
        return await self._in_thread(self._view_from_store, job)

    async def error_groups(self, job_id: str, limit: int = 100) -> list[ErrorGroupView]:
        return (await self.error_report(job_id, limit))[1]

    async def error_report(self, job_id: str, limit: int = 100) -> tuple[int, list[ErrorGroupView]]:
        """The failed attempts *recorded* so far and their groups, read together: the running
        job's in-memory count runs ahead of the store by one group commit, so a stream that
        remembers this count (not the live one) sends the groups again once they catch up."""
        job = await self.find_job(job_id)

        def read() -> tuple[int, list[tuple[str, str, int, float | None, list[int]]]]:
            return self.store.failed_attempts(job.id), self.store.error_groups(job.id, limit, 20)

        total, rows = await self._in_thread(read)
        return total, [
            ErrorGroupView(
                kind=kind, message=message, count=count, last_at=last_at, task_ids=tuple(ids)
            )
            for kind, message, count, last_at, ids in rows
        ]

    async def pause(self, job_id: str) -> JobState:
        job = await self.find_job(job_id)
        self._resume_when_stopped.discard(job.id)
        if self._is_active(job.id) and self.runner is not None:
            if not self.runner.scheduler.paused:
                self.runner.pause()
                # In-flight attempts may finish (an image being drawn is paid for already).
                self.runner.request_stop(grace=self.runner.settings.policy.lease_seconds)
            self._changed()
            return JobState.PAUSED
        if job.state in _TERMINAL_JOB:
            raise ConfigError(f"job {job.id} is {job.state.value}; there is nothing to pause")
        await self._in_thread(self.store.set_job_state, job.id, JobState.PAUSED)
        self._changed()
        return JobState.PAUSED

    async def resume(self, job_id: str) -> JobState:
        job = await self.find_job(job_id)
        if self._is_active(job.id) and self.runner is not None:
            if self.runner.scheduler.paused:  # still letting its attempts finish
                self._resume_when_stopped.add(job.id)
            return JobState.RUNNING
        if job.state in _TERMINAL_JOB:
            raise ConfigError(
                f"job {job.id} is {job.state.value}; only a running or paused job can resume"
            )

        def resume() -> None:
            self.store.set_job_state(job.id, JobState.RUNNING)
            if job.settings.get("origin") != ORIGIN_HUB:
                # A job started from the command line joins the hub's queue once resumed here.
                self.store.set_job_settings(job.id, {**job.settings, "origin": ORIGIN_HUB})

        await self._in_thread(resume)
        self._busy_jobs.discard(job.id)
        self._wake.set()
        self._changed()
        return JobState.RUNNING

    async def cancel(self, job_id: str) -> JobState:
        """Cancel the job: the running one through its runner; a stored one under its lock,
        holding the gate so the dispatcher cannot start it meanwhile (it would find the
        lock taken and skip the job), after waiting for a job that is being started."""
        job = await self.find_job(job_id)
        self._resume_when_stopped.discard(job.id)

        def cancel() -> None:
            with JobLock(self.paths.job_lock(job.id), job.id):
                self.store.cancel_job(job.id)

        for _ in range(5):
            async with self._gate:
                if self._is_active(job.id) and self.runner is not None:
                    self.runner.cancel()
                    self._changed()
                    return JobState.CANCELLED
                if self._starting_job != job.id:
                    job = await self.find_job(job.id)
                    if job.state in _TERMINAL_JOB:
                        raise ConfigError(f"job {job.id} is already {job.state.value}")
                    try:
                        await self._in_thread(cancel)
                    except JobBusyError as exc:
                        raise ConfigError(str(exc)) from exc
                    self._changed()
                    return JobState.CANCELLED
                started = self._started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), 60.0)
        raise ConfigError(f"job {job.id} is starting; try again in a moment")

    # --- the author's queue actions (GUI) --------------------------------------------------

    async def _editable_job(self, job_id: str) -> JobRecord:
        job = await self.find_job(job_id)
        if job.state is JobState.CANCELLED and not self._is_active(job.id):
            raise ConfigError(f"job {job.id} is cancelled; its tasks cannot change")
        return job

    def _locked_store_change(
        self, job: JobRecord, change: Callable[[list[TaskRecord]], list[Any]]
    ) -> list[Any]:
        """Run ``change`` over the tasks of a job that is not running, under its lock (a
        ``novelgen run`` in another process may hold it) and apply the operations it returns
        in one transaction."""
        with JobLock(self.paths.job_lock(job.id), job.id):
            ops = change(self.store.load_tasks(job.id))
            if ops:
                self.store.apply(ops)
            return ops

    async def _offline(
        self, job: JobRecord, change: Callable[[list[TaskRecord]], list[Any]]
    ) -> list[Any]:
        try:
            return await self._in_thread(self._locked_store_change, job, change)
        except JobBusyError as exc:
            raise ConfigError(str(exc)) from exc

    async def _act(
        self,
        job_id: str,
        live: Callable[[JobRunner], list[int]],
        offline: Callable[[list[TaskRecord]], list[Any]],
    ) -> tuple[JobRecord, list[int], bool]:
        """Apply an action to the running job's runner (``live``) or, when the job does not
        run, to its stored tasks (``offline`` returns store operations, applied under the
        job's lock). Returns (job, ids of the tasks changed, whether it ran live).

        The gate keeps the dispatcher from starting the job while its stored tasks change
        (it would find its own lock taken and skip the job), and a job that is starting or
        winding down is waited for, so an action is never applied to a runner that will
        not record it."""
        job = await self._editable_job(job_id)
        for _ in range(5):
            async with self._gate:
                runner = self.runner if self._is_active(job.id) else None
                if runner is not None and not runner.winding_down:
                    return job, live(runner), True
                if runner is None and self._starting_job != job.id:
                    ops = await self._offline(job, offline)
                    ids = [op.task_id for op in ops if hasattr(op, "task_id")]
                    return job, list(dict.fromkeys(ids)), False
                event = self._run_over if runner is not None else self._started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 60.0)
        raise ConfigError(f"job {job.id} is starting or stopping; try again in a moment")

    async def move_tasks(self, job_id: str, task_ids: Sequence[int], where: QueueMove) -> int:
        """Move queued tasks to the top/bottom of the queue or one place up/down; returns
        how many tasks changed place."""

        def change(tasks: list[TaskRecord]) -> list[Any]:
            places = _offline_scheduler(tasks).move(task_ids, where)
            return [TaskQueuePlaced(p.task_id, p.priority, p.rank) for p in places]

        _job, moved, _live = await self._act(
            job_id, lambda runner: runner.move_tasks(task_ids, where), change
        )
        self._changed()
        return len(moved)

    async def change_priority(self, job_id: str, task_ids: Sequence[int], delta: int) -> int:
        """Raise (delta > 0) or lower the priority of unfinished tasks."""

        def change(tasks: list[TaskRecord]) -> list[Any]:
            places = _offline_scheduler(tasks).change_priority(task_ids, delta)
            return [TaskQueuePlaced(p.task_id, p.priority, p.rank) for p in places]

        _job, changed, _live = await self._act(
            job_id, lambda runner: runner.change_priority(task_ids, delta), change
        )
        self._changed()
        return len(changed)

    async def retry_tasks(
        self, job_id: str, task_ids: Sequence[int], *, prompt: str | None = None
    ) -> list[int]:
        """Requeue dead, refused or cancelled tasks (optionally with an edited prompt). A
        finished job runs again for them; a paused one stays paused."""
        if prompt is not None:
            prompt = prompt.strip()
            if not prompt:
                raise ConfigError("the edited prompt is empty")
        rerun = (JobState.FINISHED, JobState.INCOMPLETE)

        def change(tasks: list[TaskRecord]) -> list[Any]:
            revived = _offline_scheduler(tasks).retry(task_ids)
            ops: list[Any] = [TaskRequeued(task_id, prompt) for task_id in revived]
            job = self.store.find_job(job_id, exact=True)
            if ops and job.state in rerun:
                ops.append(JobUpdated(job.id, JobState.RUNNING))
                if job.settings.get("origin") != ORIGIN_HUB:
                    self.store.set_job_settings(job.id, {**job.settings, "origin": ORIGIN_HUB})
            return ops

        job, revived, live = await self._act(
            job_id, lambda runner: runner.retry_tasks(task_ids, prompt=prompt), change
        )
        if prompt is not None:
            self._stale_tables.add(job.id)
        if revived and not live:
            self._busy_jobs.discard(job.id)
            self._wake.set()
        if revived:
            log.info("job %s: %d task(s) requeued by the author", job.id, len(revived))
        self._changed()
        return revived

    async def retry_all_dead(self, job_id: str, *, include_refused: bool = False) -> list[int]:
        states = {TaskState.DEAD, TaskState.REFUSED} if include_refused else {TaskState.DEAD}
        rows = await self.task_rows(job_id)
        return await self.retry_tasks(job_id, [r.task_id for r in rows if r.state in states])

    async def edit_prompt(self, job_id: str, task_id: int, prompt: str) -> None:
        """Give a task that did not produce an image (refused, dead, cancelled) a new prompt
        and queue it again. ConfigError if the task is not one of those."""
        revived = await self.retry_tasks(job_id, [task_id], prompt=prompt)
        if not revived:
            rows = {r.task_id: r for r in await self.task_rows(job_id)}
            row = rows.get(task_id)
            state = row.state.value if row is not None else "not in this job"
            raise ConfigError(
                f"task {task_id} is {state}: only a refused, dead or cancelled task can be "
                "edited and requeued"
            )

    def hold_worker(self, worker_id: str, held: bool) -> None:
        """Pause (or resume) dispatch to one worker, in this job and the next ones."""
        if held:
            self.held_workers.add(worker_id)
        else:
            self.held_workers.discard(worker_id)
        if self.runner is not None:
            self.runner.hold_worker(worker_id, held)
        self._wake.set()
        self._changed()

    async def task_rows(self, job_id: str) -> list[TaskRow]:
        """Every task of a job with its queue position: the store's rows, overlaid with the
        scheduler's live state when the job runs (the store lags by one group commit)."""
        table = await self.task_table(job_id)
        return [
            replace(row, queue_position=table.positions[row.task_id])
            if row.task_id in table.positions
            else row
            for row in table.rows
        ]

    async def task_table(self, job_id: str) -> TaskTable:
        """The task table as a view refreshes it twice a second: rows without their queue
        position (which shifts for every queued task whenever one is dispatched) and the
        positions apart, so an unchanged row stays the same object between calls and a view
        finds the changed rows by identity.

        For a job of 10,000 tasks with ten workers delivering, the event loop only copies
        the scheduler's few live fields; reading, merging and ordering happen on the store
        thread."""
        job = await self.find_job(job_id)
        runner = self.runner if self._is_active(job.id) else None
        live: list[tuple[int, TaskState, int, int, int, tuple[int, float]]] | None = None
        leases: dict[int, str] = {}
        if runner is not None:
            live = [
                (s.id, s.state, s.attempts, s.failures, s.priority, s.order)
                for s in runner.scheduler.tasks.values()
            ]
            leases = {tid: lease.worker_id for tid, lease in runner.scheduler.leases.items()}
        return await self._in_thread(self._build_task_rows, job.id, live, leases)

    async def task_compositions(
        self, job_id: str
    ) -> dict[int, tuple[tuple[str, ...], dict[str, Any]]]:
        """Each task's cast and ``metadata["composition"]`` (how a style bible composed its
        prompt), by task id, for tasks that have either. Fixed when the job was created."""
        job = await self.find_job(job_id)

        def read() -> dict[int, tuple[tuple[str, ...], dict[str, Any]]]:
            found: dict[int, tuple[tuple[str, ...], dict[str, Any]]] = {}
            for task in self.store.iter_task_dicts(job.id):
                composition = task["metadata"].get(COMPOSITION_KEY)
                data = composition if isinstance(composition, dict) else {}
                if data or task["characters"]:
                    found[task["id"]] = (tuple(task["characters"]), data)
            return found

        return await self._in_thread(read)

    def _build_task_rows(
        self,
        job_id: str,
        live: list[tuple[int, TaskState, int, int, int, tuple[int, float]]] | None,
        leases: dict[int, str],
    ) -> TaskTable:
        """Runs on the store thread. The prompt and the other fixed columns are read once
        per job; while the job runs, only tasks whose live state moved are read again (and
        every few seconds all of them, narrowly), so a refresh of a 10,000-task table costs
        little even with ten workers delivering."""
        now = time.monotonic()
        table = self._row_cache.get(job_id)
        if table is None or job_id in self._stale_tables:
            self._stale_tables.discard(job_id)
            table = _TaskTable(job_id, _static_columns(self.store, job_id))
            self._row_cache = {job_id: table}  # one job's table is kept: the one on screen
        if live is None or now - table.full_read_at > _FULL_READ_EVERY:
            wanted: Sequence[int] | None = None
        else:
            moved = {item[0] for item in live if table.live.get(item[0]) != item}
            wanted = sorted(moved | table.lagging)
        if wanted is None or wanted:
            for progress in self.store.task_progress_rows(job_id, wanted):
                table.progress[progress[0]] = progress
            if wanted is None:
                table.full_read_at = now
        table.lagging.clear()
        overlay: dict[int, tuple[int, TaskState, int, int, int, tuple[int, float]]] = {}
        if live is not None:
            overlay = {item[0]: item for item in live}
            table.live = overlay
            queued = sorted((item[5], item[0]) for item in live if item[1] is TaskState.QUEUED)
            order = [task_id for _key, task_id in queued]
        else:
            table.live = {}
            order = _stored_queue_order(table.progress.values())
        positions = {task_id: index for index, task_id in enumerate(order, start=1)}
        rows = []
        for task_id, fixed in table.static.items():
            stored = table.progress.get(task_id)
            if stored is None:
                continue  # added after the fixed columns were read: the next full read
            progress = stored
            item = overlay.get(task_id)
            state = TaskState(progress[1])
            attempts, failures, priority = progress[2], progress[3], progress[4]
            if item is not None:
                if item[1] is not state:
                    table.lagging.add(task_id)  # the store catches up at its next commit
                state, attempts, failures, priority = item[1], item[2], item[3], item[4]
            key = (
                state,
                attempts,
                failures,
                priority,
                leases.get(task_id, progress[7]),
                progress[8:],
            )
            row = table.rows.get(task_id)
            if row is None or table.keys.get(task_id) != key:
                seq, chapter, page, panel, variant, prompt, planned_path, source, style = fixed
                row = TaskRow(
                    task_id=task_id,
                    seq=seq,
                    chapter=chapter,
                    page=page,
                    panel=panel,
                    variant=variant,
                    prompt=prompt,
                    state=state,
                    attempts=attempts,
                    failures=failures,
                    worker_id=key[4],
                    duration=max(0.0, progress[12]) if progress[12] is not None else None,
                    error_kind=progress[8],
                    error=progress[9],
                    priority=priority,
                    queue_position=None,  # in TaskTable.positions
                    planned_path=planned_path,
                    output_path=progress[10],
                    source=source,
                    finished_at=progress[11],
                    characters=style[0],
                    description=style[1],
                    style_version=style[2],
                )
                table.rows[task_id] = row
                table.keys[task_id] = key
            rows.append(row)
        return TaskTable(rows, positions)

    async def recent_events(
        self, job_id: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Logged events, oldest first: of one job, or of every job."""
        if job_id is None:
            return await self._in_thread(lambda: self.store.recent_events(limit=limit))
        return await self._in_thread(lambda: self.store.events(job_id, limit=limit))

    # --- views ----------------------------------------------------------------------------

    def _remember_workers(self, job_id: str, views: tuple[WorkerView, ...]) -> None:
        self._last_workers.pop(job_id, None)
        self._last_workers[job_id] = views
        while len(self._last_workers) > 64:
            self._last_workers.pop(next(iter(self._last_workers)))

    def _worker_views(self, runner: JobRunner) -> tuple[WorkerView, ...]:
        now = self.clock()
        return tuple(
            WorkerView(
                worker_id=s.worker_id,
                account_id=s.account_id,
                done=s.done,
                failed=s.failed,
                rate_limited=s.rate_limited,
                success_rate=s.success_rate,
                mean_latency=s.mean_latency,
                p95_latency=s.p95_latency,
                connected=bool(getattr(self.workers.get(s.worker_id), "connected", False)),
                cooling_until=_cooling(runner, s.account_id, now),
            )
            for s in runner.progress.workers.values()
        )

    def _is_active(self, job_id: str) -> bool:
        return self.active_job is not None and self.active_job.id == job_id

    def _view_from_store(self, job: JobRecord) -> JobView:
        counts = self.store.count_by_state(job.id)
        total = sum(counts.values())
        done = counts[TaskState.DONE]
        failed = counts[TaskState.DEAD] + counts[TaskState.REFUSED] + counts[TaskState.CANCELLED]
        return JobView(
            job_id=job.id,
            name=job.name,
            state=job.state,
            total=total,
            done=done,
            failed_terminal=failed,
            percent=round(100.0 * done / total, 2) if total else 100.0,
            throughput_per_min=0.0,
            eta_seconds=None,
            cooling_until=None,
            created_at=job.created_at,
            active=False,
            failures_seen=self.store.failed_attempts(job.id),
            workers=self._last_workers.get(job.id, ()),
        )

    def _live_view(self, base: JobView, workers: bool = True) -> JobView:
        runner = self.runner
        if runner is None:
            return base
        status = runner.status()
        progress = status.progress
        state = JobState.PAUSED if status.paused else JobState.RUNNING
        if runner.scheduler.cancelled:
            state = JobState.CANCELLED
        stats = runner.progress.workers.values()
        worker_views = self._worker_views(runner) if workers else ()
        return replace(
            base,
            state=state,
            done=progress.done,
            failed_terminal=progress.failed_terminal,
            percent=round(progress.percent, 2),
            throughput_per_min=progress.throughput_per_min,
            eta_seconds=progress.eta_seconds,
            cooling_until=progress.cooling_until,
            active=True,
            failures_seen=sum(s.failed for s in stats),
            workers=worker_views,
        )

    # --- the queue ------------------------------------------------------------------------

    def _next_runnable(self) -> JobRecord | None:
        candidates = [
            job
            for job in self.store.list_jobs()
            if job.state is JobState.RUNNING
            and job.settings.get("origin") == ORIGIN_HUB
            and job.id not in self._busy_jobs
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda j: (-int(j.settings.get("priority") or 0), j.created_at))

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._wake.clear()
            job = await self._in_thread(self._next_runnable)
            if job is None or not self._connected_workers():
                await self._wake.wait()
                continue
            try:
                await self._run(job)
            except Exception:
                # A job that cannot run must not take the hub down; it is logged and skipped
                # until the next start.
                log.exception("job %s failed to run", job.id)
                self._busy_jobs.add(job.id)

    async def _run(self, job: JobRecord) -> None:
        lock = JobLock(self.paths.job_lock(job.id), job.id)
        async with self._gate:
            try:
                lock.acquire()
            except JobBusyError as exc:
                log.warning("%s; skipping it", exc)
                self._busy_jobs.add(job.id)
                return
            self._starting_job, self._started = job.id, asyncio.Event()
            self._run_over = asyncio.Event()
        try:
            report = await self._in_thread(reconcile_job, self.store, job)
            if report.changed:
                log.info("job %s: %s", job.id, report.describe())
            job = await self.find_job(job.id)
            cooldowns = await self._in_thread(self.store.cooldowns, self.clock())
            runner = JobRunner(
                self.paths,
                job,
                report.tasks,
                self._connected_workers(),
                self.settings.run,
                cooldowns=cooldowns,
                clock=self.clock,
                flags=self.flags,
            )
            runner.on_event = self._emit
            runner.on_orchestration_failing = self._orchestration_failing
            for worker_id in self.held_workers:
                runner.scheduler.hold_worker(worker_id, True)
            runner.set_memory_hold(*self._memory_hold)
            self.runner, self.active_job = runner, job
            self._started.set()
            if self._stopping:  # stop() came while the job was being reconciled
                runner.request_stop()
            self._changed()
            log.info("job %s started", job.id)
            self.log_event("info", "job_started", f"job {job.name} started", job_id=job.id)
            summary = await runner.run()
            log.info("job %s stopped: %s", job.id, summary.state.value)
            self.log_event(
                "info" if summary.state is JobState.FINISHED else "warning",
                f"job_{summary.state.value}",
                f"job {job.name} {summary.state.value}: "
                f"{summary.counts[TaskState.DONE]}/{len(runner.tasks)} done",
                job_id=job.id,
            )
        finally:
            self._starting_job = None
            self._started.set()
            if self.runner is not None:
                self._remember_workers(job.id, self._worker_views(self.runner))
            self.runner, self.active_job = None, None
            lock.release()
            self._run_over.set()
            if job.id in self._resume_when_stopped:
                self._resume_when_stopped.discard(job.id)
                await self._in_thread(self.store.set_job_state, job.id, JobState.RUNNING)
            self._changed()

    # --- regenerating a finished image ------------------------------------------------------

    async def regenerate_task(self, job_id: str, task_id: int) -> ReplacedImage:
        """Draw a finished panel again: its image is set aside under ``.replaced/`` in the
        job's output folder (never deleted: it was paid for), its done attempt becomes
        ``replaced`` and the task is queued. A finished job runs again for it; a paused one
        stays paused. ConfigError if the task has no finished image."""
        job = await self._editable_job(job_id)
        for _ in range(5):
            async with self._gate:
                runner = self.runner if self._is_active(job.id) else None
                pending: Awaitable[ReplacedImage] | None = None
                if runner is not None:
                    with contextlib.suppress(RunnerStoppingError):
                        pending = runner.regenerate(task_id, self._stored_task)
                elif self._starting_job != job.id:
                    stored = await self._in_thread(self._regenerate_stored, job.id, task_id)
                    return await self._regenerated_offline(job, stored)
                event = self._run_over if runner is not None else self._started
            if pending is not None:
                replaced = await pending  # the runner logs the event
                self._changed()
                return replaced
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 60.0)
        raise ConfigError(f"job {job.id} is starting or stopping; try again in a moment")

    async def _stored_task(self, task_id: int) -> TaskRecord | None:
        return await self._in_thread(self.store.load_task, task_id)

    def _regenerate_stored(
        self, job_id: str, task_id: int
    ) -> tuple[ReplacedImage, bool, OutputError | None]:
        """The offline half (store thread, under the job's lock): set aside, record, free
        the planned path. Returns what was done, whether the job runs again, and an error
        freeing the planned path (recorded already: the next run adopts the old image)."""
        job = self.store.find_job(job_id, exact=True)
        with JobLock(self.paths.job_lock(job.id), job.id):
            task = self.store.load_task(task_id)
            if task is None or task.job_id != job.id:
                raise ConfigError(f"task {task_id} is not in job {job.id}")
            if job.state is JobState.CANCELLED:
                raise ConfigError(f"job {job.id} is cancelled; its tasks cannot change")
            if task.state is not TaskState.DONE:
                raise ConfigError(
                    f"task {task_id} is {task.state.value}: only a finished image can be "
                    "regenerated"
                )
            out_dir = Path(job.out_dir)
            moved_to = set_aside(out_dir, task)
            rerun = job.state in (JobState.FINISHED, JobState.INCOMPLETE)
            ops: list[Any] = [TaskReplaced(task.id)]
            if rerun:
                ops.append(JobUpdated(job.id, JobState.RUNNING))
            try:
                if rerun and job.settings.get("origin") != ORIGIN_HUB:
                    self.store.set_job_settings(job.id, {**job.settings, "origin": ORIGIN_HUB})
                self.store.apply(ops)
            except BaseException:
                undo_set_aside(out_dir, moved_to)
                raise
            problem: OutputError | None = None
            try:
                drop_original(out_dir, job.id, task, moved_to, self.clock())
            except OutputError as exc:
                problem = exc
        return ReplacedImage(task.id, task.output_path, moved_to, True), rerun, problem

    async def _regenerated_offline(
        self, job: JobRecord, stored: tuple[ReplacedImage, bool, OutputError | None]
    ) -> ReplacedImage:
        replaced, rerun, problem = stored
        if rerun:
            self._busy_jobs.discard(job.id)
            self._wake.set()
        self.log_event(
            "info",
            "task_regenerated",
            regenerated_message(replaced.task_id, replaced.moved_to),
            job_id=job.id,
            task_id=replaced.task_id,
        )
        if problem is not None:
            self.log_event("error", "output_error", str(problem), job_id=job.id)
        self._changed()
        if problem is not None:
            raise problem
        return replaced


_FULL_READ_EVERY = 5.0
"""Seconds between full (narrow) reads of a running job's task table: errors and files are
caught even for a task whose live state did not move."""


@dataclass(slots=True)
class _TaskTable:
    """What the task table of one job was built from last time (store thread only)."""

    job_id: str
    static: dict[int, tuple[Any, ...]]
    progress: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    live: dict[int, tuple[int, TaskState, int, int, int, tuple[int, float]]] = field(
        default_factory=dict
    )
    rows: dict[int, TaskRow] = field(default_factory=dict)
    keys: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    lagging: set[int] = field(default_factory=set)  # live state ahead of the store
    full_read_at: float = float("-inf")


def _static_columns(store: Store, job_id: str) -> dict[int, tuple[Any, ...]]:
    rows = store.execute(
        "SELECT id, seq, chapter, page, panel, variant, prompt, planned_path, source, "
        "characters, metadata FROM tasks WHERE job_id = ? ORDER BY seq",
        (job_id,),
    ).fetchall()
    return {row[0]: (*tuple(row)[1:9], _style_columns(row[9], row[10])) for row in rows}


def _style_columns(
    characters: str, metadata: str
) -> tuple[tuple[str, ...], str | None, str | None]:
    """(characters, description, style version) from a task's stored JSON columns."""
    cast = tuple(json.loads(characters)) if characters != "[]" else ()
    if COMPOSITION_KEY not in metadata:  # most tasks of an unstyled job: skip the parse
        return cast, None, None
    composition = json.loads(metadata).get(COMPOSITION_KEY) or {}
    return cast, composition.get("description"), composition.get("version")


def _stored_queue_order(progress: Iterable[tuple[Any, ...]]) -> list[int]:
    """Queue order of a job that is not running: (priority desc, rank or seq, id)."""
    queued = [
        (-p[4], p[6] if p[5] is None else p[5], p[0])
        for p in progress
        if p[1] in (TaskState.QUEUED.value, TaskState.LEASED.value)
    ]
    return [task_id for *_key, task_id in sorted(queued)]


def _offline_scheduler(tasks: Sequence[TaskRecord]) -> Scheduler:
    """A scheduler over a stored job that is not running: the same queue rules decide."""
    scheduler = Scheduler()
    scheduler.load(task_slots(tasks))
    return scheduler


def _cooling(runner: JobRunner, account_id: str, now: float) -> float | None:
    until = runner.scheduler.cooldowns.get(account_id)
    return until if until is not None and until > now else None


def specs_from_prompts(
    prompts: Sequence[str], source: str = "<submit>"
) -> tuple[list[PromptSpec], int]:
    """Inline prompts from a client: one task each, in order; blank ones are skipped and
    counted (the ``skipped`` of ``submitted``)."""
    specs: list[PromptSpec] = []
    skipped = 0
    for number, text in enumerate(prompts, start=1):
        cleaned = text.strip()
        if not cleaned:
            skipped += 1
            continue
        specs.append(PromptSpec(text=cleaned, source=SourceLocation(source, number)))
    return specs, skipped


__all__ = [
    "ORIGIN_HUB",
    "ErrorGroupView",
    "JobService",
    "JobView",
    "QueueMove",
    "QueuePlace",
    "ServiceSettings",
    "TaskRow",
    "TaskTable",
    "WorkerView",
    "specs_from_prompts",
]
