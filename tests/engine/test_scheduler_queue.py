"""The author's queue actions on the I/O-free scheduler: move, priority, retry, hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novelgen_desktop.engine.model import ErrorKind, TaskState
from novelgen_desktop.engine.scheduler import QueueMove, Scheduler, SchedulerPolicy, TaskSlot


def scheduler_with(count: int, **states: TaskState) -> Scheduler:
    scheduler = Scheduler(SchedulerPolicy(max_failures=1))
    scheduler.load(
        TaskSlot(id=i, seq=i, state=states.get(f"t{i}", TaskState.QUEUED))
        for i in range(1, count + 1)
    )
    scheduler.add_worker("w", "a")
    return scheduler


def dispatch_order(scheduler: Scheduler) -> list[int]:
    """The order tasks are really leased in (not just what queue_order claims)."""
    order = []
    while (lease := scheduler.next_assignment("w", 0.0)) is not None:
        order.append(lease.task_id)
        scheduler.offer_result(lease.task_id, lease.attempt)
        scheduler.confirm_done(lease.task_id, lease.attempt)
    return order


def test_move_to_top_and_bottom_keep_the_order_among_the_moved() -> None:
    scheduler = scheduler_with(6)
    scheduler.move([5, 3], QueueMove.TOP)
    assert scheduler.queue_order() == [3, 5, 1, 2, 4, 6]
    scheduler.move([1, 2], QueueMove.BOTTOM)
    assert scheduler.queue_order() == [3, 5, 4, 6, 1, 2]
    assert dispatch_order(scheduler) == [3, 5, 4, 6, 1, 2]


def test_move_up_and_down_swap_with_the_neighbour_and_stop_at_the_ends() -> None:
    scheduler = scheduler_with(5)
    scheduler.move([3], QueueMove.UP)
    assert scheduler.queue_order() == [1, 3, 2, 4, 5]
    scheduler.move([3], QueueMove.UP)
    scheduler.move([3], QueueMove.UP)  # already first: nothing changes
    assert scheduler.queue_order() == [3, 1, 2, 4, 5]
    scheduler.move([1, 2], QueueMove.DOWN)  # a block moves together
    assert scheduler.queue_order() == [3, 4, 1, 2, 5]
    assert scheduler.move([5], QueueMove.DOWN) == []
    assert dispatch_order(scheduler) == [3, 4, 1, 2, 5]


def test_top_beats_a_higher_priority_and_running_or_done_tasks_are_left_alone() -> None:
    scheduler = Scheduler()
    scheduler.load(
        [
            TaskSlot(id=1, seq=1, priority=5),
            TaskSlot(id=2, seq=2),
            TaskSlot(id=3, seq=3, state=TaskState.DONE),
        ]
    )
    places = scheduler.move([2, 3], QueueMove.TOP)
    assert [p.task_id for p in places] == [2]
    assert scheduler.queue_order() == [2, 1]
    assert scheduler.tasks[3].state is TaskState.DONE


def test_raise_priority_moves_a_queued_task_ahead() -> None:
    scheduler = scheduler_with(3)
    scheduler.change_priority([3], +1)
    assert scheduler.queue_order() == [3, 1, 2]
    scheduler.change_priority([3], -2)
    assert scheduler.queue_order() == [1, 2, 3]


def test_retry_requeues_dead_refused_and_cancelled_with_a_clean_count() -> None:
    scheduler = scheduler_with(4, t1=TaskState.DEAD, t2=TaskState.REFUSED, t3=TaskState.DONE)
    scheduler.tasks[1].failures = 5
    assert scheduler.retry([1, 2, 3, 4, 99]) == [1, 2]
    assert scheduler.tasks[1].failures == 0
    assert scheduler.tasks[3].state is TaskState.DONE
    assert set(dispatch_order(scheduler)) == {1, 2, 4}


def test_a_held_worker_gets_nothing_even_after_it_reconnects() -> None:
    scheduler = scheduler_with(2)
    scheduler.hold_worker("w", True)
    assert scheduler.next_assignment("w", 0.0) is None
    scheduler.remove_worker("w", 0.0)
    scheduler.add_worker("w", "a")  # a reconnect makes a new slot
    assert scheduler.next_assignment("w", 0.0) is None
    assert scheduler.all_workers_blocked()
    scheduler.hold_worker("w", False)
    assert scheduler.next_assignment("w", 0.0) is not None


def test_a_moved_task_in_backoff_keeps_its_new_place_once_due() -> None:
    scheduler = Scheduler(SchedulerPolicy(backoff_base=10.0, max_failures=5))
    scheduler.load([TaskSlot(id=i, seq=i) for i in (1, 2, 3)])
    scheduler.add_worker("w", "a")
    lease = scheduler.next_assignment("w", 0.0)
    assert lease is not None and lease.task_id == 1
    scheduler.report_failure(1, lease.attempt, ErrorKind.PAGE_ERROR, 0.0)
    scheduler.move([1], QueueMove.BOTTOM)
    order = []
    now = 1000.0  # every backoff is over
    while (lease := scheduler.next_assignment("w", now)) is not None:
        order.append(lease.task_id)
        scheduler.offer_result(lease.task_id, lease.attempt)
        scheduler.confirm_done(lease.task_id, lease.attempt)
    assert order == [2, 3, 1]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(QueueMove)),
            st.lists(st.integers(1, 12), min_size=1, max_size=4),
        ),
        max_size=25,
    )
)
def test_any_sequence_of_moves_keeps_every_task_exactly_once(
    moves: list[tuple[QueueMove, list[int]]],
) -> None:
    scheduler = scheduler_with(12)
    for where, ids in moves:
        before = scheduler.queue_order()
        scheduler.move(ids, where)
        after = scheduler.queue_order()
        assert sorted(after) == sorted(before)
        chosen = [t for t in before if t in ids]
        assert [t for t in after if t in ids] == chosen  # the moved keep their own order
        if where is QueueMove.TOP:
            assert after[: len(chosen)] == chosen
        elif where is QueueMove.BOTTOM:
            assert after[len(after) - len(chosen) :] == chosen
    claimed = scheduler.queue_order()
    assert dispatch_order(scheduler) == claimed  # the heap agrees with what the table shows


@pytest.mark.parametrize("where", list(QueueMove))
def test_moving_nothing_queued_changes_nothing(where: QueueMove) -> None:
    scheduler = scheduler_with(3, t2=TaskState.DONE)
    assert scheduler.move([2, 42], where) == []
    assert scheduler.queue_order() == [1, 3]
