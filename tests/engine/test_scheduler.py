"""Unit tests for the I/O-free scheduler: one rule per test, synthetic clock, seeded RNG.

Task states are read from ``scheduler.tasks`` directly, so that each test checks its own rule
and not, incidentally, the bookkeeping of ``counts()`` (which has its own tests below).
"""

from __future__ import annotations

import random

import pytest

from novelgen_desktop.engine.model import ErrorKind, TaskState
from novelgen_desktop.engine.scheduler import (
    Lease,
    ResultVerdict,
    Scheduler,
    SchedulerPolicy,
    TaskSlot,
)

POLICY = SchedulerPolicy(
    lease_seconds=600.0,
    max_failures=5,
    backoff_base=5.0,
    backoff_cap=300.0,
    default_cooldown=900.0,
    worker_capacity=1,
)

COUNTED_KINDS = [
    ErrorKind.TIMEOUT,
    ErrorKind.PAGE_ERROR,
    ErrorKind.NETWORK,
    ErrorKind.LEASE_EXPIRED,
    ErrorKind.WORKER_LOST,
    ErrorKind.INVALID_IMAGE,
    ErrorKind.OUTPUT_ERROR,
]


def make(
    n: int = 1,
    *,
    policy: SchedulerPolicy = POLICY,
    seed: int = 0,
    workers: dict[str, str] | None = None,
) -> Scheduler:
    """A scheduler with tasks 1..n (seq = id, priority 0) and the given worker -> account."""
    s = Scheduler(policy, rng=random.Random(seed))
    s.load(TaskSlot(id=i, seq=i) for i in range(1, n + 1))
    for worker_id, account_id in (workers if workers is not None else {"w1": "a1"}).items():
        s.add_worker(worker_id, account_id)
    return s


def lease_of(s: Scheduler, worker_id: str, now: float) -> Lease:
    lease = s.next_assignment(worker_id, now)
    assert lease is not None, f"{worker_id} got no work at {now}"
    return lease


def finish(s: Scheduler, lease: Lease) -> None:
    assert s.offer_result(lease.task_id, lease.attempt).verdict is ResultVerdict.ACCEPT
    s.confirm_done(lease.task_id, lease.attempt)


def state(s: Scheduler, task_id: int) -> TaskState:
    return s.tasks[task_id].state


def recount(s: Scheduler) -> dict[TaskState, int]:
    counted = dict.fromkeys(TaskState, 0)
    for slot in s.tasks.values():
        counted[slot.state] += 1
    return counted


# --- dispatch order and capacity ------------------------------------------------------------


def test_dispatch_highest_priority_first_then_script_order() -> None:
    slots = [
        TaskSlot(id=10, seq=0, priority=0),
        TaskSlot(id=11, seq=1, priority=2),
        TaskSlot(id=12, seq=2, priority=0),
        TaskSlot(id=13, seq=3, priority=5),
        TaskSlot(id=14, seq=4, priority=2),
        TaskSlot(id=15, seq=5, priority=-1),
    ]
    random.Random(7).shuffle(slots)  # load order must not matter
    s = Scheduler(SchedulerPolicy(worker_capacity=10), rng=random.Random(0))
    s.load(slots)
    s.add_worker("w1", "a1")
    order = [lease_of(s, "w1", 0.0).task_id for _ in range(6)]
    assert order == [13, 11, 14, 10, 12, 15]
    assert s.next_assignment("w1", 0.0) is None


def test_script_order_uses_seq_not_task_id() -> None:
    s = Scheduler(SchedulerPolicy(worker_capacity=3), rng=random.Random(0))
    s.load([TaskSlot(id=1, seq=30), TaskSlot(id=2, seq=10), TaskSlot(id=3, seq=20)])
    s.add_worker("w1", "a1")
    assert [lease_of(s, "w1", 0.0).task_id for _ in range(3)] == [2, 3, 1]


def test_worker_holds_one_lease_at_a_time_by_default() -> None:
    s = make(3)
    first = lease_of(s, "w1", 0.0)
    assert s.next_assignment("w1", 1.0) is None
    assert s.workers["w1"].leases == {first.task_id}
    finish(s, first)
    second = lease_of(s, "w1", 2.0)
    assert second.task_id != first.task_id


def test_worker_capacity_from_policy() -> None:
    s = make(5, policy=SchedulerPolicy(worker_capacity=3))
    leases = [lease_of(s, "w1", 0.0) for _ in range(3)]
    assert s.next_assignment("w1", 0.0) is None
    assert s.workers["w1"].leases == {lease.task_id for lease in leases}


def test_capacity_is_per_worker() -> None:
    s = make(3, workers={"w1": "a1", "w2": "a1"})
    a = lease_of(s, "w1", 0.0)
    b = lease_of(s, "w2", 0.0)
    assert a.task_id != b.task_id
    assert s.next_assignment("w1", 0.0) is None


def test_unknown_worker_gets_nothing() -> None:
    s = make(1)
    assert s.next_assignment("nobody", 0.0) is None
    assert state(s, 1) is TaskState.QUEUED


