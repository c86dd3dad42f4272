"""The job scheduler as a state machine with no I/O and no clock of its own.

Every method takes ``now`` (wall-clock seconds) and returns what happened; the asyncio driver
turns those results into database writes, files and messages. Keeping time and I/O outside
makes every rule here — priorities, leases, backoff, cooldowns, idempotent results — testable
with plain function calls and synthetic clocks.

Rules:
- Dispatch order: highest ``priority`` first, then queue position (``rank``: script order
  until the author moves a task, as in a torrent client's queue).
- A worker holds at most ``capacity`` leases; a lease has a deadline; an expired lease goes
  back to the queue and counts as a failure of the task (a prompt that hangs every worker
  must end up dead, not loop forever).
- Failures back off with capped full jitter: ``uniform(0, min(cap, base * 2**(n-1)))``.
- After ``max_failures`` failures a task is ``dead`` (retryable by hand). A refusal (content
  policy) is terminal at once: retrying costs money and will be refused again.
- A rate limit is not a failure: the account cools down until its reset time and the task
  goes straight back to the queue for another account.
- Chat sequences (the job's chat strategy: one conversation per page or per chapter): a
  worker that starts a sequence owns it and gets its tasks in order until the sequence is
  done or the worker cannot work (gone, blocked, held, cooling down); then another worker
  takes it over in a new chat. Other workers never take an owned sequence's tasks. A lease
  says whether it starts a new chat: the first of a sequence on a worker, or every
  ``max_chat_turns`` attempts, because a long conversation slows the page and dilutes it.
- Results are idempotent by (task, attempt): the first result of any attempt that was really
  issued wins, even after its lease expired (the image was paid for); every later result for
  that task is a duplicate and must not produce a file or a second ``done``.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from novelgen_desktop.engine.model import ErrorKind, TaskState


@dataclass(frozen=True, slots=True)
class SchedulerPolicy:
    lease_seconds: float = 600.0
    max_failures: int = 5
    backoff_base: float = 5.0
    backoff_cap: float = 300.0
    default_cooldown: float = 900.0  # when a rate limit names no reset time
    # Floor on any cooldown: a reset announced as "0 seconds" (or a parsing slip) must not
    # send the account straight back into the limit in a tight loop.
    min_cooldown: float = 5.0
    worker_capacity: int = 1
    max_chat_turns: int = 12  # attempts in one conversation before a fresh chat


@dataclass(slots=True)
class TaskSlot:
    """The scheduler's view of one task: only what dispatch decisions need."""

    id: int
    seq: int
    priority: int = 0
    state: TaskState = TaskState.QUEUED
    attempts: int = 0
    failures: int = 0
    not_before: float = 0.0
    cancel_requested: bool = False
    rank: float | None = None  # queue position; None: script order (``seq``)
    sequence: str | None = None  # the conversation this task belongs to (chat strategy)

    @property
    def order(self) -> tuple[int, float]:
        """The dispatch key: lower goes first."""
        return (-self.priority, self.seq if self.rank is None else self.rank)


@dataclass(frozen=True, slots=True)
class Lease:
    task_id: int
    attempt: int
    worker_id: str
    account_id: str
    started_at: float
    deadline: float
    sequence: str | None = None  # the conversation the attempt continues (chat strategy)
    new_chat: bool = False  # start a fresh conversation for it


@dataclass(slots=True)
class WorkerSlot:
    worker_id: str
    account_id: str
    leases: set[int] = field(default_factory=set)
    blocked_reason: str | None = None  # e.g. login required: no work until it reports ready
    sequence: str | None = None  # the sequence it owns (its tasks come to it first)
    chat_sequence: str | None = None  # the sequence of the conversation its tab is in
    chat_turns: int = 0  # attempts sent in that conversation


class QueueMove(enum.StrEnum):
    """Where the author moves selected queued tasks (as in qBittorrent's queue actions)."""

    TOP = "top"
    UP = "up"
    DOWN = "down"
    BOTTOM = "bottom"


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """A task's new place in the queue, to be made durable."""

    task_id: int
    priority: int
    rank: float


class ResultVerdict(enum.Enum):
    ACCEPT = "accept"  # write the image, then call confirm_done
    DUPLICATE = "duplicate"  # the task is done or already completing: drop the bytes
    UNKNOWN = "unknown"  # no such task or attempt was never issued: a confused peer


