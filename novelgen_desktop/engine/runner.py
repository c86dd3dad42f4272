"""The thin asyncio driver around the scheduler: workers, files, durability, progress.

It owns no policy. The scheduler decides; the runner carries decisions out in this order:
lease → ask the worker → validate the image → write it atomically (thread pool) → tell the
scheduler → queue the database/manifest records for the group-commit writer. Every
non-terminal step can be interrupted by SIGKILL; resume (see :mod:`.recovery`) rebuilds
whatever the next step would have recorded from what the previous step left on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from novelgen_desktop.engine.composition import (
    chat_strategy_of,
    composition_fields,
    reference_files,
    style_version_of,
)
from novelgen_desktop.engine.model import (
    Assignment,
    ChatStrategy,
    ErrorKind,
    JobState,
    TaskState,
    WorkerFailure,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.orchestration import (
    NOTHING_SWITCHES,
    BreakerSettings,
    OrchestrationBreaker,
    OrchestrationTrip,
)
from novelgen_desktop.engine.progress import ProgressSnapshot, ProgressTracker, WorkerStats
from novelgen_desktop.engine.ratelimit import parse_reset_after
from novelgen_desktop.engine.replaced import (
    ReplacedImage,
    RunnerStoppingError,
    drop_original,
    regenerated_message,
    set_aside,
    undo_set_aside,
)
from novelgen_desktop.engine.scheduler import (
    FailureDecision,
    Lease,
    QueueMove,
    QueuePlace,
    ResultDecision,
    ResultVerdict,
    Scheduler,
    SchedulerPolicy,
    TaskSlot,
)
from novelgen_desktop.engine.worker import Worker, WorkerCrashed
from novelgen_desktop.engine.writer import DurableWriter, WriterSettings
from novelgen_desktop.errors import ConfigError, OutputError
from novelgen_desktop.flags.flagset import FixedFlags, FlagSource, task_unit
from novelgen_desktop.output.imagecheck import ImageInfo, InvalidImageError, inspect_image
from novelgen_desktop.output.writer import (
    OutputExistsError,
    WrittenFile,
    write_image_atomically,
)
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.store.manifest import MANIFEST_NAME
from novelgen_desktop.store.records import (
    AccountCooldown,
    AttemptEnded,
    AttemptStarted,
    EventLogged,
    JobRecord,
    JobUpdated,
    TaskCompleted,
    TaskQueuePlaced,
    TaskRecord,
    TaskReplaced,
    TaskRequeued,
    TaskUpdated,
    WorkerSeen,
)

log = logging.getLogger(__name__)
ProgressCallback = Callable[["RunStatus"], None]
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_ACK_FOR = {
    ResultVerdict.ACCEPT: "accepted",
    ResultVerdict.DUPLICATE: "duplicate",
    ResultVerdict.UNKNOWN: "unknown",
}


@dataclass(frozen=True, slots=True)
class RunSettings:
    policy: SchedulerPolicy = field(default_factory=SchedulerPolicy)
    writer: WriterSettings = field(default_factory=WriterSettings)
    file_threads: int = 16  # fsync is I/O-bound: threads overlap it (measured: 8 → 16 helps)
    fsync_files: bool = True
    reaper_interval: float = 0.5
    stop_grace: float = 10.0  # on Ctrl-C, how long in-flight work may still finish
    progress_interval: float = 0.25
    # A hub keeps a job going while workers come and go (tabs reconnect, a login is awaited);
    # the command line stops when its own workers are gone or all blocked.
    wait_for_workers: bool = False
    # When tabs keep failing together, the single-tab fallback (auto_single_tab flag).
    breaker: BreakerSettings = field(default_factory=BreakerSettings)


@dataclass(frozen=True, slots=True)
class RunStatus:
    job_id: str
    progress: ProgressSnapshot
    counts: dict[TaskState, int]
    workers_busy: int
    workers_total: int
    paused: bool


@dataclass(frozen=True, slots=True)
class RunSummary:
    job_id: str
    state: JobState
    counts: dict[TaskState, int]
    elapsed: float
    duplicates_dropped: int
    stopped_early: bool
    workers: tuple[WorkerStats, ...] = ()
    stop_reason: str | None = None  # why the run stopped by itself before the end


def _tell_kept(worker: Worker, result: WorkerResult, verdict: str) -> None:
    """Tell a worker that cares (a remote one acks only now) what became of its image."""
    result_kept = getattr(worker, "result_kept", None)
    if result_kept is not None:
        result_kept(result.task_id, result.attempt, verdict)


def planned_relative(task: TaskRecord, info: ImageInfo) -> PurePosixPath:
    """The planned path with the real image's extension (a JPEG result is saved as .jpg)."""
    return PurePosixPath(task.planned_path).with_suffix(info.extension)


def manifest_row(
    job: JobRecord,
    task: TaskRecord,
    attempt: int,
    written: WrittenFile,
    info: ImageInfo,
    *,
    worker_id: str | None,
    account_id: str | None,
    finished_at: float,
    conversation_url: str | None,
    image_id: str | None,
) -> dict[str, Any]:
    return {
        "job": job.id,
        "task": task.id,
        "seq": task.seq,
        "attempt": attempt,
        "chapter": task.chapter,
        "page": task.page,
        "panel": task.panel,
        "variant": task.variant,
        "file": written.relative,
        "sha256": written.sha256,
        "size": written.size,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "prompt": task.prompt,
        **composition_fields(task),
        "source": task.source,
        "worker": worker_id,
        "account": account_id,
        "conversation_url": conversation_url,
        "image_id": image_id,
        "finished_at": finished_at,
    }


