"""The task table's model on 10,000 synthetic rows: filters, search, sorting by every column,
and updates that touch only the rows that changed."""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

import pytest

from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.service import TaskRow
from novelgen_desktop.gui.qt import Qt, QtCore
from novelgen_desktop.gui.task_model import (
    ROW_ROLE,
    TaskColumn,
    TaskFilterProxy,
    TaskTableModel,
)

N = 10_000
CHAPTERS = [None, "1", "2", "10", "Prologue", "epilogue"]
ERRORS = [None, None, "Content policy refused the prompt", "tab crashed", "Timeout after 300 s"]
CASTS: list[tuple[str, ...]] = [(), (), ("Maren",), ("Old Tobias", "Maren"), ("Isak",)]
VERSIONS = [None, "3+52b8ed790461", "10+0aa1", "2+ffee"]


def make_row(task_id: int, rng: random.Random) -> TaskRow:
    state = rng.choice(list(TaskState))
    return TaskRow(
        task_id=task_id,
        seq=task_id,
        chapter=rng.choice(CHAPTERS),
        page=rng.choice([None, *range(1, 31)]),
        panel=rng.choice([None, *range(1, 9)]),
        variant=rng.choice([1, 1, 1, 2]),
        prompt=f"{rng.choice(['A fox', 'a whale', 'The LIGHTHOUSE', 'maren'])} number {task_id}",
        state=state,
        attempts=rng.randint(0, 5),
        failures=rng.randint(0, 2),
        worker_id=rng.choice([None, *(f"sim-{n}" for n in range(1, 10))]),
        duration=rng.choice([None, round(rng.uniform(0.5, 90.0), 1)]),
        error_kind=None,
        error=rng.choice(ERRORS),
        priority=rng.randint(-2, 2),
        queue_position=None,  # numbered below, in a shuffled order
        planned_path=f"out/{task_id:05d}.png",
        output_path=None,
        source=f"script.txt:{task_id}",
        finished_at=None,
        characters=rng.choice(CASTS),
        style_version=rng.choice(VERSIONS),
    )


def make_rows(seed: int = 7) -> list[TaskRow]:
    rng = random.Random(seed)
    rows = [make_row(task_id, rng) for task_id in range(1, N + 1)]
    queued = [i for i, r in enumerate(rows) if r.state in (TaskState.QUEUED, TaskState.LEASED)]
    rng.shuffle(queued)
    for position, i in enumerate(queued, start=1):
        rows[i] = dataclasses.replace(rows[i], queue_position=position)
    return rows


def natural(text: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text.lower())]


# The reference order, written independently of the model: empty values last in both
# directions, ties in script (seq) order.
REFERENCE_KEYS: dict[TaskColumn, Any] = {
    TaskColumn.ID: lambda r: r.task_id,
    TaskColumn.QUEUE: lambda r: r.queue_position,
    TaskColumn.WHERE: lambda r: (
        natural(r.chapter) if r.chapter is not None else [],
        r.page or 0,
        r.panel or 0,
        r.variant,
    ),
    TaskColumn.PROMPT: lambda r: r.prompt.lower(),
    TaskColumn.CHARACTERS: lambda r: natural(", ".join(r.characters)) if r.characters else None,
    TaskColumn.STATE: lambda r: list(TaskState).index(r.state),
    TaskColumn.PRIORITY: lambda r: r.priority,
    TaskColumn.ATTEMPTS: lambda r: r.attempts,
    TaskColumn.WORKER: lambda r: natural(r.worker_id) if r.worker_id else None,
    TaskColumn.DURATION: lambda r: r.duration,
    TaskColumn.STYLE: lambda r: natural(r.style_version) if r.style_version else None,
    TaskColumn.ERROR: lambda r: r.error.lower() if r.error else None,
}


def reference_order(rows: list[TaskRow], column: TaskColumn, descending: bool) -> list[int]:
    key = REFERENCE_KEYS[column]
    with_value = [r for r in rows if key(r) is not None]
    empty = sorted((r for r in rows if key(r) is None), key=lambda r: r.seq)
    groups: dict[Any, list[TaskRow]] = {}
    for row in with_value:
        groups.setdefault(repr(key(row)), []).append(row)
    ordered_keys = sorted({repr(key(r)): key(r) for r in with_value}.items(), key=lambda kv: kv[1])
    if descending:
        ordered_keys.reverse()
    ids: list[int] = []
    for text, _value in ordered_keys:
        ids.extend(r.task_id for r in sorted(groups[text], key=lambda r: r.seq))
    return ids + [r.task_id for r in empty]


@pytest.fixture
def model_and_proxy(qapp: Any) -> tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]]:
    rows = make_rows()
    model = TaskTableModel()
    proxy = TaskFilterProxy()
    proxy.setSourceModel(model)
    model.set_rows(rows)
    return model, proxy, rows