@dataclass(frozen=True, slots=True)
class ResultDecision:
    verdict: ResultVerdict
    # Leases of other attempts of the same task that are now pointless: tell their workers.
    superseded: tuple[Lease, ...] = ()


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What became of a task after a failed attempt."""

    task_id: int
    attempt: int
    state: TaskState
    failures: int
    not_before: float
    counted: bool  # False for rate limits, stale reports and engine restarts
    cooldown: tuple[str, float] | None = None  # (account, until) when a rate limit started one
    stale: bool = False  # the attempt no longer held the lease: only its record changes


_RETRYABLE = frozenset({TaskState.DEAD, TaskState.REFUSED, TaskState.CANCELLED})


class Scheduler:
    """Queue, leases, retries and cooldowns for one job."""

    def __init__(self, policy: SchedulerPolicy | None = None, *, rng: random.Random | None = None):
        self.policy = policy or SchedulerPolicy()
        self._rng = rng or random.Random()
        self.tasks: dict[int, TaskSlot] = {}
        self.workers: dict[str, WorkerSlot] = {}
        self.cooldowns: dict[str, float] = {}
        self.leases: dict[int, Lease] = {}
        self._completing: dict[int, int] = {}  # task -> attempt whose image is being written
        # State a task had before a late result was accepted for it (dead, refused,
        # cancelled): if that result turns out unusable, the task goes back there.
        self._state_before_result: dict[int, TaskState] = {}
        self._ready: list[tuple[int, float, int]] = []  # (-priority, rank, task id)
        self._delayed: list[tuple[float, int]] = []  # (not_before, task id)
        # Ready tasks of each chat sequence, mirrored from _ready: the owner takes from here,
        # and the global heap drops an owned sequence's entries lazily when others pop them.
        self._sequence_ready: dict[str, list[tuple[int, float, int]]] = {}
        self.sequence_owner: dict[str, str] = {}  # sequence -> worker id
        self.paused = False
        self.cancelled = False
        # Workers the author paused: kept apart from WorkerSlot so that it survives the
        # worker's reconnects (a new slot) and its own health reports (blocked_reason).
        self.held_workers: set[str] = set()
        # The memory governor's holds (memory.governor): not the author's, not a worker's
        # health, and never a reason to think every worker is blocked for good.
        self.memory_hold: str | None = None  # why nobody gets new work now
        self.memory_held: frozenset[str] = frozenset()  # workers held on their own
        # Feature-flag kill switches (flags.registry), set by the runner from the live set:
        # single_worker is the single-tab fallback (one worker works, the others idle);
        # sequences off runs every job as the 'panel' chat strategy.
        self.single_worker = False
        self.sequences_enabled = True
        # Workers the runner sees cannot take work just now (a tab reconnecting or reporting
        # itself unhealthy, e.g. closing): the single-tab fallback passes over them.
        self.not_ready: frozenset[str] = frozenset()
        self._counts: dict[TaskState, int] = dict.fromkeys(TaskState, 0)

    def _set_state(self, slot: TaskSlot, state: TaskState) -> None:
        self._counts[slot.state] -= 1
        self._counts[state] += 1
        slot.state = state

    # --- loading --------------------------------------------------------------------------

    def load(self, slots: Iterable[TaskSlot]) -> None:
        for slot in slots:
            if slot.state is TaskState.LEASED:  # a lease cannot outlive the process that held it
                slot.state = TaskState.QUEUED
            self.tasks[slot.id] = slot
            self._counts[slot.state] += 1
            if slot.state is TaskState.QUEUED:
                self._enqueue(slot)

    def _enqueue(self, slot: TaskSlot) -> None:
        if slot.not_before > 0:
            heapq.heappush(self._delayed, (slot.not_before, slot.id))
        else:
            self._push_ready(slot)

    def _push_ready(self, slot: TaskSlot) -> None:
        entry = (*slot.order, slot.id)
        heapq.heappush(self._ready, entry)
        if slot.sequence is not None:
            heapq.heappush(self._sequence_ready.setdefault(slot.sequence, []), entry)

    def _promote_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            not_before, task_id = heapq.heappop(self._delayed)
            slot = self.tasks.get(task_id)
            if slot and slot.state is TaskState.QUEUED and slot.not_before == not_before:
                slot.not_before = 0.0
                self._push_ready(slot)

    # --- workers and accounts -------------------------------------------------------------

    def add_worker(self, worker_id: str, account_id: str) -> None:
        existing = self.workers.get(worker_id)
        if existing is not None:
            existing.account_id = account_id
            existing.blocked_reason = None
            return
        self.workers[worker_id] = WorkerSlot(worker_id, account_id)

    def block_worker(self, worker_id: str, reason: str | None) -> None:
        """Stop (reason) or restart (None) dispatch to one worker, e.g. while it needs a login."""
        if worker_id in self.workers:
            self.workers[worker_id].blocked_reason = reason

    def remove_worker(self, worker_id: str, now: float) -> list[FailureDecision]:
        """The worker is gone for good: its leases go back to the queue.

        A vanished worker is counted against the task (a prompt that crashes every tab must
        not loop forever), but gently: it is one failure among ``max_failures``.
        """
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return []
        if worker.sequence is not None:
            self._release_sequence(worker.sequence)
        decisions = []
        for task_id in sorted(worker.leases):
            lease = self.leases.get(task_id)
            if lease is not None and lease.worker_id == worker_id:
                decisions.append(self._fail(lease, ErrorKind.WORKER_LOST, now, None))
        return decisions

    def set_cooldown(self, account_id: str, until: float) -> None:
        if until > self.cooldowns.get(account_id, 0.0):
            self.cooldowns[account_id] = until

    def account_available(self, account_id: str, now: float) -> bool:
        return self.cooldowns.get(account_id, 0.0) <= now

    # --- dispatch -------------------------------------------------------------------------

    def next_assignment(self, worker_id: str, now: float) -> Lease | None:
        """Lease the most urgent ready task to ``worker_id``, or None if it should wait."""
        worker = self.workers.get(worker_id)
        if worker is None or self.paused or self.cancelled or worker.blocked_reason:
            return None
        if worker_id in self.held_workers:
            return None
        if self.memory_hold is not None or worker_id in self.memory_held:
            return None
        if len(worker.leases) >= self.policy.worker_capacity:
            return None
        if not self.account_available(worker.account_id, now):
            return None
        if self.single_worker and not self._is_single_worker(worker_id, now):
            return None
        self._promote_due(now)
        slot = self._next_of_own_sequence(worker, now) or self._next_ready(worker, now)
        if slot is None:
            return None
        self._set_state(slot, TaskState.LEASED)
        slot.attempts += 1
        sequence = slot.sequence if self.sequences_enabled else None
        new_chat = False
        if sequence is not None:
            new_chat = (
                worker.chat_sequence != sequence or worker.chat_turns >= self.policy.max_chat_turns
            )
            worker.chat_turns = 1 if new_chat else worker.chat_turns + 1
        else:
            worker.chat_turns = 0
        worker.chat_sequence = sequence
        lease = Lease(
            task_id=slot.id,
            attempt=slot.attempts,
            worker_id=worker_id,
            account_id=worker.account_id,
            started_at=now,
            deadline=now + self.policy.lease_seconds,
            sequence=sequence,
            new_chat=new_chat,
        )
        self.leases[slot.id] = lease
        worker.leases.add(slot.id)
        return lease

    def _is_single_worker(self, worker_id: str, now: float) -> bool:
        """In the single-tab fallback, whether ``worker_id`` is the one that works: nobody
        else has an attempt in hand (those finish first, nothing is thrown away), and it is
        the longest-connected worker able to work, so the choice is stable and the same in
        every job's scheduler."""
        if any(w.leases for w in self.workers.values() if w.worker_id != worker_id):
            return False
        for candidate in self.workers:
            if candidate not in self.not_ready and self._can_work(candidate, now):
                return candidate == worker_id
        return False

    def _is_ready_entry(self, entry: tuple[int, float, int], now: float) -> TaskSlot | None:
        prio, rank, task_id = entry
        slot = self.tasks[task_id]
        if slot.state is not TaskState.QUEUED or slot.not_before > now:
            return None  # stale heap entry
        if (prio, rank) != slot.order:
            return None  # moved in the queue since: its current entry is elsewhere in the heap
        return slot

    def _next_of_own_sequence(self, worker: WorkerSlot, now: float) -> TaskSlot | None:
        """The next ready task of the sequence this worker owns: its conversation goes on."""
        if worker.sequence is None or not self.sequences_enabled:
            return None
        heap = self._sequence_ready.get(worker.sequence)
        while heap:
            slot = self._is_ready_entry(heapq.heappop(heap), now)
            if slot is not None:
                return slot
        return None

    def _next_ready(self, worker: WorkerSlot, now: float) -> TaskSlot | None:
        """The most urgent ready task no other working worker's sequence holds."""
        while self._ready:
            slot = self._is_ready_entry(heapq.heappop(self._ready), now)
            if slot is None:
                continue
            sequence = slot.sequence
            if sequence is None or not self.sequences_enabled:
                return slot
            owner = self.sequence_owner.get(sequence)
            if owner is not None and owner != worker.worker_id:
                if self._can_work(owner, now):
                    continue  # its owner takes it from the sequence's own heap
                self._release_sequence(sequence)  # the owner cannot go on: take it over
            if worker.sequence is not None and worker.sequence != sequence:
                self._release_sequence(worker.sequence)
            worker.sequence = sequence
            self.sequence_owner[sequence] = worker.worker_id
            return slot
        return None

    def _can_work(self, worker_id: str, now: float) -> bool:
        worker = self.workers.get(worker_id)
        return (
            worker is not None
            and worker.blocked_reason is None
            and worker_id not in self.held_workers
            and worker_id not in self.memory_held
            and self.account_available(worker.account_id, now)
        )

    def _release_sequence(self, sequence: str) -> None:
        """Nobody owns ``sequence`` any more: its ready tasks go back to every worker."""
        owner = self.sequence_owner.pop(sequence, None)
        worker = self.workers.get(owner) if owner is not None else None
        if worker is not None and worker.sequence == sequence:
            worker.sequence = None
        for entry in self._sequence_ready.get(sequence, ()):
            slot = self.tasks[entry[2]]
            if slot.state is TaskState.QUEUED and (entry[0], entry[1]) == slot.order:
                heapq.heappush(self._ready, entry)

    def _release(self, lease: Lease) -> None:
        self.leases.pop(lease.task_id, None)
        worker = self.workers.get(lease.worker_id)
        if worker is not None:
            worker.leases.discard(lease.task_id)

    # --- results --------------------------------------------------------------------------

    def offer_result(self, task_id: int, attempt: int) -> ResultDecision:
        """A worker says it has an image for (task, attempt). Decide whether to keep it."""
        slot = self.tasks.get(task_id)
        if slot is None or attempt < 1 or attempt > slot.attempts:
            return ResultDecision(ResultVerdict.UNKNOWN)
        if slot.state is TaskState.DONE or task_id in self._completing:
            return ResultDecision(ResultVerdict.DUPLICATE)
        superseded: tuple[Lease, ...] = ()
        lease = self.leases.get(task_id)
        if lease is not None:
            self._release(lease)
            if lease.attempt != attempt:
                superseded = (lease,)
        # Accepted even when the task was requeued, dead or cancelled meanwhile: the image
        # exists and was paid for; throwing it away would mean paying again.
        self._completing[task_id] = attempt
        if slot.state.is_terminal:
            self._state_before_result[task_id] = slot.state
        self._set_state(slot, TaskState.LEASED)
        return ResultDecision(ResultVerdict.ACCEPT, superseded)

    def confirm_done(self, task_id: int, attempt: int) -> None:
        """The image of an accepted result is on disk: the task is done."""
        if self._completing.get(task_id) != attempt:
            raise ValueError(f"task {task_id} attempt {attempt} was not accepted")
        del self._completing[task_id]
        self._state_before_result.pop(task_id, None)
        self._set_state(self.tasks[task_id], TaskState.DONE)

    def abort_result(
        self, task_id: int, attempt: int, kind: ErrorKind, now: float, *, counted: bool = True
    ) -> FailureDecision:
        """An accepted result could not be kept (invalid image, disk error): retry the task.

        ``counted=False`` when the fault is ours, not the prompt's (a full disk): the task goes
        back to the queue without a failure against it.
        """
        if self._completing.pop(task_id, None) != attempt:
            raise ValueError(f"task {task_id} attempt {attempt} was not accepted")
        slot = self.tasks[task_id]
        previous = self._state_before_result.pop(task_id, None)
        if previous is not None:  # a late result for a finished-with task: nothing revives it
            self._set_state(slot, previous)
            return FailureDecision(
                slot.id, attempt, previous, slot.failures, 0.0, counted=False, stale=True
            )
        if not counted:
            return self._requeue(slot, attempt, now, counted=False)
        self._set_state(slot, TaskState.QUEUED)
        return self._after_failure(slot, attempt, kind, now, counted=True)

    # --- failures -------------------------------------------------------------------------

    def report_failure(
        self,
        task_id: int,
        attempt: int,
        kind: ErrorKind,
        now: float,
        retry_after: float | None = None,
    ) -> FailureDecision | None:
        """A worker says attempt ``attempt`` failed. None for an unknown task/attempt."""
        slot = self.tasks.get(task_id)
        if slot is None or attempt < 1 or attempt > slot.attempts:
            return None
        lease = self.leases.get(task_id)
        if lease is None or lease.attempt != attempt:
            # The attempt had already lost its lease (expired, superseded) or the task is
            # done: it was accounted for then. Only the attempt's own record changes.
            return FailureDecision(
                task_id,
                attempt,
                slot.state,
                slot.failures,
                slot.not_before,
                counted=False,
                stale=True,
            )
        return self._fail(lease, kind, now, retry_after)

    def _fail(
        self, lease: Lease, kind: ErrorKind, now: float, retry_after: float | None
    ) -> FailureDecision:
        self._release(lease)
        slot = self.tasks[lease.task_id]
        self._set_state(slot, TaskState.QUEUED)
        if kind is ErrorKind.RATE_LIMITED:
            # An announced reset is taken as given (even "0 seconds"); only a message with
            # no time at all falls back to the default rest.
            wait = retry_after if retry_after is not None else self.policy.default_cooldown
            self.set_cooldown(lease.account_id, now + max(self.policy.min_cooldown, wait))
            until = self.cooldowns[lease.account_id]  # an earlier, longer rest still stands
            decision = self._requeue(slot, lease.attempt, now, counted=False)
            return FailureDecision(
                decision.task_id,
                decision.attempt,
                decision.state,
                decision.failures,
                decision.not_before,
                counted=False,
                cooldown=(lease.account_id, until),
            )
        if kind is ErrorKind.LOGIN_REQUIRED:
            self.block_worker(lease.worker_id, "login required")
            return self._requeue(slot, lease.attempt, now, counted=False)
        return self._after_failure(slot, lease.attempt, kind, now, counted=True)

    def _after_failure(
        self, slot: TaskSlot, attempt: int, kind: ErrorKind, now: float, *, counted: bool
    ) -> FailureDecision:
        if slot.cancel_requested:
            self._set_state(slot, TaskState.CANCELLED)
            return FailureDecision(slot.id, attempt, slot.state, slot.failures, 0.0, counted)
        if kind is ErrorKind.REFUSED:
            self._set_state(slot, TaskState.REFUSED)
            return FailureDecision(slot.id, attempt, slot.state, slot.failures, 0.0, True)
        slot.failures += 1
        if slot.failures >= self.policy.max_failures:
            self._set_state(slot, TaskState.DEAD)
            return FailureDecision(slot.id, attempt, slot.state, slot.failures, 0.0, True)
        ceiling = min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** (slot.failures - 1))
        slot.not_before = now + self._rng.uniform(0.0, ceiling)
        self._set_state(slot, TaskState.QUEUED)
        self._enqueue(slot)
        return FailureDecision(slot.id, attempt, slot.state, slot.failures, slot.not_before, True)

    def _requeue(
        self, slot: TaskSlot, attempt: int, now: float, *, counted: bool
    ) -> FailureDecision:
        if slot.cancel_requested:
            self._set_state(slot, TaskState.CANCELLED)
            return FailureDecision(slot.id, attempt, slot.state, slot.failures, 0.0, counted)
        self._set_state(slot, TaskState.QUEUED)
        slot.not_before = 0.0
        self._enqueue(slot)
        return FailureDecision(slot.id, attempt, slot.state, slot.failures, 0.0, counted)

    def recall(self, task_id: int, attempt: int) -> bool:
        """Take back a lease whose prompt never reached ChatGPT (memory critical): the task
        is queued again with its failures unchanged. False if that lease is not current."""
        lease = self.leases.get(task_id)
        if lease is None or lease.attempt != attempt or task_id in self._completing:
            return False
        self._release(lease)
        slot = self.tasks[task_id]
        self._set_state(slot, TaskState.QUEUED)
        self._enqueue(slot)
        return True

    def expire_leases(self, now: float) -> list[FailureDecision]:
        """Leases past their deadline go back to the queue (counted as a timeout)."""
        expired = [lease for lease in self.leases.values() if lease.deadline <= now]
        return [self._fail(lease, ErrorKind.LEASE_EXPIRED, now, None) for lease in expired]

    # --- job control ----------------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def cancel(self) -> list[int]:
        """Cancel every queued task now; leased ones finish (a result is still kept) or are
        cancelled when they fail. Returns the ids that became ``cancelled``."""
        self.cancelled = True
        cancelled = []
        for slot in self.tasks.values():
            if slot.state is TaskState.QUEUED:
                self._set_state(slot, TaskState.CANCELLED)
                cancelled.append(slot.id)
            elif slot.state is TaskState.LEASED:
                slot.cancel_requested = True
        self._ready.clear()
        self._delayed.clear()
        self._sequence_ready.clear()
        return cancelled

    # --- the author's queue actions -------------------------------------------------------

    def hold_worker(self, worker_id: str, held: bool) -> None:
        """Pause (``held``) or resume dispatch to one worker; its current attempt finishes."""
        if held:
            self.held_workers.add(worker_id)
        else:
            self.held_workers.discard(worker_id)

    def queue_order(self) -> list[int]:
        """Queued task ids in the order they will be dispatched (backoff aside)."""
        queued = [s for s in self.tasks.values() if s.state is TaskState.QUEUED]
        queued.sort(key=lambda s: (*s.order, s.id))
        return [s.id for s in queued]

    def move(self, task_ids: Iterable[int], where: QueueMove) -> list[QueuePlace]:
        """Move queued tasks to the top or bottom of the queue, or one place up or down,
        keeping their order among themselves. Tasks not queued are left alone (a running or
        finished task has no queue place). Returns the places that changed.

        Top and bottom also take the highest (lowest) priority in the queue, so that a moved
        task really is first (last); up and down swap places with the neighbour."""
        chosen = {t for t in task_ids if t in self.tasks}
        order = [self.tasks[t] for t in self.queue_order()]
        moving = [s for s in order if s.id in chosen]
        if not moving:
            return []
        changed: list[TaskSlot] = []
        if where in (QueueMove.TOP, QueueMove.BOTTOM):
            rest = [s for s in order if s.id not in chosen]
            if where is QueueMove.TOP:
                priority = max(s.priority for s in order)
                firsts = [s.order[1] for s in rest if s.priority == priority]
                start = (min(firsts) if firsts else 0.0) - len(moving)
            else:
                priority = min(s.priority for s in order)
                lasts = [s.order[1] for s in rest if s.priority == priority]
                start = (max(lasts) if lasts else 0.0) + 1
            for offset, slot in enumerate(moving):
                slot.priority, slot.rank = priority, start + offset
                changed.append(slot)
        else:
            step = -1 if where is QueueMove.UP else 1
            sequence = order if step < 0 else list(reversed(order))
            # Walk towards the target end; each chosen task swaps with the unchosen
            # neighbour ahead of it (a block of chosen tasks moves together).
            for index in range(1, len(sequence)):
                slot, ahead = sequence[index], sequence[index - 1]
                if slot.id in chosen and ahead.id not in chosen:
                    slot_key, ahead_key = slot.order, ahead.order
                    slot.priority, slot.rank = -ahead_key[0], ahead_key[1]
                    ahead.priority, ahead.rank = -slot_key[0], slot_key[1]
                    sequence[index - 1], sequence[index] = slot, ahead
                    changed += [slot, ahead]
        for slot in changed:
            self._enqueue(slot)
        unique = {s.id: s for s in changed}
        return [QueuePlace(s.id, s.priority, s.order[1]) for s in unique.values()]

    def change_priority(self, task_ids: Iterable[int], delta: int) -> list[QueuePlace]:
        """Raise (or lower) the priority of unfinished tasks; queued ones move at once."""
        changed = []
        for task_id in task_ids:
            slot = self.tasks.get(task_id)
            if slot is None or slot.state is TaskState.DONE:
                continue
            slot.priority += delta
            if slot.state is TaskState.QUEUED:
                self._enqueue(slot)
            changed.append(QueuePlace(slot.id, slot.priority, slot.order[1]))
        return changed

    def retry(self, task_ids: Iterable[int]) -> list[int]:
        """Requeue the given dead, refused or cancelled tasks now, with a clean failure
        count (the author decided they are worth another try). Returns those requeued."""
        if self.cancelled:
            return []
        revived = []
        for task_id in task_ids:
            slot = self.tasks.get(task_id)
            if slot is None or slot.state not in _RETRYABLE:
                continue
            self._set_state(slot, TaskState.QUEUED)
            slot.failures = 0
            slot.not_before = 0.0
            slot.cancel_requested = False
            self._enqueue(slot)
            revived.append(slot.id)
        return revived

    def retry_dead(self, *, include_refused: bool = False) -> list[int]:
        """Requeue dead (and refused) tasks; nothing in a cancelled job, which never runs."""
        if self.cancelled:
            return []
        revived = []
        states = {TaskState.DEAD, TaskState.REFUSED} if include_refused else {TaskState.DEAD}
        for slot in self.tasks.values():
            if slot.state in states:
                self._set_state(slot, TaskState.QUEUED)
                slot.failures = 0
                slot.not_before = 0.0
                self._enqueue(slot)
                revived.append(slot.id)
        return revived

    # --- questions ------------------------------------------------------------------------

    def counts(self) -> dict[TaskState, int]:
        return dict(self._counts)

    def is_finished(self) -> bool:
        """Every task is terminal and nothing is being written."""
        return (
            not self._completing
            and self._counts[TaskState.QUEUED] == 0
            and self._counts[TaskState.LEASED] == 0
        )

    def next_wakeup(self, now: float) -> float | None:
        """The earliest future moment when something could change without outside input:
        a backoff ends, a cooldown ends, or a lease expires."""
        self._promote_due(now)  # a due entry on top must not hide a later backoff behind it
        moments = [t for t, _task_id in self._delayed[:1]]
        moments += [until for until in self.cooldowns.values() if until > now]
        moments += [lease.deadline for lease in self.leases.values()]
        future = [m for m in moments if m > now]
        return min(future) if future else None

    def all_workers_blocked(self) -> bool:
        """Every worker waits for something only a person can do (a login)."""
        return bool(self.workers) and all(
            w.blocked_reason or w.worker_id in self.held_workers for w in self.workers.values()
        )

    def earliest_cooldown_end(self, now: float) -> float | None:
        """When every usable account is cooling down, the moment the first one is back."""
        accounts = {
            w.account_id
            for w in self.workers.values()
            if not w.blocked_reason and w.worker_id not in self.held_workers
        }
        if not accounts or any(self.account_available(a, now) for a in accounts):
            return None
        return min(self.cooldowns[a] for a in accounts)

    # --- regenerating a finished task (the author wants another image) ---------------------

    def begin_regenerate(self, task_id: int) -> bool:
        """Reserve a done task while its image is set aside (file and store work in between):
        no late result may complete it meanwhile, and the job may not count as finished.
        False when the task is not done, is already being regenerated, or the job is
        cancelled. The reservation is a ``_completing`` entry with attempt 0, which no real
        attempt has (they count from 1)."""
        slot = self.tasks.get(task_id)
        if (
            slot is None
            or slot.state is not TaskState.DONE
            or task_id in self._completing
            or self.cancelled
        ):
            return False
        self._completing[task_id] = _REGENERATING
        return True

    def abandon_regenerate(self, task_id: int) -> None:
        """Setting the image aside failed: the task stays done."""
        if self._completing.get(task_id) == _REGENERATING:
            del self._completing[task_id]

    def finish_regenerate(self, task_id: int) -> TaskState:
        """The old image is set aside and recorded: the task goes back to the queue with a
        clean failure count (or is cancelled, if the job was cancelled meanwhile). Returns
        its new state."""
        if self._completing.get(task_id) != _REGENERATING:
            raise ValueError(f"task {task_id} is not being regenerated")
        del self._completing[task_id]
        slot = self.tasks[task_id]
        slot.failures, slot.not_before = 0, 0.0
        if self.cancelled:
            self._set_state(slot, TaskState.CANCELLED)
        else:
            self._set_state(slot, TaskState.QUEUED)
            self._enqueue(slot)
        return slot.state


_REGENERATING = 0
"""The ``_completing`` attempt that marks a task reserved by :meth:`begin_regenerate`."""