def test_lease_fields() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 42.0)
    assert lease == Lease(
        task_id=1, attempt=1, worker_id="w1", account_id="a1", started_at=42.0, deadline=642.0
    )
    assert s.leases[1] == lease
    assert state(s, 1) is TaskState.LEASED
    assert s.tasks[1].attempts == 1


# --- leases ---------------------------------------------------------------------------------


def test_lease_not_expired_before_deadline() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    assert s.expire_leases(lease.deadline - 0.001) == []
    assert s.leases[1] == lease


def test_expired_lease_requeues_and_counts_a_failure() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    [decision] = s.expire_leases(lease.deadline)
    assert decision.task_id == 1 and decision.attempt == 1
    assert decision.counted and not decision.stale
    assert decision.state is TaskState.QUEUED
    assert s.tasks[1].failures == 1
    assert state(s, 1) is TaskState.QUEUED
    assert 1 not in s.leases
    assert s.workers["w1"].leases == set()
    # backoff after the first failure: within [deadline, deadline + base]
    assert lease.deadline <= decision.not_before <= lease.deadline + POLICY.backoff_base
    retry = lease_of(s, "w1", decision.not_before)
    assert retry.task_id == 1 and retry.attempt == 2


def test_task_that_hangs_every_worker_ends_dead() -> None:
    policy = SchedulerPolicy(lease_seconds=10.0, max_failures=4)
    s = make(1, policy=policy)
    now = 0.0
    for expected_failures in range(1, 5):
        lease = lease_of(s, "w1", now)
        now = lease.deadline
        [decision] = s.expire_leases(now)
        assert decision.failures == expected_failures
        now = max(now, decision.not_before)
    assert state(s, 1) is TaskState.DEAD
    assert s.next_assignment("w1", now + 1e6) is None


# --- backoff --------------------------------------------------------------------------------


def _backoff_delays(failures_before: int, seeds: range, policy: SchedulerPolicy) -> list[float]:
    """Delay chosen for the (failures_before + 1)-th failure, one per RNG seed."""
    delays = []
    for seed in seeds:
        s = Scheduler(policy, rng=random.Random(seed))
        s.load([TaskSlot(id=1, seq=1, failures=failures_before)])
        s.add_worker("w1", "a1")
        now = 1000.0
        lease = lease_of(s, "w1", now)
        decision = s.report_failure(1, lease.attempt, ErrorKind.TIMEOUT, now)
        assert decision is not None and decision.state is TaskState.QUEUED
        assert decision.failures == failures_before + 1
        assert s.tasks[1].not_before == decision.not_before
        delays.append(decision.not_before - now)
    return delays


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5, 6, 7])
def test_backoff_is_full_jitter_within_the_exponential_ceiling(failures: int) -> None:
    policy = SchedulerPolicy(max_failures=100, backoff_base=5.0, backoff_cap=300.0)
    ceiling = min(300.0, 5.0 * 2 ** (failures - 1))
    delays = _backoff_delays(failures - 1, range(300), policy)
    assert all(0.0 <= d <= ceiling for d in delays), (min(delays), max(delays), ceiling)
    # full jitter: spread over the whole window, not a fixed or half-jitter delay
    assert min(delays) < 0.1 * ceiling
    assert max(delays) > 0.9 * ceiling
    assert len(set(delays)) > 250


@pytest.mark.parametrize("failures", [8, 12, 30])
def test_backoff_ceiling_is_capped(failures: int) -> None:
    policy = SchedulerPolicy(max_failures=100, backoff_base=5.0, backoff_cap=300.0)
    delays = _backoff_delays(failures - 1, range(300), policy)
    assert max(delays) <= 300.0
    assert max(delays) > 270.0  # the cap is the ceiling, not something smaller


def test_task_not_dispatched_before_not_before_but_right_after() -> None:
    s = make(1, seed=3)
    now = 100.0
    lease = lease_of(s, "w1", now)
    decision = s.report_failure(1, lease.attempt, ErrorKind.NETWORK, now)
    assert decision is not None
    assert decision.not_before > now  # a seed whose jitter is not zero
    assert s.next_assignment("w1", now) is None
    assert s.next_assignment("w1", decision.not_before - 1e-6) is None
    retry = lease_of(s, "w1", decision.not_before)
    assert retry.task_id == 1 and retry.attempt == 2


def test_backing_off_task_does_not_block_others() -> None:
    s = make(2, seed=3)
    lease = lease_of(s, "w1", 0.0)
    assert lease.task_id == 1
    s.report_failure(1, 1, ErrorKind.PAGE_ERROR, 0.0)
    assert lease_of(s, "w1", 0.0).task_id == 2


# --- dead and refused -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", COUNTED_KINDS)
def test_counted_failure_kinds_count_once(kind: ErrorKind) -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    decision = s.report_failure(1, lease.attempt, kind, 0.0)
    assert decision is not None
    assert decision.counted and decision.failures == 1 and s.tasks[1].failures == 1
    assert decision.state is TaskState.QUEUED


