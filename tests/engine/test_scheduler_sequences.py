"""Chat sequences in the scheduler: a page or chapter stays on one worker, in order, and the
lease says when a fresh chat starts (the job's chat strategy, ``ChatStrategy``)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from novelgen_desktop.engine.model import ChatStrategy, ErrorKind, TaskState
from novelgen_desktop.engine.scheduler import Lease, Scheduler, SchedulerPolicy, TaskSlot


def make(
    sequences: list[str | None], *, workers: int = 2, turns: int = 12, accounts: int | None = None
) -> Scheduler:
    policy = SchedulerPolicy(max_chat_turns=turns, max_failures=1000)  # retries never end a task
    scheduler = Scheduler(policy, rng=random.Random(1))
    scheduler.load(
        TaskSlot(id=i, seq=i, sequence=sequence) for i, sequence in enumerate(sequences, 1)
    )
    for n in range(1, workers + 1):
        scheduler.add_worker(f"w{n}", f"acc{n if accounts is None else (n - 1) % accounts + 1}")
    return scheduler


def finish(scheduler: Scheduler, lease: Lease) -> None:
    assert scheduler.offer_result(lease.task_id, lease.attempt).verdict.value == "accept"
    scheduler.confirm_done(lease.task_id, lease.attempt)


def lease(scheduler: Scheduler, worker: str, now: float = 0.0) -> Lease:
    got = scheduler.next_assignment(worker, now)
    assert got is not None, f"{worker} got nothing"
    return got


def test_sequence_of_each_strategy() -> None:
    assert ChatStrategy.PANEL.sequence_of("1", 3) is None
    assert ChatStrategy.PAGE.sequence_of("1", 3) == "ch:1/p:3"
    assert ChatStrategy.PAGE.sequence_of("1", None) is None  # no page: a chat of its own
    assert ChatStrategy.CHAPTER.sequence_of("2", 7) == "ch:2"
    assert ChatStrategy.CHAPTER.sequence_of(None, 7) == "ch:"  # the whole job is one chapter
    assert ChatStrategy.PAGE.sequence_of("1", 3) != ChatStrategy.PAGE.sequence_of("13", None)


def test_a_sequence_stays_on_the_worker_that_started_it() -> None:
    scheduler = make(["a", "a", "a", "b", "b"])
    first = lease(scheduler, "w1")
    assert (first.task_id, first.sequence, first.new_chat) == (1, "a", True)
    # w2 skips the rest of "a" (owned by w1) and starts "b" in a new chat
    second = lease(scheduler, "w2")
    assert (second.task_id, second.sequence, second.new_chat) == (4, "b", True)
    finish(scheduler, first)
    third = lease(scheduler, "w1")
    assert (third.task_id, third.new_chat) == (2, False)  # the conversation goes on
    finish(scheduler, second)
    fourth = lease(scheduler, "w2")
    assert (fourth.task_id, fourth.new_chat) == (5, False)
    finish(scheduler, fourth)
    assert scheduler.next_assignment("w2", 0.0) is None  # "a" is w1's: w2 waits
    finish(scheduler, third)
    assert lease(scheduler, "w1").task_id == 3


def test_tasks_without_a_sequence_go_to_anyone_and_do_not_break_a_sequence() -> None:
    scheduler = make(["a", None, "a", None], workers=2)
    first = lease(scheduler, "w1")
    other = lease(scheduler, "w2")
    assert (first.task_id, other.task_id) == (1, 2)
    assert other.sequence is None and other.new_chat is False
    finish(scheduler, other)
    assert lease(scheduler, "w2").task_id == 4  # "a"'s next panel stays for w1
    finish(scheduler, first)
    nxt = lease(scheduler, "w1")
    assert (nxt.task_id, nxt.new_chat) == (3, False)


def test_a_fresh_chat_every_max_chat_turns() -> None:
    scheduler = make(["a"] * 7, workers=1, turns=3)
    flags = []
    for _ in range(7):
        got = lease(scheduler, "w1")
        flags.append(got.new_chat)
        finish(scheduler, got)
    assert flags == [True, False, False, True, False, False, True]


def test_a_retry_goes_back_to_the_owner_in_the_same_conversation() -> None:
    scheduler = make(["a", "a", "b"])
    first = lease(scheduler, "w1")
    decision = scheduler.report_failure(first.task_id, first.attempt, ErrorKind.PAGE_ERROR, 0.0)
    assert decision is not None and decision.state is TaskState.QUEUED
    later = decision.not_before + 0.01
    other = lease(scheduler, "w2", later)
    assert other.sequence == "b"
    again = lease(scheduler, "w1", later)
    assert (again.task_id, again.attempt, again.new_chat) == (1, 2, False)


def test_a_worker_that_goes_away_hands_its_sequence_over() -> None:
    scheduler = make(["a", "a", "a"])
    first = lease(scheduler, "w1")
    assert scheduler.next_assignment("w2", 0.0) is None
    scheduler.remove_worker("w1", 1.0)  # its lease goes back to the queue
    taken = lease(scheduler, "w2", 100.0)
    assert taken.sequence == "a" and taken.new_chat is True
    assert scheduler.sequence_owner["a"] == "w2"
    assert first.task_id in (1, 2, 3)


def test_an_owner_that_cannot_work_loses_its_sequence() -> None:
    for block in ("cooldown", "blocked", "held"):
        scheduler = make(["a", "a", "a"], accounts=2)
        finish(scheduler, lease(scheduler, "w1"))
        if block == "cooldown":
            scheduler.set_cooldown("acc1", 500.0)
        elif block == "blocked":
            scheduler.block_worker("w1", "login required")
        else:
            scheduler.hold_worker("w1", True)
        taken = lease(scheduler, "w2", 1.0)
        assert (taken.task_id, taken.new_chat) == (2, True), block
        assert scheduler.sequence_owner["a"] == "w2", block


def test_a_worker_starting_another_sequence_releases_its_old_one() -> None:
    scheduler = make(["a", "b", "a"], workers=2)
    first = lease(scheduler, "w1")  # a
    second = lease(scheduler, "w2")  # b
    finish(scheduler, second)
    # w2 owns b (done); a's next belongs to w1 while w1 works
    assert scheduler.next_assignment("w2", 0.0) is None
    finish(scheduler, first)
    scheduler.remove_worker("w1", 0.0)
    taken = lease(scheduler, "w2")
    assert taken.task_id == 3 and scheduler.sequence_owner == {"a": "w2"}


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=30),
    workers=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_every_task_done_once_and_a_sequence_never_on_two_workers_at_once(
    plan: list[str | None], workers: int, seed: int
) -> None:
    """Random interleavings of leases, successes and failures: each task ends done exactly
    once, and no two workers ever hold leases of one sequence at the same time."""
    rng = random.Random(seed)
    scheduler = make(plan, workers=workers)
    now = 0.0
    held: dict[str, Lease] = {}
    done: list[int] = []
    for _ in range(2000):
        if len(done) == len(plan):
            break
        now += 1.0
        worker = f"w{rng.randint(1, workers)}"
        if worker in held:
            current = held.pop(worker)
            if rng.random() < 0.2:
                scheduler.report_failure(current.task_id, current.attempt, ErrorKind.TIMEOUT, now)
            else:
                finish(scheduler, current)
                done.append(current.task_id)
        else:
            got = scheduler.next_assignment(worker, now + 400.0)
            if got is not None:
                held[worker] = got
        active = [lease.sequence for lease in held.values() if lease.sequence is not None]
        assert len(active) == len(set(active))
    assert sorted(done) == list(range(1, len(plan) + 1))


def test_a_panel_moved_to_the_top_is_its_owners_next() -> None:
    from novelgen_desktop.engine.scheduler import QueueMove

    scheduler = make(["a", "a", "a", "a", None])
    first = lease(scheduler, "w1")
    scheduler.move([4], QueueMove.TOP)
    assert lease(scheduler, "w2").task_id == 5  # a free tab does not break into "a"
    finish(scheduler, first)
    nxt = lease(scheduler, "w1")
    assert (nxt.task_id, nxt.new_chat) == (4, False)