def task_slots(
    tasks: Sequence[TaskRecord], strategy: ChatStrategy = ChatStrategy.PANEL
) -> list[TaskSlot]:
    """The scheduler's view of stored tasks (what dispatch decisions need)."""
    return [
        TaskSlot(
            id=t.id,
            seq=t.seq,
            priority=t.priority,
            state=t.state,
            attempts=t.attempts,
            failures=t.failures,
            not_before=t.not_before,
            rank=t.queue_rank,
            sequence=strategy.sequence_of(t.chapter, t.page),
        )
        for t in tasks
    ]


class JobRunner:
    """Runs one job with a set of workers until every task is terminal or it is stopped."""

    def __init__(
        self,
        paths: DataPaths,
        job: JobRecord,
        tasks: Sequence[TaskRecord],
        workers: Sequence[Worker],
        settings: RunSettings | None = None,
        *,
        cooldowns: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
        on_progress: ProgressCallback | None = None,
        on_first_dispatch: Callable[[], None] | None = None,
        flags: FlagSource | None = None,
    ) -> None:
        self.paths = paths
        # The feature flags in force, read at every dispatch decision: a rollback or a kill
        # switch takes effect at the next attempt, without restarting the job.
        self.flags: FlagSource = flags or FixedFlags()
        self.job = job
        self.settings = settings or RunSettings()
        self.clock = clock
        self.on_progress = on_progress
        # Every event as it is logged (the GUI's log and notifications); must not raise.
        self.on_event: Callable[[EventLogged], None] | None = None
        self.on_first_dispatch = on_first_dispatch
        # Tabs failing together: the owner of the flags switches multi_tab off (it returns
        # what it did, for the log); without one the runner only says so.
        self.on_orchestration_failing: Callable[[OrchestrationTrip], str] | None = None
        self.orchestration = OrchestrationBreaker(self.settings.breaker)
        self.workers = {w.worker_id: w for w in workers}
        self.tasks = {t.id: t for t in tasks}
        self.out_dir = Path(job.out_dir)
        policy = self.settings.policy
        turns = job.settings.get("max_chat_turns")
        if isinstance(turns, int) and turns >= 1:
            policy = replace(policy, max_chat_turns=turns)
        self.scheduler = Scheduler(policy)
        self.scheduler.load(task_slots(tasks, chat_strategy_of(job)))
        for account, until in (cooldowns or {}).items():
            self.scheduler.set_cooldown(account, until)
        counts = self.scheduler.counts()
        self.progress = ProgressTracker(total=len(tasks), done=counts[TaskState.DONE])
        self.progress.failed_terminal = (
            counts[TaskState.DEAD] + counts[TaskState.REFUSED] + counts[TaskState.CANCELLED]
        )
        self.writer = DurableWriter(
            paths.database,
            job.id,
            self.out_dir / MANIFEST_NAME,
            paths.snapshots_dir(job.id),
            self.settings.writer,
            first_snapshot_seq=job.snapshot_seq,
            on_failure=self._writer_failed,
        )
        self.stop_reason: str | None = None
        self._files = concurrent.futures.ThreadPoolExecutor(
            self.settings.file_threads, thread_name_prefix="files"
        )
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._force_stop = asyncio.Event()
        self._stopping = False
        self._busy: set[str] = set()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self._grace = self.settings.stop_grace
        # Attempts being executed, so that one superseded by a late result can be called off.
        # The worker-loop task waiting on each attempt's worker.execute (for _call_off).
        self._calls: dict[tuple[int, int], asyncio.Task[Any]] = {}
        self._called_off: set[tuple[int, int]] = set()
        self._recalled: set[tuple[int, int]] = set()
        self.duplicates_dropped = 0
        self.started_at = 0.0
        self.first_dispatch_at: float | None = None

    # --- control (from the CLI, signals, later the GUI and protocol clients) ---------------

    def request_stop(self, *, now: bool = False, grace: float | None = None) -> None:
        """Stop dispatching; in-flight work may finish within ``grace`` (default
        ``stop_grace``; ``now=True``: do not wait for it — a second Ctrl-C)."""
        if grace is not None:
            self._grace = grace
        self._stopping = True
        if now:
            self._force_stop.set()
        self._finished.set()
        self._notify()

    def _writer_failed(self, error: BaseException) -> None:
        """Nothing more can be recorded: producing images that cannot be counted would only
        leave more for the next resume to adopt. Stop now; close() reports the error."""
        self.stop_reason = f"progress could not be recorded: {error}"
        self.request_stop(now=True)

    def poke(self) -> None:
        """Something outside changed (a worker's health): look at dispatch again."""
        self._notify()

    def add_worker(self, worker: Worker) -> None:
        """A worker joined while the job runs (a tab connected to the hub)."""
        known = self.workers.get(worker.worker_id)
        loop = self._loops.get(worker.worker_id)
        self.workers[worker.worker_id] = worker
        if known is worker and loop is not None and not loop.done():
            # Said hello again: whatever blocked it (a login) is for the worker to report anew.
            self.scheduler.add_worker(worker.worker_id, worker.account_id)
            self._notify()
            return
        if self._running and not self._stopping:
            self._start_worker(worker)
        self._notify()

    def _start_worker(self, worker: Worker) -> None:
        if hasattr(worker, "ack_after_write"):
            worker.ack_after_write = True  # this runner reports every image it keeps
        self.scheduler.add_worker(worker.worker_id, worker.account_id)
        self.progress.worker(worker.worker_id, worker.account_id)
        self.writer.submit(
            WorkerSeen(worker.worker_id, worker.account_id, worker.kind, self.clock())
        )
        self._loops[worker.worker_id] = asyncio.create_task(self._worker_loop(worker))

    def pause(self) -> None:
        self.scheduler.pause()
        self._event("info", "job_paused", "job paused")
        self.writer.submit(JobUpdated(self.job.id, JobState.PAUSED))

    def resume(self) -> None:
        self.scheduler.resume()
        self._event("info", "job_resumed", "job resumed")
        self.writer.submit(JobUpdated(self.job.id, JobState.RUNNING))
        self._notify()

    def cancel(self) -> None:
        now = self.clock()
        for task_id in self.scheduler.cancel():
            self.writer.submit(TaskUpdated(task_id, TaskState.CANCELLED, 0))
            self.progress.record_terminal_failure()
        self._event("warning", "job_cancelled", "job cancelled", ts=now)
        self._notify()

    # --- the author's queue actions (GUI, protocol clients) --------------------------------

    @property
    def winding_down(self) -> bool:
        """Stopping or finished: a change now might not be recorded (the writer closes)."""
        return self._stopping or self._finished.is_set()

    def _placed(self, places: list[QueuePlace]) -> None:
        for place in places:
            task = self.tasks[place.task_id]
            task.priority, task.queue_rank = place.priority, place.rank
            self.writer.submit(TaskQueuePlaced(place.task_id, place.priority, place.rank))

    def move_tasks(self, task_ids: Sequence[int], where: QueueMove) -> list[int]:
        """Move queued tasks in the queue; returns the tasks that changed place."""
        places = self.scheduler.move(task_ids, where)
        self._placed(places)
        if places:
            self._event("info", "queue_moved", f"{len(task_ids)} task(s) moved {where.value}")
        return [p.task_id for p in places]

    def change_priority(self, task_ids: Sequence[int], delta: int) -> list[int]:
        places = self.scheduler.change_priority(task_ids, delta)
        self._placed(places)
        self._notify()
        return [p.task_id for p in places]

    def retry_tasks(self, task_ids: Sequence[int], *, prompt: str | None = None) -> list[int]:
        """Send dead, refused or cancelled tasks back to the queue (with a new prompt, for
        one refused by the content policy). Returns the ids requeued."""
        revived = self.scheduler.retry(task_ids)
        for task_id in revived:
            task = self.tasks[task_id]
            if prompt is not None:
                task.prompt = prompt
            task.state, task.failures, task.not_before = TaskState.QUEUED, 0, 0.0
            self.writer.submit(TaskRequeued(task_id, prompt))
            self.progress.failed_terminal = max(0, self.progress.failed_terminal - 1)
        if revived:
            edited = " with an edited prompt" if prompt is not None else ""
            self._event("info", "tasks_retried", f"{len(revived)} task(s) requeued{edited}")
            self._notify()
        return revived

    def hold_worker(self, worker_id: str, held: bool) -> None:
        """Pause or resume dispatch to one worker (its current attempt finishes)."""
        self.scheduler.hold_worker(worker_id, held)
        verb = "paused" if held else "resumed"
        self._event("info", f"worker_{verb}", f"worker {worker_id} {verb}", worker_id=worker_id)
        self._notify()

    # --- the memory governor --------------------------------------------------------------

    def set_memory_hold(self, reason: str | None, held_workers: frozenset[str]) -> None:
        """No new attempt for anyone while ``reason`` is set, nor for ``held_workers`` (the
        governor's decision; attempts in flight go on). Events are the governor's to log."""
        scheduler = self.scheduler
        released = (scheduler.memory_hold is not None and reason is None) or bool(
            scheduler.memory_held - held_workers
        )
        scheduler.memory_hold, scheduler.memory_held = reason, held_workers
        if released:
            self._notify()

    def recall_unpaid(self, reason: str) -> list[tuple[int, int]]:
        """Call back attempts whose prompt has not reached ChatGPT yet (a worker that can
        tell: ``attempt_unpaid()``); they are queued again, not counted as failures. Returns
        the (task, attempt) pairs called back."""
        recalled = []
        for key, waiting in list(self._calls.items()):
            lease = self.scheduler.leases.get(key[0])
            worker = self.workers.get(lease.worker_id) if lease is not None else None
            unpaid = getattr(worker, "attempt_unpaid", None)
            if waiting.done() or unpaid is None or not unpaid():
                continue
            self._recalled.add(key)
            waiting.cancel()  # interrupts worker.execute (a remote worker is sent cancel)
            recalled.append(key)
        if recalled:
            self._event(
                "warning",
                "attempts_recalled",
                f"{len(recalled)} attempt(s) not yet sent to ChatGPT called back: {reason}",
            )
        return recalled

    def _requeue_recalled(self, lease: Lease) -> None:
        if not self.scheduler.recall(lease.task_id, lease.attempt):
            return
        slot = self.scheduler.tasks[lease.task_id]
        self.tasks[lease.task_id].state = TaskState.QUEUED
        self.writer.submit(
            AttemptEnded(lease.task_id, lease.attempt, self.clock(), "recalled"),
            TaskUpdated(lease.task_id, TaskState.QUEUED, slot.failures, slot.not_before),
        )

    # --- main loop ------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        self.started_at = time.monotonic()
        self.writer.start()
        self.writer.submit(JobUpdated(self.job.id, JobState.RUNNING))
        self._running = True
        for worker in list(self.workers.values()):
            self._start_worker(worker)
        reaper = asyncio.create_task(self._reaper())
        reporter = asyncio.create_task(self._reporter())
        try:
            if self.scheduler.is_finished():
                self._finished.set()
            await self._finished.wait()
        finally:
            await self._drain()
            reaper.cancel()
            reporter.cancel()
            for task in (reaper, reporter):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._release_interrupted_leases()
            state = self._final_state()
            self.writer.submit(JobUpdated(self.job.id, state))
            await self.writer.close(final_snapshot=True)
            self._files.shutdown(wait=True)
        self._report()
        return RunSummary(
            job_id=self.job.id,
            state=state,
            counts=self.scheduler.counts(),
            elapsed=time.monotonic() - self.started_at,
            duplicates_dropped=self.duplicates_dropped,
            stopped_early=self._stopping and not self.scheduler.is_finished(),
            workers=tuple(self.progress.workers.values()),
            stop_reason=self.stop_reason,
        )

    def _release_interrupted_leases(self) -> None:
        """Attempts cut off by a stop go back to the queue now, not at the next resume, so
        ``status`` tells the truth. Interrupted is not a failure of the task."""
        now = self.clock()
        for lease in list(self.scheduler.leases.values()):
            slot = self.scheduler.tasks[lease.task_id]
            self.writer.submit(
                AttemptEnded(lease.task_id, lease.attempt, now, "interrupted"),
                TaskUpdated(lease.task_id, TaskState.QUEUED, slot.failures, slot.not_before),
            )

    def _final_state(self) -> JobState:
        counts = self.scheduler.counts()
        if self.scheduler.cancelled:
            return JobState.CANCELLED
        if counts[TaskState.QUEUED] or counts[TaskState.LEASED]:
            return JobState.PAUSED if self.scheduler.paused else JobState.RUNNING
        if counts[TaskState.DONE] == len(self.tasks):
            return JobState.FINISHED
        return JobState.INCOMPLETE

    async def _drain(self) -> None:
        """Let in-flight attempts finish (bounded), then stop the worker loops."""
        self._stopping = True
        self._notify()
        pending = [t for t in self._loops.values() if not t.done()]
        if pending:
            all_done = asyncio.gather(*pending, return_exceptions=True)
            forced = asyncio.ensure_future(self._force_stop.wait())
            waiters: list[asyncio.Future[Any]] = [all_done, forced]
            await asyncio.wait(
                waiters,
                timeout=self._grace,
                return_when=asyncio.FIRST_COMPLETED,
            )
            forced.cancel()
            still = [t for t in pending if not t.done()]
            for task in still:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await all_done
        # Completions already accepted must reach the disk and the database.
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _check_finished(self) -> None:
        if (
            not self._stopping
            and not self._busy
            and not self.settings.wait_for_workers
            and self.scheduler.all_workers_blocked()
        ):
            reasons = sorted({w.blocked_reason or "" for w in self.scheduler.workers.values()})
            self._event(
                "error",
                "all_workers_blocked",
                f"every worker is blocked ({', '.join(reasons)}); stopping",
            )
            self._stopping = True
        # A stop request ends the wait at once; _drain then gives in-flight attempts their
        # grace period (or none, on a second Ctrl-C).
        if self.scheduler.is_finished() or self._stopping:
            self._finished.set()

    async def _worker_loop(self, worker: Worker) -> None:
        while not self._stopping:
            if self.workers.get(worker.worker_id) is not worker:
                return  # replaced by a newer object for the same id
            if not getattr(worker, "connected", True):
                # A remote worker that dropped while idle: it holds nothing, so nothing is
                # failed; wait for it to come back (or give it up after its grace period).
                if not await worker.restart():
                    self._give_up_worker(worker, "worker gone")
                    return
                continue
            if not getattr(worker, "accepting_work", True):
                await self._wait_for_change(1.0)  # unhealthy tab: no new work until it is ok
                continue
            now = self.clock()
            self._apply_flags()
            lease = self.scheduler.next_assignment(worker.worker_id, now)
            if lease is None:
                self._check_finished()
                if self._finished.is_set():
                    return
                wake = self.scheduler.next_wakeup(now)
                timeout = 1.0 if wake is None else max(0.01, min(1.0, wake - now))
                await self._wait_for_change(timeout)
                continue
            if self.first_dispatch_at is None:
                self.first_dispatch_at = time.monotonic()
                if self.on_first_dispatch is not None:
                    self.on_first_dispatch()
            await self._run_attempt(worker, lease)
        self._check_finished()

    def _apply_flags(self) -> None:
        """The scheduler's kill switches from the set in force (cheap: two attributes)."""
        flags = self.flags.current
        single = not flags.enabled("multi_tab")
        self.scheduler.single_worker = single
        self.scheduler.sequences_enabled = flags.enabled("chat_strategies")
        if single:
            self.scheduler.not_ready = frozenset(
                worker_id
                for worker_id, worker in self.workers.items()
                if not getattr(worker, "connected", True)
                or not getattr(worker, "accepting_work", True)
            )

    async def _run_attempt(self, worker: Worker, lease: Lease) -> None:
        task = self.tasks[lease.task_id]
        flags = self.flags.current
        unit = task_unit(self.job.id, task.id)
        self.writer.submit(
            AttemptStarted(
                lease.task_id,
                lease.attempt,
                worker.worker_id,
                worker.account_id,
                lease.started_at,
                prompt_sent=task.prompt,
                style_version=style_version_of(task),
                variants=flags.variants_for(unit, worker.worker_id) or None,
                flags_version=flags.version or None,
            )
        )
        chat: tuple[tuple[str, Any], ...] = ()
        if lease.sequence is not None:
            chat = (("sequence", lease.sequence), ("new_chat", lease.new_chat))
        elif flags.enabled("fresh_chat", unit):
            chat = (("new_chat", True),)
        assignment = Assignment(
            task_id=lease.task_id,
            attempt=lease.attempt,
            prompt=task.prompt,
            deadline=lease.deadline,
            metadata={
                key: value
                for key, value in (
                    ("job_id", self.job.id),
                    ("chapter", task.chapter),
                    ("page", task.page),
                    ("panel", task.panel),
                    *chat,
                )
                if value is not None  # absent rather than null, as the protocol has it
            },
            references=(
                reference_files(self.paths, self.job.id, task)
                if flags.enabled("reference_images", unit)
                else ()
            ),
        )
        self._busy.add(worker.worker_id)
        key = (lease.task_id, lease.attempt)
        try:
            current = asyncio.current_task()
            if current is not None:
                self._calls[key] = current
            try:
                try:
                    # Awaited directly (not wrapped in a task): the worker starts at once.
                    outcome = await worker.execute(assignment)
                finally:
                    self._calls.pop(key, None)
            except asyncio.CancelledError:
                if key in self._called_off and current is not None and current.uncancel() == 0:
                    return  # superseded by a late result of an earlier attempt: not a failure
                if key in self._recalled and current is not None and current.uncancel() == 0:
                    self._requeue_recalled(lease)  # memory critical: back in the queue, unpaid
                    return
                raise
            except WorkerCrashed as exc:
                self._event(
                    "warning",
                    "worker_crashed",
                    f"worker crashed: {exc}",
                    worker_id=worker.worker_id,
                    task_id=lease.task_id,
                )
                self._handle_failure(
                    worker,
                    WorkerFailure(lease.task_id, lease.attempt, ErrorKind.WORKER_LOST, str(exc)),
                )
                if not await worker.restart():
                    self._give_up_worker(worker, "worker gone")
                return
            if (outcome.task_id, outcome.attempt) != (lease.task_id, lease.attempt):
                # A confused worker answered for something else: whatever it sent is judged
                # on its own (usually UNKNOWN), and the lease it really held is failed now
                # instead of idling the worker until the deadline.
                self._event(
                    "warning",
                    "mismatched_answer",
                    f"worker answered for task {outcome.task_id} attempt "
                    f"{outcome.attempt} while holding task {lease.task_id} attempt "
                    f"{lease.attempt}",
                    worker_id=worker.worker_id,
                )
                self._handle_failure(
                    worker,
                    WorkerFailure(
                        lease.task_id,
                        lease.attempt,
                        ErrorKind.PAGE_ERROR,
                        "worker answered for another task",
                    ),
                )
            if isinstance(outcome, WorkerResult):
                completion = asyncio.ensure_future(
                    self._handle_result(worker, outcome, lease.started_at)
                )
                self._in_flight.add(completion)
                completion.add_done_callback(self._in_flight.discard)
                await completion
            else:
                self._handle_failure(worker, outcome)
        finally:
            self._calls.pop(key, None)
            self._called_off.discard(key)
            self._recalled.discard(key)
            self._busy.discard(worker.worker_id)
            self._notify()
            self._check_finished()

    def deliver_late(self, worker: Worker, outcome: WorkerOutcome) -> str:
        """An outcome for an attempt the worker no longer holds (its lease expired, or it
        crashed and came back with the image). The verdict is returned at once and an accepted
        image is written in the background like any other; the worker's ``result_kept`` (if
        it has one) hears the final word once the image is on disk.

        Returns ``"accepted"``, ``"duplicate"`` or ``"unknown"``.
        """
        if isinstance(outcome, WorkerFailure):
            self._handle_failure(worker, outcome)  # stale: only the attempt's record changes
            return "accepted"
        decision = self._offer(worker, outcome)
        if decision.verdict is ResultVerdict.ACCEPT:

            async def keep_and_tell() -> None:
                verdict = await self._keep_result(worker, outcome, self.clock(), decision)
                _tell_kept(worker, outcome, verdict)

            keep = asyncio.ensure_future(keep_and_tell())
            self._in_flight.add(keep)
            keep.add_done_callback(self._in_flight.discard)
        else:
            _tell_kept(worker, outcome, _ACK_FOR[decision.verdict])
        return _ACK_FOR[decision.verdict]

    def _give_up_worker(self, worker: Worker, reason: str) -> None:
        """The worker is gone for good: its leases go back to the queue. With none left a
        command-line run cannot progress; a hub's run waits for workers to connect."""
        if self.workers.get(worker.worker_id) is not worker:
            return
        for decision in self.scheduler.remove_worker(worker.worker_id, self.clock()):
            self._persist_failure(decision, ErrorKind.WORKER_LOST, reason, worker=worker)
        self.workers.pop(worker.worker_id, None)
        self._loops.pop(worker.worker_id, None)
        self._event(
            "warning",
            "worker_gone",
            f"worker {worker.worker_id}: {reason}",
            worker_id=worker.worker_id,
        )
        if not self.workers and not self.settings.wait_for_workers:
            self._event("error", "no_workers", "every worker is gone; stopping")
            self.request_stop()

    # --- results --------------------------------------------------------------------------

    async def _handle_result(self, worker: Worker, result: WorkerResult, started: float) -> None:
        decision = self._offer(worker, result)
        verdict = _ACK_FOR[decision.verdict]
        if decision.verdict is ResultVerdict.ACCEPT:
            verdict = await self._keep_result(worker, result, started, decision)
        _tell_kept(worker, result, verdict)

    def _offer(self, worker: Worker, result: WorkerResult) -> ResultDecision:
        """Decide synchronously whether a result is kept (the scheduler reserves the task, so
        a second copy arriving before the first is written is already a duplicate)."""
        now = self.clock()
        decision = self.scheduler.offer_result(result.task_id, result.attempt)
        if decision.verdict is not ResultVerdict.ACCEPT:
            self.duplicates_dropped += 1
            if decision.verdict is ResultVerdict.DUPLICATE:
                self.writer.submit(
                    AttemptEnded(
                        result.task_id,
                        result.attempt,
                        now,
                        "duplicate",
                        conversation_url=result.conversation_url,
                        image_id=result.image_id,
                    )
                )
            self._event(
                "warning",
                "duplicate_result",
                f"{decision.verdict.value} result for task {result.task_id} "
                f"attempt {result.attempt} dropped",
                worker_id=worker.worker_id,
                task_id=result.task_id,
            )
            return decision
        for superseded in decision.superseded:
            self.writer.submit(
                AttemptEnded(superseded.task_id, superseded.attempt, now, "superseded")
            )
            self._call_off(superseded.task_id, superseded.attempt, worker.worker_id)
        return decision

    def _call_off(self, task_id: int, attempt: int, by_worker: str) -> None:
        """Another attempt of this task delivered first: stop this one (a remote worker is
        sent ``cancel``) instead of paying for a second image."""
        key = (task_id, attempt)
        waiting = self._calls.pop(key, None)
        if waiting is None or waiting.done():
            return
        self._called_off.add(key)
        waiting.cancel()  # interrupts worker.execute; _run_attempt swallows this one cancel
        self._event(
            "info",
            "attempt_called_off",
            f"task {task_id} attempt {attempt} cancelled: an earlier attempt delivered "
            f"(worker {by_worker})",
            task_id=task_id,
        )

    async def _keep_result(
        self, worker: Worker, result: WorkerResult, started: float, decision: ResultDecision
    ) -> str:
        """Validate and write an accepted result, then count it (or give the task back).

        Returns what the worker is told: ``"accepted"`` (the image file is written, fsynced
        and in place: the worker may forget it), ``"invalid_image"`` or ``"not_written"`` (the
        task will be retried; nothing is gained by sending these bytes again)."""
        now = self.clock()
        task = self.tasks[result.task_id]
        try:
            info = inspect_image(result.image)
        except InvalidImageError as exc:
            failed = self.scheduler.abort_result(
                result.task_id, result.attempt, ErrorKind.INVALID_IMAGE, now
            )
            self._persist_failure(failed, ErrorKind.INVALID_IMAGE, str(exc), worker=worker)
            self.progress.record_failure(worker.worker_id, now)
            return "invalid_image"
        relative = planned_relative(task, info)
        loop = asyncio.get_running_loop()
        try:
            written = await loop.run_in_executor(self._files, self._write_file, relative, result)
        except OutputError as exc:
            disk_full = getattr(exc, "errno", None) in _DISK_FULL
            failed = self.scheduler.abort_result(
                result.task_id, result.attempt, ErrorKind.OUTPUT_ERROR, now, counted=not disk_full
            )
            self._persist_failure(failed, ErrorKind.OUTPUT_ERROR, str(exc), worker=worker)
            self._event("error", "output_error", str(exc), task_id=task.id)
            if disk_full:
                # Every further image would fail the same way and burn its tasks' retries:
                # stop, keep everything, let the author free space and resume.
                self._event(
                    "error",
                    "disk_full",
                    f"the output disk is full ({exc}); stopping — free space, then "
                    f"novelgen resume {self.job.id}",
                )
                self.stop_reason = f"the output disk is full: {exc}"
                self.request_stop()
            return "not_written"
        finished = self.clock()
        self.scheduler.confirm_done(result.task_id, result.attempt)
        row = manifest_row(
            self.job,
            task,
            result.attempt,
            written,
            info,
            worker_id=worker.worker_id,
            account_id=worker.account_id,
            finished_at=finished,
            conversation_url=result.conversation_url,
            image_id=result.image_id,
        )
        self.writer.submit(
            AttemptEnded(
                result.task_id,
                result.attempt,
                finished,
                "done",
                conversation_url=result.conversation_url,
                image_id=result.image_id,
            ),
            TaskCompleted(
                result.task_id,
                result.attempt,
                written.relative,
                written.sha256,
                written.size,
                finished,
                worker.worker_id,
                row,
            ),
        )
        task.state = TaskState.DONE
        self.progress.record_done(worker.worker_id, finished - started, finished)
        self._watch_orchestration(worker.worker_id, None, finished)
        return "accepted"

    def _write_file(self, relative: PurePosixPath, result: WorkerResult) -> WrittenFile:
        """Write once. A file already at the planned path can only come from this task
        (paths are unique per job): keep it if it is a valid image, never write a second."""
        try:
            return write_image_atomically(
                self.out_dir,
                relative,
                result.image,
                fsync=self.settings.fsync_files,
                sync_folder=False,  # the durable writer flushes each batch's folders once
            )
        except OutputExistsError:
            target = self.out_dir / relative
            try:
                existing = target.read_bytes()
                inspect_image(existing)
            except (OSError, InvalidImageError):
                return write_image_atomically(
                    self.out_dir,
                    relative,
                    result.image,
                    fsync=self.settings.fsync_files,
                    overwrite=True,
                )
            return WrittenFile(
                path=target,
                relative=relative.as_posix(),
                sha256=hashlib.sha256(existing).hexdigest(),  # already read: no second read
                size=len(existing),
            )

    # --- failures -------------------------------------------------------------------------

    def _handle_failure(self, worker: Worker, failure: WorkerFailure) -> None:
        now = self.clock()
        retry_after = failure.retry_after
        if failure.kind is ErrorKind.RATE_LIMITED and retry_after is None:
            retry_after = parse_reset_after(failure.message)
        if failure.kind is ErrorKind.LOGIN_REQUIRED:
            # About the worker, not the attempt: block it even if the report is stale.
            self.scheduler.block_worker(worker.worker_id, "login required")
        decision = self.scheduler.report_failure(
            failure.task_id, failure.attempt, failure.kind, now, retry_after
        )
        self.progress.record_failure(
            worker.worker_id, now, rate_limited=failure.kind is ErrorKind.RATE_LIMITED
        )
        if decision is None:
            self._event(
                "warning",
                "unknown_attempt",
                f"failure for unknown task {failure.task_id} attempt {failure.attempt}",
                worker_id=worker.worker_id,
            )
            return
        self._persist_failure(
            decision,
            failure.kind,
            failure.message,
            worker=worker,
            conversation_url=failure.conversation_url,
        )

    def _persist_failure(
        self,
        decision: FailureDecision,
        kind: ErrorKind,
        message: str,
        *,
        worker: Worker | None = None,
        conversation_url: str | None = None,
    ) -> None:
        now = self.clock()
        if not decision.stale:
            self._watch_orchestration(worker.worker_id if worker else None, kind, now)
        outcome = "rate_limited" if kind is ErrorKind.RATE_LIMITED else "failed"
        if kind is ErrorKind.REFUSED:
            outcome = "refused"
        self.writer.submit(
            AttemptEnded(
                decision.task_id,
                decision.attempt,
                now,
                outcome,
                kind,
                message,
                conversation_url=conversation_url,
            )
        )
        if decision.stale:
            return
        self.writer.submit(
            TaskUpdated(
                decision.task_id,
                decision.state,
                decision.failures,
                decision.not_before,
                kind,
                message,
            )
        )
        self.tasks[decision.task_id].state = decision.state
        worker_id = worker.worker_id if worker else None
        if decision.cooldown is not None:
            account, until = decision.cooldown
            self.writer.submit(AccountCooldown(account, until, message[:200] or None))
            self._event(
                "warning",
                "rate_limited",
                f"account {account} rate-limited for {until - now:.0f} s: {message}",
                worker_id=worker_id,
                task_id=decision.task_id,
                data={"account": account, "until": until},
            )
        if decision.state in (TaskState.DEAD, TaskState.REFUSED, TaskState.CANCELLED):
            self.progress.record_terminal_failure()
            level = "error" if decision.state is not TaskState.CANCELLED else "info"
            self._event(
                level,
                f"task_{decision.state.value}",
                f"task {decision.task_id} {decision.state.value} after "
                f"{decision.failures} failure(s): {kind.value}: {message}",
                worker_id=worker_id,
                task_id=decision.task_id,
            )

    def _watch_orchestration(
        self, worker_id: str | None, kind: ErrorKind | None, now: float
    ) -> None:
        """Feed the breaker while it may act: multi_tab on, auto_single_tab on, two or more
        tabs. Otherwise it starts over, so a switch back on begins from a clean slate."""
        flags = self.flags.current
        if (
            not flags.enabled("multi_tab")
            or not flags.enabled("auto_single_tab")
            or len(self.workers) < 2
        ):
            self.orchestration.reset()
            return
        trip = self.orchestration.record(now, worker_id, kind)
        if trip is None:
            return
        what = NOTHING_SWITCHES
        if self.on_orchestration_failing is not None:
            try:
                what = self.on_orchestration_failing(trip)
            except Exception as exc:  # the flags' disk, say: the job itself goes on
                log.exception("switching to the single-tab fallback failed")
                what = f"switching to the single-tab fallback failed: {exc}"
        self._event(
            "warning",
            "orchestration_failing",
            f"tab orchestration failing: {trip.describe()}; {what}",
            data={
                "failures": trip.failures,
                "endings": trip.endings,
                "workers": list(trip.workers),
                "kinds": dict(trip.kinds),
            },
            ts=now,
        )
        self._notify()

    # --- background -----------------------------------------------------------------------

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval)
            for decision in self.scheduler.expire_leases(self.clock()):
                self._persist_failure(decision, ErrorKind.LEASE_EXPIRED, "lease expired")
                self._notify()
            # With no worker loop left (a hub waiting for tabs), nothing else would notice a
            # job that ended by a cancel.
            self._check_finished()

    async def _reporter(self) -> None:
        while True:
            self._report()
            await asyncio.sleep(self.settings.progress_interval)

    def status(self) -> RunStatus:
        now = self.clock()
        return RunStatus(
            job_id=self.job.id,
            progress=self.progress.snapshot(
                now, cooling_until=self.scheduler.earliest_cooldown_end(now)
            ),
            counts=self.scheduler.counts(),
            workers_busy=len(self._busy),
            workers_total=len(self.workers),
            paused=self.scheduler.paused,
        )

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.status())

    def _event(
        self,
        level: str,
        kind: str,
        message: str,
        *,
        worker_id: str | None = None,
        task_id: int | None = None,
        data: dict[str, Any] | None = None,
        ts: float | None = None,
    ) -> None:
        event = EventLogged(
            ts=ts if ts is not None else self.clock(),
            level=level,
            kind=kind,
            message=message,
            job_id=self.job.id,
            worker_id=worker_id,
            task_id=task_id,
            data=data,
        )
        self.writer.submit(event)
        if self.on_event is not None:
            self.on_event(event)

    # --- regenerating a finished panel (the author wants another image) --------------------

    def regenerate(
        self, task_id: int, load_task: Callable[[int], Awaitable[TaskRecord | None]]
    ) -> Awaitable[ReplacedImage]:
        """Set a done task's image aside and queue the task again (see :mod:`.replaced` for
        the order of the steps). ``load_task`` reads the task's stored row (its file path
        is only in the store).

        The checks and the reservation happen now, before the first await: ConfigError if
        the task is not done, RunnerStoppingError if the run is winding down (the caller
        waits for it to end, then changes the stored job). Await the result for the rest."""
        if self.winding_down:
            raise RunnerStoppingError(self.job.id)
        if not self.scheduler.begin_regenerate(task_id):
            slot = self.scheduler.tasks.get(task_id)
            if slot is None:
                raise ConfigError(f"task {task_id} is not in job {self.job.id}")
            if self.scheduler.cancelled:
                raise ConfigError(f"job {self.job.id} is cancelled; its tasks cannot change")
            raise ConfigError(
                f"task {task_id} is {slot.state.value}: only a finished image can be regenerated"
            )
        outcome: list[ReplacedImage] = []
        # Tracked with the completions: a stop waits for it, so the writer stays open until
        # the change is recorded and the final job state counts the requeued task.
        work = asyncio.ensure_future(self._regenerate(task_id, load_task, outcome))
        self._in_flight.add(work)
        work.add_done_callback(self._in_flight.discard)

        async def result() -> ReplacedImage:
            await work
            return outcome[0]

        return result()

    async def _regenerate(
        self,
        task_id: int,
        load_task: Callable[[int], Awaitable[TaskRecord | None]],
        outcome: list[ReplacedImage],
    ) -> None:
        loop = asyncio.get_running_loop()
        moved_to: str | None = None
        submitted = False
        try:
            await self.writer.flush()  # the task's completion reaches the store first
            stored = await load_task(task_id)
            if stored is None or stored.state is not TaskState.DONE:
                state = stored.state.value if stored is not None else "gone"
                raise ConfigError(f"task {task_id} is {state} in the store; nothing to replace")
            moved_to = await loop.run_in_executor(self._files, set_aside, self.out_dir, stored)
            self.writer.submit(TaskReplaced(task_id))
            submitted = True
            await self.writer.flush()
        except asyncio.CancelledError:
            # A cancelled flush still lands its batch (it is shielded): finish the change.
            if not submitted:
                self.scheduler.abandon_regenerate(task_id)
                undo_set_aside(self.out_dir, moved_to)
                raise
            self._requeue_regenerated(task_id)
            raise
        except BaseException:
            self.scheduler.abandon_regenerate(task_id)
            undo_set_aside(self.out_dir, moved_to)
            raise
        try:
            now = self.clock()
            await loop.run_in_executor(
                self._files, drop_original, self.out_dir, self.job.id, stored, moved_to, now
            )
        except OutputError as exc:
            self._event("error", "output_error", str(exc), task_id=task_id)
        requeued = self._requeue_regenerated(task_id)
        self._event(
            "info",
            "task_regenerated",
            regenerated_message(task_id, moved_to),
            task_id=task_id,
            data={"moved_to": moved_to, "was": stored.output_path},
        )
        outcome.append(ReplacedImage(task_id, stored.output_path, moved_to, requeued))

    def _requeue_regenerated(self, task_id: int) -> bool:
        state = self.scheduler.finish_regenerate(task_id)
        task = self.tasks[task_id]
        task.state, task.failures, task.not_before = state, 0, 0.0
        task.output_path = task.sha256 = None
        task.size = task.done_attempt = None
        task.finished_at = None
        self.progress.done = max(0, self.progress.done - 1)
        if state is TaskState.CANCELLED:
            self.writer.submit(TaskUpdated(task_id, TaskState.CANCELLED, 0))
            self.progress.record_terminal_failure()
        self._notify()
        return state is TaskState.QUEUED