def test_dead_after_max_failures() -> None:
    policy = SchedulerPolicy(max_failures=3)
    s = make(1, policy=policy, seed=1)
    now = 0.0
    states = []
    for _ in range(3):
        lease = lease_of(s, "w1", now)
        decision = s.report_failure(1, lease.attempt, ErrorKind.TIMEOUT, now)
        assert decision is not None
        states.append(decision.state)
        now = max(now, decision.not_before) + 1.0
    assert states == [TaskState.QUEUED, TaskState.QUEUED, TaskState.DEAD]
    assert state(s, 1) is TaskState.DEAD
    assert s.tasks[1].failures == 3
    assert s.next_assignment("w1", now + 1e6) is None


def test_refusal_is_terminal_at_once_and_not_retried() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    decision = s.report_failure(1, lease.attempt, ErrorKind.REFUSED, 0.0)
    assert decision is not None
    assert decision.state is TaskState.REFUSED
    assert state(s, 1) is TaskState.REFUSED
    assert s.tasks[1].failures == 0  # refused on the first try: no retries spent
    assert 1 not in s.leases
    assert s.next_assignment("w1", 1e9) is None
    assert s.tasks[1].attempts == 1


# --- rate limits ----------------------------------------------------------------------------


def test_rate_limit_is_not_a_failure_and_cools_the_account() -> None:
    s = make(1, workers={"w1": "a1"})
    lease = lease_of(s, "w1", 100.0)
    decision = s.report_failure(1, lease.attempt, ErrorKind.RATE_LIMITED, 110.0, retry_after=50.0)
    assert decision is not None
    assert not decision.counted
    assert decision.failures == 0 and s.tasks[1].failures == 0
    assert decision.cooldown == ("a1", 160.0)
    assert s.cooldowns["a1"] == 160.0
    assert decision.state is TaskState.QUEUED and decision.not_before == 0.0
    assert not s.account_available("a1", 159.9)
    assert s.account_available("a1", 160.0)


def test_rate_limit_without_reset_time_uses_default_cooldown() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    decision = s.report_failure(1, lease.attempt, ErrorKind.RATE_LIMITED, 10.0, retry_after=None)
    assert decision is not None
    assert decision.cooldown == ("a1", 10.0 + POLICY.default_cooldown)
    assert s.cooldowns["a1"] == 910.0


@pytest.mark.parametrize("retry_after", [0.0, -5.0, 1.0])
def test_rate_limit_rest_is_never_shorter_than_the_floor(retry_after: float) -> None:
    """A reset of "0 seconds" (or a parsing slip) must not send the account straight back
    into the limit in a tight loop: every rest lasts at least ``min_cooldown``."""
    s = make(1)
    floor = s.policy.min_cooldown
    lease = lease_of(s, "w1", 0.0)
    decision = s.report_failure(1, lease.attempt, ErrorKind.RATE_LIMITED, 10.0, retry_after)
    assert decision is not None and not decision.counted
    assert decision.cooldown == ("a1", 10.0 + floor)
    assert not s.account_available("a1", 10.0 + floor - 0.001)
    assert s.account_available("a1", 10.0 + floor)


def test_decision_reports_the_cooldown_that_really_stands() -> None:
    s = make(2, workers={"w1": "a1", "w2": "a1"})
    first = lease_of(s, "w1", 0.0)
    second = lease_of(s, "w2", 0.0)
    s.report_failure(first.task_id, first.attempt, ErrorKind.RATE_LIMITED, 0.0, 500.0)
    decision = s.report_failure(second.task_id, second.attempt, ErrorKind.RATE_LIMITED, 0.0, 30.0)
    assert decision is not None
    assert decision.cooldown == ("a1", 500.0)  # the longer rest announced first still stands


def test_retry_dead_in_a_cancelled_job_revives_nothing() -> None:
    s = make(2, policy=SchedulerPolicy(max_failures=1))
    lease = lease_of(s, "w1", 0.0)
    s.report_failure(lease.task_id, lease.attempt, ErrorKind.PAGE_ERROR, 0.0)
    assert s.tasks[lease.task_id].state is TaskState.DEAD
    s.cancel()
    assert s.retry_dead() == []
    assert s.is_finished()


def test_no_worker_of_a_cooling_account_gets_work_until_reset() -> None:
    s = make(3, workers={"w1": "a1", "w2": "a1"})
    lease = lease_of(s, "w1", 0.0)
    s.report_failure(lease.task_id, lease.attempt, ErrorKind.RATE_LIMITED, 0.0, retry_after=30.0)
    for worker_id in ("w1", "w2"):
        assert s.next_assignment(worker_id, 0.0) is None
        assert s.next_assignment(worker_id, 29.999) is None
    assert lease_of(s, "w2", 30.0).account_id == "a1"


def test_rate_limited_task_goes_to_another_account_right_away() -> None:
    s = make(1, workers={"w1": "a1", "w2": "a2"})
    lease = lease_of(s, "w1", 0.0)
    s.report_failure(1, lease.attempt, ErrorKind.RATE_LIMITED, 5.0, retry_after=600.0)
    assert s.next_assignment("w1", 5.0) is None
    other = lease_of(s, "w2", 5.0)
    assert other.task_id == 1 and other.attempt == 2 and other.account_id == "a2"


def test_cooldown_is_never_shortened() -> None:
    s = make(0)
    s.set_cooldown("a1", 500.0)
    s.set_cooldown("a1", 100.0)
    assert s.cooldowns["a1"] == 500.0
    s.set_cooldown("a1", 700.0)
    assert s.cooldowns["a1"] == 700.0