def visible_ids(proxy: TaskFilterProxy) -> list[int]:
    return [row.task_id for row in proxy.visible_rows()]


def test_filter_by_state_gives_exactly_those_rows(
    model_and_proxy: tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]],
) -> None:
    _model, proxy, rows = model_and_proxy
    assert proxy.rowCount() == N
    wanted = {TaskState.DEAD, TaskState.REFUSED}
    proxy.set_states(wanted)
    assert set(visible_ids(proxy)) == {r.task_id for r in rows if r.state in wanted}
    assert proxy.rowCount() == sum(1 for r in rows if r.state in wanted)
    proxy.set_states(set())
    assert proxy.rowCount() == 0
    proxy.set_states(None)
    assert proxy.rowCount() == N


def test_search_is_case_insensitive_over_prompt_where_error_worker_and_cast(
    model_and_proxy: tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]],
) -> None:
    _model, proxy, rows = model_and_proxy
    proxy.set_search("lighthouse")
    assert set(visible_ids(proxy)) == {r.task_id for r in rows if "LIGHTHOUSE" in r.prompt}
    proxy.set_search("CONTENT POLICY")
    assert set(visible_ids(proxy)) == {
        r.task_id for r in rows if r.error and "content policy" in r.error.lower()
    }
    proxy.set_search("sim-4")
    assert set(visible_ids(proxy)) == {r.task_id for r in rows if r.worker_id == "sim-4"}
    proxy.set_search("old TOBIAS")  # the cast, as the Characters column shows it
    assert set(visible_ids(proxy)) == {r.task_id for r in rows if "Old Tobias" in r.characters}
    proxy.set_search("CH 10 · p 3 · panel")
    assert set(visible_ids(proxy)) == {
        r.task_id for r in rows if r.chapter == "10" and r.page == 3 and r.panel is not None
    }
    # search and state filter together
    proxy.set_states({TaskState.DONE})
    assert set(visible_ids(proxy)) == {
        r.task_id
        for r in rows
        if r.chapter == "10" and r.page == 3 and r.panel is not None and r.state is TaskState.DONE
    }


@pytest.mark.parametrize("column", list(TaskColumn), ids=lambda c: c.name)
def test_sort_by_every_column_matches_a_python_sort(
    model_and_proxy: tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]], column: TaskColumn
) -> None:
    _model, proxy, rows = model_and_proxy
    proxy.sort(column, Qt.SortOrder.AscendingOrder)
    assert visible_ids(proxy) == reference_order(rows, column, descending=False)
    proxy.sort(column, Qt.SortOrder.DescendingOrder)
    assert visible_ids(proxy) == reference_order(rows, column, descending=True)
    # a filter on top of a sort keeps the sorted order
    proxy.set_states({TaskState.QUEUED})
    queued = [r for r in rows if r.state is TaskState.QUEUED]
    assert visible_ids(proxy) == reference_order(queued, column, descending=True)


def test_where_sorts_naturally_and_queue_position_puts_none_last(qapp: Any) -> None:
    rng = random.Random(1)
    base = make_row(1, rng)

    def row(task_id: int, chapter: str | None, page: int | None, pos: int | None) -> TaskRow:
        return dataclasses.replace(
            base, task_id=task_id, seq=task_id, chapter=chapter, page=page, panel=1,
            variant=1, queue_position=pos,
        )  # fmt: skip

    rows = [row(1, "10", 1, None), row(2, "2", 10, 2), row(3, "2", 9, 1), row(4, None, 1, None)]
    model = TaskTableModel()
    proxy = TaskFilterProxy()
    proxy.setSourceModel(model)
    model.set_rows(rows)
    proxy.sort(TaskColumn.WHERE)
    assert visible_ids(proxy) == [4, 3, 2, 1]  # no chapter, ch 2 p 9, ch 2 p 10, ch 10
    proxy.sort(TaskColumn.QUEUE, Qt.SortOrder.AscendingOrder)
    assert visible_ids(proxy) == [3, 2, 1, 4]
    proxy.sort(TaskColumn.QUEUE, Qt.SortOrder.DescendingOrder)
    assert visible_ids(proxy) == [2, 3, 1, 4]  # not queued stays last


class SignalLog:
    def __init__(self, model: TaskTableModel) -> None:
        self.changed: list[tuple[int, int]] = []
        self.structural: list[str] = []
        model.dataChanged.connect(lambda a, b, _roles=(): self.changed.append((a.row(), b.row())))
        model.modelReset.connect(lambda: self.structural.append("reset"))
        model.rowsInserted.connect(lambda *_: self.structural.append("inserted"))
        model.rowsRemoved.connect(lambda *_: self.structural.append("removed"))
        model.layoutChanged.connect(lambda *_: self.structural.append("layout"))


