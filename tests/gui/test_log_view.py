"""The log: history then live events, bounded, filtered, copied and exported; the selected
job's failures grouped with counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.log_view import LogEntry, LogView
from novelgen_desktop.gui.qt import QtCore, QtGui
from novelgen_desktop.sim.worker import SimBehaviour
from novelgen_desktop.store.records import EventLogged


def _job(session: DesktopSession, run: Any, tmp_path: Path, name: str, count: int) -> str:
    prompts = tmp_path / f"{name}.txt"
    prompts.write_text("".join(f"{name} panel {i}\n" for i in range(count)), encoding="utf-8")
    job_id: str = run(session.create_job(name, session.preview_files([prompts])))
    return job_id


def _event(n: int, **changes: Any) -> EventLogged:
    fields: dict[str, Any] = {
        "ts": 1_700_000_000.0 + n,
        "level": "info",
        "kind": "attempt_done",
        "message": f"event {n}",
        "job_id": "job-x",
        "worker_id": f"w{n % 3}",
        "task_id": n,
    }
    fields.update(changes)
    return EventLogged(**fields)


def _loaded(qtbot: Any, view: LogView) -> None:
    qtbot.waitUntil(lambda: not view._loading, timeout=10000)


def test_history_then_live_events_without_duplicates(
    qtbot: Any, session: DesktopSession, run: Any, tmp_path: Path
) -> None:
    first = _job(session, run, tmp_path, "before", 3)  # in the store before the view opens
    bridge = EngineBridge(session)
    view = LogView(bridge)
    qtbot.addWidget(view)
    bridge.start_ticking(50)
    _loaded(qtbot, view)
    qtbot.waitUntil(
        lambda: any(e.kind == "job_submitted" and e.job_id == first for e in view.model.entries()),
        timeout=10000,
    )

    session.start_simulated_workers(2, SimBehaviour(latency_median=0.02))
    second = _job(session, run, tmp_path, "live", 6)
    qtbot.waitUntil(
        lambda: (
            any(e.kind == "job_finished" and e.job_id == second for e in view.model.entries())
            or (
                any(e.kind == "job_submitted" and e.job_id == second for e in view.model.entries())
                and {"sim-1", "sim-2"} <= set(view.combo_values("worker"))
            )
        ),
        timeout=15000,
    )
    submitted = [e for e in view.model.entries() if e.kind == "job_submitted"]
    assert [e.job_id for e in submitted] == [first, second]  # each once, in order
    assert "worker_connected" in view.combo_values("kind")
    assert "info" in view.combo_values("level")
    times = [e.ts for e in view.model.entries()]
    assert times == sorted(times)
    bridge.stop()


def test_filters_and_bounded_history(qtbot: Any, session: DesktopSession, run: Any) -> None:
    bridge = EngineBridge(session)
    view = LogView(bridge, capacity=100)
    qtbot.addWidget(view)
    _loaded(qtbot, view)
    base = view.model.rowCount()  # the store may hold nothing yet: a fresh data dir
    assert base == 0

    for n in range(250):
        level = "error" if n % 10 == 0 else "info"
        kind = "attempt_failed" if level == "error" else "attempt_done"
        bridge.event_logged.emit(_event(n, level=level, kind=kind))
    view.flush()
    assert view.model.rowCount() == 100  # the oldest 150 were dropped
    assert view.model.entry(0).message == "event 150"
    assert view.model.entry(99).message == "event 249"
    assert view.combo_values("level") == ["error", "info"]
    assert view.combo_values("kind") == ["attempt_done", "attempt_failed"]
    assert view.combo_values("worker") == ["w0", "w1", "w2"]

    view.set_filters(level="error")
    assert view.proxy.rowCount() == 10
    assert all(e.level == "error" for e in view.visible_entries())
    assert view.count_label.text() == "10 of 100 events"

    view.set_filters(kind="attempt_done", worker="w1")
    assert {(e.kind, e.worker_id) for e in view.visible_entries()} == {("attempt_done", "w1")}

    view.set_filters(text="EVENT 24")  # any case, anywhere in the row
    assert [e.message for e in view.visible_entries()] == [f"event {n}" for n in range(240, 250)]

    # Live events obey the filters in force.
    bridge.event_logged.emit(_event(300, message="event 24 again"))
    bridge.event_logged.emit(_event(301, message="unrelated"))
    view.flush()
    assert view.visible_entries()[-1].message == "event 24 again"

    # The combos drive the same filters.
    view.set_filters()
    view.level_combo.setCurrentIndex(view.level_combo.findData("error"))
    assert view.proxy.rowCount() == len([e for e in view.model.entries() if e.level == "error"])
    view.level_combo.setCurrentIndex(0)
    assert view.proxy.rowCount() == view.model.rowCount() == 100
    bridge.stop()


def test_copy_rows_and_export_round_trips(
    qtbot: Any, session: DesktopSession, tmp_path: Path
) -> None:
    bridge = EngineBridge(session)
    view = LogView(bridge)
    qtbot.addWidget(view)
    _loaded(qtbot, view)
    tricky = 'a "quoted", comma\nnew line and tab\t; ünïcode 画'
    events = [
        _event(1),
        _event(2, level="warning", kind="rate_limited", message=tricky, data={"reset": 30.5}),
        _event(3, job_id=None, worker_id=None, task_id=None, data={"nested": {"k": [1, 2]}}),
    ]
    for event in events:
        bridge.event_logged.emit(event)
    view.flush()
    expected = [LogEntry.from_event(e) for e in events]
    assert view.model.entries() == expected

    # JSON: every field back as it was.
    assert view.export(tmp_path / "log.json") == 3
    loaded = json.loads((tmp_path / "log.json").read_text(encoding="utf-8"))
    assert [LogEntry.from_row(r) for r in loaded] == expected
    assert loaded[0]["time"].startswith("2023-11-1")

    # CSV: the same, with data as JSON text and the exact timestamp.
    assert view.export(tmp_path / "log.CSV") == 3
    with (tmp_path / "log.CSV").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    back = [
        LogEntry(
            ts=float(r["ts"]),
            level=r["level"],
            kind=r["kind"],
            message=r["message"],
            job_id=r["job_id"] or None,
            worker_id=r["worker_id"] or None,
            task_id=int(r["task_id"]) if r["task_id"] else None,
            data=json.loads(r["data"]) if r["data"] else None,
        )
        for r in rows
    ]
    assert back == expected

    # Only what the filters show, unless asked for everything.
    view.set_filters(level="warning")
    assert view.export(tmp_path / "warnings.json") == 1
    assert view.export(tmp_path / "all.json", visible_only=False) == 3
    with pytest.raises(ConfigError):
        view.export(tmp_path / "log.txt")

    # Copy: the selected rows, tab-separated, one line each, whitespace flattened.
    view.set_filters()
    flags = (
        QtCore.QItemSelectionModel.SelectionFlag.Select
        | QtCore.QItemSelectionModel.SelectionFlag.Rows
    )
    view.table.selectionModel().select(view.proxy.index(1, 0), flags)
    view.table.selectionModel().select(view.proxy.index(2, 0), flags)
    text = view.copy_selection()
    lines = text.split("\n")
    assert len(lines) == 2
    assert lines[0].split("\t")[1:] == [
        "warning",
        "rate_limited",
        "job-x",
        "w2",
        "2",
        'a "quoted", comma new line and tab ; ünïcode 画',
    ]
    assert lines[1].split("\t")[3:6] == ["", "", ""]
    assert QtGui.QGuiApplication.clipboard().text() == text
    # Ctrl+C on the table does the same.
    QtGui.QGuiApplication.clipboard().clear()
    view.copy_action.trigger()
    assert QtGui.QGuiApplication.clipboard().text() == text
    bridge.stop()


@pytest.mark.parametrize(
    ("behaviour", "kinds"),
    [
        (SimBehaviour(latency_median=0.02, refusal_rate=1.0), {"refused"}),
        (
            SimBehaviour(latency_median=0.02, failure_rate=1.0, seed=3),
            {"page_error", "network", "timeout"},
        ),
    ],
    ids=["refusals", "failures"],
)
def test_grouped_errors_of_the_selected_job(
    qtbot: Any,
    session: DesktopSession,
    run: Any,
    tmp_path: Path,
    behaviour: SimBehaviour,
    kinds: set[str],
) -> None:
    bridge = EngineBridge(session)
    view = LogView(bridge)
    qtbot.addWidget(view)
    bridge.start_ticking(50)
    _loaded(qtbot, view)
    assert view.errors_label.text() == "Grouped errors: no job selected"

    session.start_simulated_workers(2, behaviour)
    job_id = _job(session, run, tmp_path, "failing", 4)
    bridge.select_job(job_id)

    def settled() -> bool:
        live = run(session.service.view(job_id, workers=False))
        if kinds == {"refused"} and live.done + live.failed_terminal < live.total:
            return False  # refused prompts are final: wait for the job to end
        # Failed ones are retried after a 5 s backoff: the first round is a quiet moment.
        return live.failures_seen >= 4 and view.errors_count == live.failures_seen

    qtbot.waitUntil(settled, timeout=30000)
    groups = view.error_groups
    assert groups and {g.kind for g in groups} <= kinds
    assert sum(g.count for g in groups) == view.errors_count
    tree = view.errors_tree
    shown = sorted(
        (tree.topLevelItem(i).text(1), int(tree.topLevelItem(i).text(0)))
        for i in range(tree.topLevelItemCount())
    )
    assert shown == sorted((g.kind, g.count) for g in groups)
    assert f"{view.errors_count} failed attempt(s)" in view.errors_label.text()
    if kinds != {"refused"}:
        bridge.stop()
        run(bridge.settle())
        return

    assert groups[0].count == 4  # one refusal per task: a refused prompt is not retried
    assert sorted(groups[0].task_ids) == sorted(
        r.task_id for r in run(session.service.task_rows(job_id))
    )
    # Nothing changes any more: the next ticks do not read the store again.
    reads: list[str] = []
    original = session.service.error_report

    async def counting(job: str, limit: int = 100) -> Any:
        reads.append(job)
        return await original(job, limit)

    session.service.error_report = counting  # type: ignore[method-assign]
    ticks = 0

    def count_tick() -> None:
        nonlocal ticks
        ticks += 1

    bridge.tick.connect(count_tick)
    qtbot.waitUntil(lambda: ticks >= 4, timeout=5000)
    assert reads == []
    # Selection cleared and no job running: nothing to show.
    bridge.select_job(None)
    qtbot.waitUntil(lambda: session.service.active_job is None, timeout=10000)
    view.refresh_errors(force=True)
    assert view.errors_label.text() == "Grouped errors: no job selected"
    assert view.errors_tree.topLevelItemCount() == 0
    bridge.stop()
    run(bridge.settle())