# --- login required -------------------------------------------------------------------------


def test_login_required_blocks_only_that_worker() -> None:
    s = make(2, workers={"w1": "a1", "w2": "a1"})
    lease = lease_of(s, "w1", 0.0)
    decision = s.report_failure(1, lease.attempt, ErrorKind.LOGIN_REQUIRED, 0.0)
    assert decision is not None
    assert not decision.counted and s.tasks[1].failures == 0
    assert decision.state is TaskState.QUEUED
    assert s.workers["w1"].blocked_reason
    assert s.next_assignment("w1", 0.0) is None
    assert s.account_available("a1", 0.0)  # the account is fine, only the tab is not
    assert lease_of(s, "w2", 0.0).task_id == 1  # same account, other worker: straight away
    s.block_worker("w1", None)  # logged in again
    assert lease_of(s, "w1", 0.0).task_id == 2


def test_re_adding_a_worker_clears_its_block() -> None:
    s = make(1)
    s.block_worker("w1", "login required")
    assert s.next_assignment("w1", 0.0) is None
    s.add_worker("w1", "a1")
    assert lease_of(s, "w1", 0.0).task_id == 1


# --- idempotent results ---------------------------------------------------------------------


def test_duplicate_result_for_a_done_task() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    finish(s, lease)
    assert state(s, 1) is TaskState.DONE
    assert s.offer_result(1, 1).verdict is ResultVerdict.DUPLICATE
    assert state(s, 1) is TaskState.DONE


def test_second_result_while_the_first_is_being_written() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.DUPLICATE
    s.confirm_done(1, lease.attempt)
    assert state(s, 1) is TaskState.DONE
    with pytest.raises(ValueError):
        s.confirm_done(1, lease.attempt)  # a second done is impossible


@pytest.mark.parametrize(("task_id", "attempt"), [(1, 2), (1, 0), (1, -1), (99, 1)])
def test_result_for_an_attempt_never_issued_is_unknown(task_id: int, attempt: int) -> None:
    s = make(1)
    lease_of(s, "w1", 0.0)
    assert s.offer_result(task_id, attempt).verdict is ResultVerdict.UNKNOWN
    assert state(s, 1) is TaskState.LEASED
    assert 1 in s.leases  # the real lease is untouched


def test_result_for_a_never_dispatched_task_is_unknown() -> None:
    s = make(1)
    assert s.offer_result(1, 1).verdict is ResultVerdict.UNKNOWN
    assert state(s, 1) is TaskState.QUEUED


def test_confirm_without_accept_is_refused() -> None:
    s = make(1)
    lease_of(s, "w1", 0.0)
    with pytest.raises(ValueError):
        s.confirm_done(1, 1)
    assert state(s, 1) is TaskState.LEASED


def test_accepted_result_releases_the_lease() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    decision = s.offer_result(1, lease.attempt)
    assert decision.verdict is ResultVerdict.ACCEPT and decision.superseded == ()
    assert 1 not in s.leases and s.workers["w1"].leases == set()
    assert s.expire_leases(1e9) == []  # nothing to expire while the image is written


def test_late_result_of_expired_attempt_wins_and_supersedes_the_new_lease() -> None:
    s = make(1, workers={"w1": "a1", "w2": "a2"})
    first = lease_of(s, "w1", 0.0)
    [expiry] = s.expire_leases(first.deadline)
    second = lease_of(s, "w2", expiry.not_before)
    assert second.attempt == 2

    decision = s.offer_result(1, first.attempt)  # the image of attempt 1 arrives late
    assert decision.verdict is ResultVerdict.ACCEPT
    assert decision.superseded == (second,)
    assert 1 not in s.leases
    assert s.workers["w2"].leases == set()

    assert s.offer_result(1, second.attempt).verdict is ResultVerdict.DUPLICATE  # writing
    s.confirm_done(1, first.attempt)
    assert state(s, 1) is TaskState.DONE
    assert s.offer_result(1, second.attempt).verdict is ResultVerdict.DUPLICATE  # done

    stale = s.report_failure(1, second.attempt, ErrorKind.TIMEOUT, expiry.not_before + 5)
    assert stale is not None
    assert stale.stale and not stale.counted
    assert stale.state is TaskState.DONE
    assert s.tasks[1].failures == expiry.failures  # unchanged by the stale report


def test_late_result_while_task_waits_in_the_queue_is_accepted() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.expire_leases(lease.deadline)
    assert state(s, 1) is TaskState.QUEUED
    decision = s.offer_result(1, 1)
    assert decision.verdict is ResultVerdict.ACCEPT and decision.superseded == ()
    s.confirm_done(1, 1)
    assert state(s, 1) is TaskState.DONE
    assert s.next_assignment("w1", 1e9) is None  # not dispatched again


def test_stale_failure_of_an_expired_attempt_changes_nothing() -> None:
    s = make(1, workers={"w1": "a1", "w2": "a2"})
    first = lease_of(s, "w1", 0.0)
    [expiry] = s.expire_leases(first.deadline)
    second = lease_of(s, "w2", expiry.not_before)
    decision = s.report_failure(1, first.attempt, ErrorKind.RATE_LIMITED, second.started_at, 99)
    assert decision is not None
    assert decision.stale and not decision.counted and decision.cooldown is None
    assert s.leases[1] == second
    assert s.tasks[1].failures == 1
    assert "a1" not in s.cooldowns