def test_ten_changed_rows_emit_data_changed_for_those_rows_only(
    model_and_proxy: tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]],
) -> None:
    model, _proxy, rows = model_and_proxy
    log = SignalLog(model)
    model.set_rows(list(rows))  # the same rows again: nothing to say
    assert log.changed == [] and log.structural == []

    changed_ids = [17, 500, 1234, 2000, 3333, 4096, 5000, 6502, 8191, 9999]
    fresh = [
        dataclasses.replace(r, attempts=r.attempts + 1, worker_id="sim-9")
        if r.task_id in changed_ids
        else r
        for r in rows
    ]
    model.set_rows(fresh)
    assert log.structural == []
    assert len(log.changed) == 10
    assert all(first == last for first, last in log.changed)
    assert sorted(model.row_at(first).task_id for first, _ in log.changed) == changed_ids
    for first, _ in log.changed:
        index = model.index(first, TaskColumn.WORKER)
        assert model.data(index) == "sim-9"


def test_queue_moves_keep_data_and_selection_with_their_tasks(
    model_and_proxy: tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]],
) -> None:
    model, proxy, rows = model_and_proxy
    proxy.set_states({TaskState.QUEUED, TaskState.LEASED})
    proxy.sort(TaskColumn.QUEUE)
    selection = QtCore.QItemSelectionModel(proxy)
    last = proxy.row_at(proxy.rowCount() - 1)
    flags = (
        QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect
        | QtCore.QItemSelectionModel.SelectionFlag.Rows
    )
    selection.select(proxy.index(proxy.rowCount() - 1, 0), flags)
    log = SignalLog(model)

    # "move to top": the last queued task becomes 1, everything before it moves down one
    def moved(r: TaskRow) -> TaskRow:
        if r.task_id == last.task_id:
            return dataclasses.replace(r, queue_position=1)
        if r.queue_position is not None:
            return dataclasses.replace(r, queue_position=r.queue_position + 1)
        return r

    fresh = [moved(r) for r in rows]
    model.set_rows(fresh)
    assert "reset" not in log.structural
    by_id = {r.task_id: r for r in fresh}
    shown = proxy.visible_rows()
    assert shown[0].task_id == last.task_id
    assert [r.queue_position for r in shown] == list(range(1, len(shown) + 1))
    for proxy_row in (0, 1, len(shown) // 2, len(shown) - 1):
        task = proxy.data(proxy.index(proxy_row, 0), ROW_ROLE)
        prompt = proxy.data(proxy.index(proxy_row, TaskColumn.PROMPT), Qt.ItemDataRole.ToolTipRole)
        assert prompt == by_id[task.task_id].prompt
        assert proxy.data(proxy.index(proxy_row, TaskColumn.QUEUE)) == str(
            by_id[task.task_id].queue_position
        )
    selected = [proxy.row_at(i.row()).task_id for i in selection.selectedRows()]
    assert selected == [last.task_id]


def test_tasks_coming_and_going_insert_and_remove_rows_without_a_reset(
    model_and_proxy: tuple[TaskTableModel, TaskFilterProxy, list[TaskRow]],
) -> None:
    model, proxy, rows = model_and_proxy
    log = SignalLog(model)
    kept = [r for r in rows if r.task_id % 10 != 0]
    extra = [dataclasses.replace(rows[0], task_id=N + i, seq=N + i) for i in range(1, 4)]
    model.set_rows(kept + extra)
    assert "reset" not in log.structural
    assert "removed" in log.structural and "inserted" in log.structural
    assert model.rowCount() == len(kept) + 3
    assert {model.row_at(i).task_id for i in range(model.rowCount())} == {
        r.task_id for r in kept + extra
    }
    assert proxy.rowCount() == model.rowCount()

    other_job = [dataclasses.replace(r, task_id=r.task_id + 100_000) for r in rows[:50]]
    model.set_rows(other_job)
    assert log.structural[-1] == "reset"
    assert model.rowCount() == 50


def test_display_text_and_tooltips(qapp: Any) -> None:
    row = dataclasses.replace(
        make_row(1, random.Random(2)),
        chapter="2", page=3, panel=4, variant=1, prompt="x" * 300, duration=75.0,
        error="refused by policy", error_kind="refused", state=TaskState.REFUSED,
    )  # fmt: skip
    model = TaskTableModel()
    model.set_rows([row])
    assert model.data(model.index(0, TaskColumn.WHERE)) == "ch 2 · p 3 · panel 4"
    excerpt = model.data(model.index(0, TaskColumn.PROMPT))
    assert len(excerpt) < 300 and excerpt.endswith("…")
    assert model.data(model.index(0, TaskColumn.PROMPT), Qt.ItemDataRole.ToolTipRole) == "x" * 300
    assert model.data(model.index(0, TaskColumn.DURATION)) == "1 min 15 s"
    assert model.data(model.index(0, TaskColumn.STATE)) == "refused"
    icon = model.data(model.index(0, TaskColumn.STATE), Qt.ItemDataRole.DecorationRole)
    assert not icon.isNull()
