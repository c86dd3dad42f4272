"""Stateful property test: random interleavings of every scheduler call, with a model that
checks the scheduler's books and promises after every step, and a liveness check at the end.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from novelgen_desktop.engine.model import ErrorKind, TaskState
from novelgen_desktop.engine.scheduler import (
    ResultVerdict,
    Scheduler,
    SchedulerPolicy,
    TaskSlot,
)

WORKERS = ("w0", "w1", "w2", "w3")
ACCOUNTS = ("a0", "a1", "a2")
LEASE_SECONDS = 30.0
MAX_FAILURES = 3
BACKOFF_BASE = 5.0
BACKOFF_CAP = 8.0  # below base * 2 ** (MAX_FAILURES - 2): the cap bites
DEFAULT_COOLDOWN = 200.0

# Which attempt number a worker reports about, relative to what was issued for the task.
ATTEMPT_CHOICES = ("current", "late", "current", "late", "bogus")

# States a task may go to from each state in one call. Dispatch (QUEUED -> LEASED) and a kept
# late result (terminal -> LEASED while its image is written) are the only ways into LEASED.
ALLOWED = {
    TaskState.QUEUED: {TaskState.QUEUED, TaskState.LEASED, TaskState.CANCELLED},
    TaskState.LEASED: set(TaskState),
    TaskState.DONE: {TaskState.DONE},
    TaskState.DEAD: {TaskState.DEAD, TaskState.QUEUED, TaskState.LEASED},
    TaskState.REFUSED: {TaskState.REFUSED, TaskState.QUEUED, TaskState.LEASED},
    TaskState.CANCELLED: {TaskState.CANCELLED, TaskState.LEASED},
}


class SchedulerMachine(RuleBasedStateMachine):
    # --- setup ----------------------------------------------------------------------------

    @initialize(
        priorities=st.lists(st.integers(0, 2), min_size=1, max_size=5),
        capacity=st.integers(1, 2),
        seed=st.integers(0, 2**32 - 1),
        accounts=st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=len(WORKERS)),
    )
    def setup(self, priorities: list[int], capacity: int, seed: int, accounts: list[str]) -> None:
        self.policy = SchedulerPolicy(
            lease_seconds=LEASE_SECONDS,
            max_failures=MAX_FAILURES,
            backoff_base=BACKOFF_BASE,
            backoff_cap=BACKOFF_CAP,
            default_cooldown=DEFAULT_COOLDOWN,
            worker_capacity=capacity,
        )
        self.s = Scheduler(self.policy, rng=random.Random(seed))
        self.task_ids = [100 + i for i in range(len(priorities))]  # ids unlike seqs
        self.s.load(
            TaskSlot(id=tid, seq=i, priority=p)
            for i, (tid, p) in enumerate(zip(self.task_ids, priorities, strict=True))
        )
        self.now = 0.0
        self.issued: dict[int, int] = dict.fromkeys(self.task_ids, 0)  # highest attempt
        self.confirms: Counter[int] = Counter()
        self.pending: dict[int, int] = {}  # task -> accepted attempt whose image is written
        self.accepted_from: dict[int, TaskState] = {}  # task state when its result was kept
        self.cooling: dict[str, float] = {}  # account -> until, as announced by decisions
        self.no_redispatch: set[int] = set()  # refused or cancelled: must never be leased
        self.revived_refused: set[int] = set()
        self.prev_states = {tid: TaskState.QUEUED for tid in self.task_ids}
        for worker, account in zip(WORKERS, accounts, strict=False):
            self.s.add_worker(worker, account)

    # --- helpers --------------------------------------------------------------------------

    def _pick(self, index: int, which: str, older: int) -> tuple[int, int]:
        """A (task, attempt) a worker might report about.

        current: the attempt that holds the lease now; late: an attempt that was issued but
        lost its lease (expired, failed, superseded), the source of late results and stale
        failures; bogus: an attempt never issued (0 or beyond the last one).
        """
        s = self.s
        leased = sorted(s.leases)
        lost = [
            tid
            for tid in self.task_ids
            if self.issued[tid] >= 1 and (tid not in s.leases or self.issued[tid] >= 2)
        ]
        dispatched = [tid for tid in self.task_ids if self.issued[tid]]
        if which == "late" and lost:
            tid = lost[index % len(lost)]
            newest_lost = self.issued[tid] - (1 if tid in s.leases else 0)
            return tid, newest_lost - older % newest_lost
        if which != "bogus" and (leased or dispatched):
            tid = (leased or dispatched)[index % len(leased or dispatched)]
            return tid, self.issued[tid]
        tid = self.task_ids[index % len(self.task_ids)]
        return tid, (self.issued[tid] + 1 + older % 3) if older % 4 else 0

    def _ready_key(self, task_id: int) -> tuple[int, int]:
        slot = self.s.tasks[task_id]
        return (-slot.priority, slot.seq)

    # --- workers and time -----------------------------------------------------------------

    # Few rules with an action argument rather than many small rules: Hypothesis switches
    # whole rules off per run (swarm testing), and the interesting bugs need most of them.

    @rule(
        action=st.sampled_from(["add", "add", "remove", "relogin"]),
        worker=st.sampled_from(WORKERS),
        account=st.sampled_from(ACCOUNTS),
    )
    def workers(self, action: str, worker: str, account: str) -> None:
        s = self.s
        if action == "add":
            s.add_worker(worker, account)
            assert s.workers[worker].account_id == account
            assert s.workers[worker].blocked_reason is None
        elif action == "relogin":
            s.block_worker(worker, None)
            assert worker not in s.workers or s.workers[worker].blocked_reason is None
        else:
            held = set(s.workers[worker].leases) if worker in s.workers else set()
            decisions = s.remove_worker(worker, self.now)
            assert worker not in s.workers
            assert {d.task_id for d in decisions} == held
            for d in decisions:
                assert d.counted and not d.stale
                assert d.task_id not in s.leases

    @rule(
        dt=st.one_of(st.floats(0.0, 60.0), st.sampled_from([LEASE_SECONDS, DEFAULT_COOLDOWN])),
        expire=st.booleans(),
    )
    def advance(self, dt: float, expire: bool) -> None:
        """Time passes; the driver's lease sweep runs (or not yet)."""
        self.now += dt
        if not expire:
            return
        due = {tid for tid, lease in self.s.leases.items() if lease.deadline <= self.now}
        decisions = self.s.expire_leases(self.now)
        assert {d.task_id for d in decisions} == due
        assert all(d.counted and not d.stale for d in decisions)
        assert all(lease.deadline > self.now for lease in self.s.leases.values())

    # --- dispatch -------------------------------------------------------------------------

    @rule(pick=st.integers(0, len(WORKERS) - 1))
    def assign(self, pick: int) -> None:
        s = self.s
        # like the driver: the next worker (from ``pick`` on) with a free slot asks for work
        present = sorted(s.workers)
        start = pick % len(present) if present else 0
        rotated = present[start:] + present[:start]
        idle = [w for w in rotated if len(s.workers[w].leases) < self.policy.worker_capacity]
        worker = (idle or rotated or [WORKERS[pick]])[0]
        slot_worker = s.workers.get(worker)
        lease = s.next_assignment(worker, self.now)
        dispatchable = [
            tid
            for tid, slot in s.tasks.items()
            if slot.state is TaskState.QUEUED and slot.not_before <= self.now
        ]
        if lease is None:
            could_work = (
                slot_worker is not None
                and not s.paused
                and not s.cancelled
                and not slot_worker.blocked_reason
                and len(slot_worker.leases) < self.policy.worker_capacity
                and self.now >= self.cooling.get(slot_worker.account_id, -math.inf)
            )
            assert not (could_work and dispatchable), (
                f"{worker} idle while {dispatchable} are ready at {self.now}"
            )
            return
        assert slot_worker is not None
        assert not s.paused and not s.cancelled and not slot_worker.blocked_reason
        assert lease.worker_id == worker and lease.account_id == slot_worker.account_id
        cooling_until = self.cooling.get(lease.account_id, -math.inf)
        assert self.now >= cooling_until, (
            f"dispatched to {lease.account_id} at {self.now}, cooling until {cooling_until}"
        )
        tid = lease.task_id
        assert lease.attempt == self.issued[tid] + 1, "attempts must strictly increase by one"
        self.issued[tid] = lease.attempt
        assert self.confirms[tid] == 0, "a done task was dispatched again"
        assert tid not in self.no_redispatch, f"refused/cancelled task {tid} dispatched again"
        assert lease.deadline == self.now + LEASE_SECONDS
        # nothing more urgent was ready
        for other in dispatchable:
            assert self._ready_key(other) >= self._ready_key(tid), (
                f"leased {tid} while more urgent {other} was ready"
            )

    # --- results --------------------------------------------------------------------------

    @rule(
        index=st.integers(0, 4),
        which=st.sampled_from(ATTEMPT_CHOICES),
        older=st.integers(0, 10),
        twice=st.booleans(),
    )
    def offer(self, index: int, which: str, older: int, twice: bool) -> None:
        tid, attempt = self._pick(index, which, older)
        before_lease = self.s.leases.get(tid)
        before_state = self.s.tasks[tid].state
        decision = self.s.offer_result(tid, attempt)
        if attempt < 1 or attempt > self.issued[tid]:
            expected = ResultVerdict.UNKNOWN
        elif self.confirms[tid] or tid in self.pending:
            expected = ResultVerdict.DUPLICATE
        else:
            expected = ResultVerdict.ACCEPT
        assert decision.verdict is expected, (tid, attempt, decision, before_state)
        if decision.verdict is ResultVerdict.ACCEPT:
            assert tid not in self.s.leases
            if before_lease is not None and before_lease.attempt != attempt:
                assert decision.superseded == (before_lease,)
            else:
                assert decision.superseded == ()
            self.pending[tid] = attempt
            self.accepted_from[tid] = before_state
        else:
            assert decision.superseded == ()
            assert self.s.leases.get(tid) == before_lease
            assert self.s.tasks[tid].state is before_state
        if twice:
            again = self.s.offer_result(tid, attempt)
            if expected is ResultVerdict.UNKNOWN:
                assert again.verdict is ResultVerdict.UNKNOWN
            else:
                assert again.verdict is ResultVerdict.DUPLICATE

    @precondition(lambda self: self.pending)
    @rule(
        pick=st.integers(0, 10),
        outcome=st.sampled_from(["confirm", "abort", "abort_uncounted"]),
        kind=st.sampled_from([ErrorKind.INVALID_IMAGE, ErrorKind.OUTPUT_ERROR]),
    )
    def finish_writing(self, pick: int, outcome: str, kind: ErrorKind) -> None:
        """The image of an accepted result was written (confirm), turned out bad (abort) or
        could not be stored through no fault of the prompt (abort_uncounted, e.g. full disk)."""
        tid = sorted(self.pending)[pick % len(self.pending)]
        attempt = self.pending.pop(tid)
        slot = self.s.tasks[tid]
        if outcome == "confirm":
            self.accepted_from.pop(tid)
            self.s.confirm_done(tid, attempt)
            self.confirms[tid] += 1
            assert self.confirms[tid] == 1
            assert slot.state is TaskState.DONE
            return
        failures = slot.failures
        cancel_requested = slot.cancel_requested
        before = self.accepted_from.pop(tid)
        counted = outcome == "abort"
        decision = self.s.abort_result(tid, attempt, kind, self.now, counted=counted)
        assert decision.state is slot.state
        if before.is_terminal:
            # a late image for a task already given up on: it goes back, nothing is counted
            assert slot.state is before and not decision.counted
            assert slot.failures == failures
            return
        assert decision.counted is counted
        if cancel_requested:
            assert slot.state is TaskState.CANCELLED
        elif not counted:
            assert slot.state is TaskState.QUEUED
            assert slot.failures == failures and slot.not_before == 0.0
        elif slot.state is TaskState.QUEUED:
            assert slot.failures == failures + 1
            ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (slot.failures - 1))
            assert self.now <= slot.not_before <= self.now + ceiling

    # --- failures -------------------------------------------------------------------------

    @rule(
        index=st.integers(0, 4),
        which=st.sampled_from(ATTEMPT_CHOICES),
        older=st.integers(0, 10),
        kind=st.sampled_from(list(ErrorKind)),
        retry_after=st.one_of(st.none(), st.floats(0.0, 500.0)),
    )
    def fail(
        self, index: int, which: str, older: int, kind: ErrorKind, retry_after: float | None
    ) -> None:
        s = self.s
        tid, attempt = self._pick(index, which, older)
        lease = s.leases.get(tid)
        slot = s.tasks[tid]
        before = (slot.state, slot.failures, slot.not_before)
        cancel_requested = slot.cancel_requested
        decision = s.report_failure(tid, attempt, kind, self.now, retry_after)
        if attempt < 1 or attempt > self.issued[tid]:
            assert decision is None
            return
        assert decision is not None
        if lease is None or lease.attempt != attempt:
            assert decision.stale and not decision.counted and decision.cooldown is None
            assert (slot.state, slot.failures, slot.not_before) == before
            assert s.leases.get(tid) == lease
            return
        assert not decision.stale
        assert tid not in s.leases
        if kind is ErrorKind.RATE_LIMITED:
            # an announced reset is taken as given, but never shorter than the floor; none at
            # all: the default rest. The decision reports the rest that stands (a longer one
            # announced earlier wins).
            wait = DEFAULT_COOLDOWN if retry_after is None else retry_after
            until = self.now + max(s.policy.min_cooldown, wait)
            standing = max(self.cooling.get(lease.account_id, -math.inf), until)
            assert not decision.counted
            assert decision.cooldown == (lease.account_id, standing)
            assert slot.failures == before[1]
            self.cooling[lease.account_id] = standing
        elif kind is ErrorKind.LOGIN_REQUIRED:
            assert not decision.counted and slot.failures == before[1]
            if lease.worker_id in s.workers:
                assert s.workers[lease.worker_id].blocked_reason
        else:
            assert decision.counted
        if cancel_requested:
            assert slot.state is TaskState.CANCELLED
        elif kind is ErrorKind.REFUSED:
            assert slot.state is TaskState.REFUSED
        elif kind in (ErrorKind.RATE_LIMITED, ErrorKind.LOGIN_REQUIRED):
            assert slot.state is TaskState.QUEUED and slot.not_before == 0.0
        else:
            assert slot.failures == before[1] + 1
            if slot.failures >= MAX_FAILURES:
                assert slot.state is TaskState.DEAD
            else:
                ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (slot.failures - 1))
                assert slot.state is TaskState.QUEUED
                assert self.now <= slot.not_before <= self.now + ceiling

    # --- job control ----------------------------------------------------------------------

    @rule(
        action=st.sampled_from(
            ["pause", "resume", "resume", "retry_dead", "retry_dead_and_refused", "cancel"]
        ),
        go=st.integers(0, 3),
    )
    def job_control(self, action: str, go: int) -> None:
        s = self.s
        if action == "pause":
            s.pause()
            assert s.paused
        elif action == "resume":
            s.resume()
            assert not s.paused
        elif action == "cancel":
            if go:  # rare: a cancelled job has little left to explore
                return
            queued = {tid for tid, slot in s.tasks.items() if slot.state is TaskState.QUEUED}
            cancelled = s.cancel()
            assert set(cancelled) == queued and len(cancelled) == len(queued)
            assert all(s.tasks[tid].state is TaskState.CANCELLED for tid in cancelled)
        elif not s.cancelled:  # reviving tasks of a cancelled job: see the report
            include_refused = action == "retry_dead_and_refused"
            states = {TaskState.DEAD, TaskState.REFUSED} if include_refused else {TaskState.DEAD}
            expected = {tid for tid, slot in s.tasks.items() if slot.state in states}
            revived = s.retry_dead(include_refused=include_refused)
            assert set(revived) == expected and len(revived) == len(expected)
            for tid in revived:
                slot = s.tasks[tid]
                assert slot.state is TaskState.QUEUED and slot.failures == 0
                assert slot.not_before == 0.0
                self.revived_refused.add(tid)
                self.no_redispatch.discard(tid)

    # --- invariants (one entry point, so a failing run's step list stays readable) --------

    @invariant()
    def check(self) -> None:
        self.counts_match_a_recount()
        self.leases_and_workers_agree()
        self.leased_means_leased_or_being_written()
        self.done_at_most_once_and_for_good()
        self.attempts_match_what_was_issued()
        self.transitions_are_legal()
        self.refused_and_cancelled_stay_out_of_the_queue()
        self.cooldowns_never_shrink()

    def counts_match_a_recount(self) -> None:
        recount = dict.fromkeys(TaskState, 0)
        for slot in self.s.tasks.values():
            recount[slot.state] += 1
        assert self.s.counts() == recount

    def leases_and_workers_agree(self) -> None:
        s = self.s
        for tid, lease in s.leases.items():
            assert lease.task_id == tid
            assert lease.worker_id in s.workers, f"lease {lease} held by a removed worker"
            assert tid in s.workers[lease.worker_id].leases
            assert s.tasks[tid].state is TaskState.LEASED
            assert lease.attempt == s.tasks[tid].attempts
        for worker in s.workers.values():
            assert len(worker.leases) <= self.policy.worker_capacity
            for tid in worker.leases:
                assert tid in s.leases and s.leases[tid].worker_id == worker.worker_id

    def leased_means_leased_or_being_written(self) -> None:
        for tid, slot in self.s.tasks.items():
            in_flight = (tid in self.s.leases) + (tid in self.pending)
            if slot.state is TaskState.LEASED:
                assert in_flight == 1, f"task {tid} LEASED but neither leased nor written"
            else:
                assert in_flight == 0, f"task {tid} is {slot.state} but in flight"

    def done_at_most_once_and_for_good(self) -> None:
        for tid in self.task_ids:
            assert self.confirms[tid] <= 1
            if self.confirms[tid]:
                assert self.s.tasks[tid].state is TaskState.DONE
                assert tid not in self.s.leases

    def attempts_match_what_was_issued(self) -> None:
        for tid in self.task_ids:
            assert self.s.tasks[tid].attempts == self.issued[tid]

    def transitions_are_legal(self) -> None:
        for tid in self.task_ids:
            prev, cur = self.prev_states[tid], self.s.tasks[tid].state
            assert cur in ALLOWED[prev], f"task {tid}: {prev} -> {cur}"
            if prev is TaskState.REFUSED and cur is TaskState.QUEUED:
                assert tid in self.revived_refused, f"refused task {tid} requeued"
            self.prev_states[tid] = cur
        self.revived_refused.clear()

    def refused_and_cancelled_stay_out_of_the_queue(self) -> None:
        for tid, slot in self.s.tasks.items():
            if slot.state in (TaskState.REFUSED, TaskState.CANCELLED):
                self.no_redispatch.add(tid)
            if tid in self.no_redispatch and slot.state is TaskState.QUEUED:
                raise AssertionError(f"refused/cancelled task {tid} is queued again")
        if self.s.cancelled:
            queued = [t for t, sl in self.s.tasks.items() if sl.state is TaskState.QUEUED]
            assert not queued, f"cancelled job has queued tasks {queued}: it can never finish"

    def cooldowns_never_shrink(self) -> None:
        for account, until in self.cooling.items():
            assert self.s.cooldowns.get(account, 0.0) >= until

    # --- liveness -------------------------------------------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "s") or sys.exception() is not None:
            return  # setup did not run, or a step already failed: report that failure
        s = self.s
        s.resume()
        for tid, attempt in sorted(self.pending.items()):
            s.confirm_done(tid, attempt)
        self.pending.clear()
        for lease in list(s.leases.values()):  # every running attempt delivers its image
            assert s.offer_result(lease.task_id, lease.attempt).verdict is ResultVerdict.ACCEPT
            s.confirm_done(lease.task_id, lease.attempt)
        now = self.now + 10 * (DEFAULT_COOLDOWN + 500.0 + BACKOFF_CAP + LEASE_SECONDS)
        s.add_worker("healthy", "fresh-account")
        for _ in range(len(s.tasks) + 1):
            lease = s.next_assignment("healthy", now)
            if lease is None:
                break
            assert s.offer_result(lease.task_id, lease.attempt).verdict is ResultVerdict.ACCEPT
            s.confirm_done(lease.task_id, lease.attempt)
        leftover = {tid: slot.state for tid, slot in s.tasks.items() if not slot.state.is_terminal}
        assert not leftover, f"draining left {leftover}"
        assert s.is_finished()


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, database=None
)
TestSchedulerMachine = SchedulerMachine.TestCase