def test_stale_failure_while_the_task_waits_in_the_queue_changes_nothing() -> None:
    """The expiry already counted the attempt; its own late failure report must not count
    again or move the backoff."""
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    [expiry] = s.expire_leases(lease.deadline)
    decision = s.report_failure(1, lease.attempt, ErrorKind.TIMEOUT, lease.deadline + 1)
    assert decision is not None and decision.stale and not decision.counted
    assert decision.state is TaskState.QUEUED
    assert s.tasks[1].failures == expiry.failures == 1
    assert s.tasks[1].not_before == expiry.not_before


def test_failure_for_an_attempt_never_issued_is_none() -> None:
    s = make(1)
    lease_of(s, "w1", 0.0)
    assert s.report_failure(1, 2, ErrorKind.TIMEOUT, 0.0) is None
    assert s.report_failure(1, 0, ErrorKind.TIMEOUT, 0.0) is None
    assert s.report_failure(77, 1, ErrorKind.TIMEOUT, 0.0) is None
    assert s.tasks[1].failures == 0 and 1 in s.leases


def test_abort_result_requeues_with_a_counted_failure() -> None:
    s = make(1, seed=5)
    lease = lease_of(s, "w1", 0.0)
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    decision = s.abort_result(1, lease.attempt, ErrorKind.INVALID_IMAGE, 10.0)
    assert decision.counted and decision.failures == 1
    assert decision.state is TaskState.QUEUED
    assert 10.0 <= decision.not_before <= 10.0 + POLICY.backoff_base
    assert state(s, 1) is TaskState.QUEUED
    with pytest.raises(ValueError):
        s.confirm_done(1, lease.attempt)  # the aborted result can no longer complete
    retry = lease_of(s, "w1", decision.not_before)
    assert retry.attempt == 2


def test_uncounted_abort_requeues_at_once_without_a_failure() -> None:
    """Our fault (a full disk), not the prompt's: no failure, no backoff."""
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    decision = s.abort_result(1, lease.attempt, ErrorKind.OUTPUT_ERROR, 10.0, counted=False)
    assert not decision.counted and decision.state is TaskState.QUEUED
    assert s.tasks[1].failures == 0 and s.tasks[1].not_before == 0.0
    assert lease_of(s, "w1", 10.0).attempt == 2


def test_uncounted_abort_in_a_cancelled_job_cancels() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    s.cancel()
    decision = s.abort_result(1, lease.attempt, ErrorKind.OUTPUT_ERROR, 1.0, counted=False)
    assert decision.state is TaskState.CANCELLED
    assert s.is_finished()


def test_abort_of_a_result_that_was_not_accepted_raises() -> None:
    s = make(1)
    lease_of(s, "w1", 0.0)
    with pytest.raises(ValueError):
        s.abort_result(1, 1, ErrorKind.INVALID_IMAGE, 0.0)
    assert state(s, 1) is TaskState.LEASED


def test_abort_after_a_late_result_for_a_refused_task_keeps_it_refused() -> None:
    """A refusal is terminal. A late image of an earlier attempt may still be kept, but if that
    image turns out invalid the task must not be dispatched again: it would be refused (and
    paid for) again."""
    s = make(1, workers={"w1": "a1", "w2": "a2"})
    first = lease_of(s, "w1", 0.0)
    [expiry] = s.expire_leases(first.deadline)
    second = lease_of(s, "w2", expiry.not_before)
    s.report_failure(1, second.attempt, ErrorKind.REFUSED, expiry.not_before + 1)
    assert state(s, 1) is TaskState.REFUSED

    assert s.offer_result(1, first.attempt).verdict is ResultVerdict.ACCEPT
    s.abort_result(1, first.attempt, ErrorKind.INVALID_IMAGE, expiry.not_before + 2)
    assert state(s, 1) is TaskState.REFUSED
    assert s.next_assignment("w1", 1e9) is None


def test_abort_after_a_late_result_for_a_dead_task_keeps_it_dead_uncounted() -> None:
    s = make(1, policy=SchedulerPolicy(max_failures=1), workers={"w1": "a1", "w2": "a2"})
    lease = lease_of(s, "w1", 0.0)
    [expiry] = s.expire_leases(lease.deadline)
    assert expiry.state is TaskState.DEAD
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    decision = s.abort_result(1, lease.attempt, ErrorKind.INVALID_IMAGE, lease.deadline + 1)
    assert decision.state is TaskState.DEAD and not decision.counted
    assert state(s, 1) is TaskState.DEAD
    assert s.tasks[1].failures == 1  # the bad late image is not a new failure of the task
    assert s.retry_dead() == [1]  # still revivable by hand


def test_abort_after_a_result_for_the_refused_attempt_itself_keeps_it_refused() -> None:
    """A confused worker reports a refusal, then an image for the same attempt."""
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.report_failure(1, lease.attempt, ErrorKind.REFUSED, 1.0)
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    s.abort_result(1, lease.attempt, ErrorKind.INVALID_IMAGE, 2.0)
    assert state(s, 1) is TaskState.REFUSED
    assert s.next_assignment("w1", 1e9) is None


# --- pause, cancel, retry -------------------------------------------------------------------


def test_pause_stops_dispatch_and_resume_restarts_it() -> None:
    s = make(2)
    s.pause()
    assert s.next_assignment("w1", 0.0) is None
    assert state(s, 1) is TaskState.QUEUED
    s.resume()
    assert lease_of(s, "w1", 0.0).task_id == 1


def test_pause_keeps_running_leases() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.pause()
    finish(s, lease)
    assert state(s, 1) is TaskState.DONE


def test_cancel_turns_queued_tasks_into_cancelled() -> None:
    s = make(3, workers={"w1": "a1"})
    lease = lease_of(s, "w1", 0.0)
    assert sorted(s.cancel()) == [2, 3]
    assert state(s, 2) is TaskState.CANCELLED and state(s, 3) is TaskState.CANCELLED
    assert state(s, lease.task_id) is TaskState.LEASED
    s.add_worker("w2", "a2")
    assert s.next_assignment("w2", 0.0) is None


def test_cancelled_job_keeps_the_result_of_a_running_lease() -> None:
    s = make(2)
    lease = lease_of(s, "w1", 0.0)
    s.cancel()
    finish(s, lease)
    assert state(s, lease.task_id) is TaskState.DONE


@pytest.mark.parametrize(
    "kind", [ErrorKind.TIMEOUT, ErrorKind.RATE_LIMITED, ErrorKind.LOGIN_REQUIRED]
)
def test_cancelled_job_leased_task_that_fails_becomes_cancelled(kind: ErrorKind) -> None:
    s = make(2)
    lease = lease_of(s, "w1", 0.0)
    s.cancel()
    decision = s.report_failure(lease.task_id, lease.attempt, kind, 1.0, retry_after=10.0)
    assert decision is not None and decision.state is TaskState.CANCELLED
    assert state(s, lease.task_id) is TaskState.CANCELLED


def test_cancelled_job_expired_lease_becomes_cancelled() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.cancel()
    [decision] = s.expire_leases(lease.deadline)
    assert decision.state is TaskState.CANCELLED
    assert state(s, 1) is TaskState.CANCELLED


def test_cancelled_job_aborted_result_becomes_cancelled() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    s.cancel()
    decision = s.abort_result(1, lease.attempt, ErrorKind.OUTPUT_ERROR, 1.0)
    assert decision.state is TaskState.CANCELLED


def test_cancelled_task_with_a_late_invalid_result_stays_cancelled() -> None:
    """Queued when the job was cancelled, then the late image of an expired attempt arrives
    and is accepted, then turns out invalid: the task must end cancelled, not queued in a
    cancelled job (where nothing is dispatched any more and the job would never finish)."""
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.expire_leases(lease.deadline)
    assert s.cancel() == [1]
    assert s.offer_result(1, lease.attempt).verdict is ResultVerdict.ACCEPT
    decision = s.abort_result(1, lease.attempt, ErrorKind.INVALID_IMAGE, lease.deadline + 1)
    assert decision.state is TaskState.CANCELLED
    assert state(s, 1) is TaskState.CANCELLED


def test_retry_dead_revives_dead_tasks_only() -> None:
    s = make(3, policy=SchedulerPolicy(max_failures=1, worker_capacity=3))
    dead = lease_of(s, "w1", 0.0)
    refused = lease_of(s, "w1", 0.0)
    s.report_failure(dead.task_id, dead.attempt, ErrorKind.TIMEOUT, 0.0)
    s.report_failure(refused.task_id, refused.attempt, ErrorKind.REFUSED, 0.0)
    assert state(s, dead.task_id) is TaskState.DEAD
    assert state(s, refused.task_id) is TaskState.REFUSED

    assert s.retry_dead() == [dead.task_id]
    slot = s.tasks[dead.task_id]
    assert slot.state is TaskState.QUEUED and slot.failures == 0 and slot.not_before == 0.0
    assert state(s, refused.task_id) is TaskState.REFUSED
    assert state(s, 3) is TaskState.QUEUED  # untouched
    revived = lease_of(s, "w1", 0.0)  # dispatchable at once, no leftover backoff
    assert revived.task_id == dead.task_id and revived.attempt == 2


def test_retry_dead_with_flag_revives_refused_too() -> None:
    s = make(2, policy=SchedulerPolicy(max_failures=1, worker_capacity=2))
    dead = lease_of(s, "w1", 0.0)
    refused = lease_of(s, "w1", 0.0)
    s.report_failure(dead.task_id, dead.attempt, ErrorKind.NETWORK, 0.0)
    s.report_failure(refused.task_id, refused.attempt, ErrorKind.REFUSED, 0.0)
    assert sorted(s.retry_dead(include_refused=True)) == [1, 2]
    assert state(s, 1) is TaskState.QUEUED and state(s, 2) is TaskState.QUEUED
    assert s.retry_dead(include_refused=True) == []


# --- workers going away, loading ------------------------------------------------------------


def test_remove_worker_requeues_its_leases() -> None:
    s = make(3, policy=SchedulerPolicy(worker_capacity=2), workers={"w1": "a1", "w2": "a2"})
    a = lease_of(s, "w1", 0.0)
    b = lease_of(s, "w1", 0.0)
    c = lease_of(s, "w2", 0.0)
    decisions = s.remove_worker("w1", 5.0)
    assert sorted(d.task_id for d in decisions) == sorted([a.task_id, b.task_id])
    assert all(d.counted and d.failures == 1 and d.state is TaskState.QUEUED for d in decisions)
    assert "w1" not in s.workers
    assert set(s.leases) == {c.task_id}
    assert state(s, a.task_id) is TaskState.QUEUED
    assert s.remove_worker("w1", 6.0) == []
    # the removed worker's late failure report is stale; its late image is still kept
    stale = s.report_failure(a.task_id, a.attempt, ErrorKind.TIMEOUT, 7.0)
    assert stale is not None and stale.stale
    assert s.tasks[a.task_id].failures == 1
    assert s.offer_result(b.task_id, b.attempt).verdict is ResultVerdict.ACCEPT


def test_removed_workers_task_goes_to_another_worker() -> None:
    s = make(1, workers={"w1": "a1", "w2": "a2"})
    lease = lease_of(s, "w1", 0.0)
    [decision] = s.remove_worker("w1", 1.0)
    retry = lease_of(s, "w2", decision.not_before)
    assert retry.task_id == lease.task_id and retry.attempt == 2
    assert s.next_assignment("w1", decision.not_before) is None


def test_load_turns_leased_tasks_into_queued() -> None:
    s = Scheduler(POLICY, rng=random.Random(0))
    s.load([TaskSlot(id=1, seq=1, state=TaskState.LEASED, attempts=3, failures=1)])
    assert state(s, 1) is TaskState.QUEUED
    s.add_worker("w1", "a1")
    lease = lease_of(s, "w1", 0.0)
    assert lease.task_id == 1 and lease.attempt == 4  # attempts keep increasing
    assert s.offer_result(1, 3).verdict is ResultVerdict.ACCEPT  # the old attempt was issued


def test_load_does_not_dispatch_terminal_tasks() -> None:
    s = Scheduler(POLICY, rng=random.Random(0))
    s.load(
        [
            TaskSlot(id=1, seq=1, state=TaskState.DONE, attempts=1),
            TaskSlot(id=2, seq=2, state=TaskState.DEAD, attempts=5, failures=5),
            TaskSlot(id=3, seq=3, state=TaskState.REFUSED, attempts=1),
            TaskSlot(id=4, seq=4, state=TaskState.CANCELLED),
            TaskSlot(id=5, seq=5),
        ]
    )
    s.add_worker("w1", "a1")
    assert lease_of(s, "w1", 0.0).task_id == 5
    s.add_worker("w2", "a1")
    assert s.next_assignment("w2", 1e9) is None


def test_load_respects_a_persisted_backoff() -> None:
    s = Scheduler(POLICY, rng=random.Random(0))
    s.load([TaskSlot(id=1, seq=1, not_before=50.0), TaskSlot(id=2, seq=2)])
    s.add_worker("w1", "a1")
    s.add_worker("w2", "a1")
    assert lease_of(s, "w1", 0.0).task_id == 2
    assert s.next_assignment("w2", 49.0) is None
    assert lease_of(s, "w2", 50.0).task_id == 1


def test_counts_after_load_match_the_loaded_states() -> None:
    s = Scheduler(POLICY, rng=random.Random(0))
    s.load(
        [
            TaskSlot(id=1, seq=1),
            TaskSlot(id=2, seq=2, state=TaskState.LEASED, attempts=1),
            TaskSlot(id=3, seq=3, state=TaskState.DONE, attempts=1),
            TaskSlot(id=4, seq=4, state=TaskState.DEAD, attempts=5, failures=5),
        ]
    )
    expected = dict.fromkeys(TaskState, 0)
    expected[TaskState.QUEUED] = 2
    expected[TaskState.DONE] = 1
    expected[TaskState.DEAD] = 1
    assert s.counts() == expected


def test_counts_follow_dispatch_and_completion() -> None:
    s = make(3)
    lease = lease_of(s, "w1", 0.0)
    assert s.counts() == recount(s)
    assert s.counts()[TaskState.LEASED] == 1 and s.counts()[TaskState.QUEUED] == 2
    finish(s, lease)
    assert s.counts() == recount(s)
    assert s.counts()[TaskState.DONE] == 1


# --- wakeups and cooldown queries -----------------------------------------------------------


def test_next_wakeup_is_none_when_nothing_is_pending() -> None:
    s = make(1)
    assert s.next_wakeup(0.0) is None


def test_next_wakeup_is_the_backoff_end() -> None:
    s = make(1, seed=11)
    lease = lease_of(s, "w1", 0.0)
    decision = s.report_failure(1, lease.attempt, ErrorKind.TIMEOUT, 0.0)
    assert decision is not None and decision.not_before > 0.0
    assert s.next_wakeup(0.0) == decision.not_before


def test_next_wakeup_is_the_cooldown_end() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.report_failure(1, lease.attempt, ErrorKind.RATE_LIMITED, 0.0, retry_after=120.0)
    assert s.next_wakeup(0.0) == 120.0
    assert s.next_wakeup(120.0) is None  # the cooldown has ended: nothing left in the future


def test_next_wakeup_is_the_lease_deadline() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 3.0)
    assert s.next_wakeup(3.0) == lease.deadline


@pytest.mark.parametrize("earliest", ["backoff", "cooldown", "lease"])
def test_next_wakeup_is_the_earliest_of_the_three(earliest: str) -> None:
    times = {"backoff": 300.0, "cooldown": 400.0, "lease": 500.0}
    times[earliest] = 100.0
    s = Scheduler(SchedulerPolicy(lease_seconds=times["lease"]), rng=random.Random(0))
    s.load([TaskSlot(id=1, seq=1, not_before=times["backoff"]), TaskSlot(id=2, seq=2)])
    s.add_worker("w1", "a1")
    lease_of(s, "w1", 0.0)  # task 2; deadline = lease time
    s.set_cooldown("a2", times["cooldown"])
    assert s.next_wakeup(0.0) == 100.0


def test_next_wakeup_sees_a_later_backoff_behind_a_due_one() -> None:
    """Task 1's backoff is over (due, but no worker free to take it); task 2's ends at 20.
    The earliest future change is 20, not 'nothing'."""
    s = Scheduler(POLICY, rng=random.Random(0))
    s.load([TaskSlot(id=1, seq=1, not_before=10.0), TaskSlot(id=2, seq=2, not_before=20.0)])
    assert s.next_wakeup(15.0) == 20.0


def test_next_wakeup_ignores_entries_of_tasks_no_longer_waiting() -> None:
    """Task 1's backoff entry is left behind when a late result completes it; it must not
    hide task 2's later backoff end once it is in the past."""
    s = Scheduler(POLICY, rng=random.Random(0))
    s.load(
        [TaskSlot(id=1, seq=1, attempts=1, not_before=10.0), TaskSlot(id=2, seq=2, not_before=30.0)]
    )
    assert s.offer_result(1, 1).verdict is ResultVerdict.ACCEPT
    s.confirm_done(1, 1)
    assert s.next_wakeup(5.0) in (10.0, 30.0)  # an early spurious wakeup is harmless
    assert s.next_wakeup(15.0) == 30.0


def test_earliest_cooldown_end_only_when_every_account_cools() -> None:
    s = make(0, workers={"w1": "a1", "w2": "a2", "w3": "a2"})
    assert s.earliest_cooldown_end(0.0) is None
    s.set_cooldown("a1", 100.0)
    assert s.earliest_cooldown_end(0.0) is None  # a2 still works
    s.set_cooldown("a2", 60.0)
    assert s.earliest_cooldown_end(0.0) == 60.0
    assert s.earliest_cooldown_end(60.0) is None  # a2 is back


def test_earliest_cooldown_end_ignores_blocked_workers_accounts() -> None:
    s = make(0, workers={"w1": "a1", "w2": "a2"})
    s.set_cooldown("a1", 100.0)
    s.block_worker("w2", "login required")
    assert s.earliest_cooldown_end(0.0) == 100.0
    s.block_worker("w1", "login required")
    assert s.earliest_cooldown_end(0.0) is None  # no usable account at all


def test_all_workers_blocked() -> None:
    s = make(0, workers={})
    assert not s.all_workers_blocked()  # no workers is not "blocked by a person"
    s.add_worker("w1", "a1")
    s.add_worker("w2", "a1")
    s.block_worker("w1", "login required")
    assert not s.all_workers_blocked()
    s.block_worker("w2", "login required")
    assert s.all_workers_blocked()
    s.block_worker("w2", None)
    assert not s.all_workers_blocked()


# --- is_finished ----------------------------------------------------------------------------


def test_is_finished_false_with_queued_work() -> None:
    s = make(2)
    assert not s.is_finished()


def test_is_finished_false_while_a_task_is_leased() -> None:
    s = make(1)
    lease_of(s, "w1", 0.0)
    assert not s.is_finished()


def test_is_finished_false_while_a_result_is_being_written() -> None:
    s = make(1)
    lease = lease_of(s, "w1", 0.0)
    s.offer_result(1, lease.attempt)
    assert not s.is_finished()
    s.confirm_done(1, lease.attempt)
    assert s.is_finished()


def test_is_finished_when_every_task_is_terminal() -> None:
    s = make(4, policy=SchedulerPolicy(max_failures=1, worker_capacity=4))
    leases = [lease_of(s, "w1", 0.0) for _ in range(3)]
    finish(s, leases[0])
    s.report_failure(leases[1].task_id, leases[1].attempt, ErrorKind.TIMEOUT, 0.0)  # dead
    s.report_failure(leases[2].task_id, leases[2].attempt, ErrorKind.REFUSED, 0.0)
    assert not s.is_finished()  # task 4 still queued
    s.cancel()
    assert all(slot.state.is_terminal for slot in s.tasks.values())
    assert s.is_finished()


def test_empty_scheduler_is_finished() -> None:
    s = make(0)
    assert s.is_finished()
