"""The workers tab: live rows from simulated tabs over the real protocol, the author's
actions on them, and a model that repaints only the rows that changed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from novelgen_desktop.desktop.session import DesktopSession, WorkerRow, WorkerState
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui
from novelgen_desktop.gui.workers_view import (
    COL_HEARTBEAT,
    COL_STATE,
    WorkersView,
    WorkerTableModel,
    format_ago,
    format_bytes,
    state_text,
)
from novelgen_desktop.sim.worker import SimBehaviour


def _row(worker_id: str, **changes: Any) -> WorkerRow:
    fields: dict[str, Any] = {
        "worker_id": worker_id,
        "account_id": f"acct-{worker_id}",
        "kind": "sim",
        "tab": None,
        "state": WorkerState.IDLE,
        "detail": None,
        "cooling_until": None,
        "current_task": None,
        "done": 0,
        "failed": 0,
        "success_rate": None,
        "mean_latency": None,
        "p95_latency": None,
        "last_heartbeat": 1000.0,
        "memory_bytes": None,
        "held": False,
        "connected": True,
    }
    fields.update(changes)
    return WorkerRow(**fields)


def _cell(view: WorkersView, worker_id: str, column: int) -> str:
    row = view.model.row_of(worker_id)
    assert row is not None, worker_id
    return str(view.model.data(view.model.index(row, column)))


def _connected(view: WorkersView) -> list[str]:
    return [r.worker_id for r in view.model.rows() if r.connected]


def _job(session: DesktopSession, run: Any, tmp_path: Path, count: int) -> str:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"panel {i}\n" for i in range(count)), encoding="utf-8")
    job_id: str = run(session.create_job("workers", session.preview_files([prompts])))
    return job_id


def test_texts_people_read() -> None:
    assert format_ago(3.4) == "3 s ago"
    assert format_ago(125) == "2 min ago"
    assert format_ago(None) == "never"
    assert format_bytes(150 * 2**20) == "150 MB"
    assert format_bytes(None) == "—"
    cooling = _row("w", state=WorkerState.COOLING, cooling_until=0.0)
    assert state_text(cooling).startswith("cooling down until ")
    login = _row("w", state=WorkerState.LOGIN, detail="log in to ChatGPT")
    assert state_text(login) == "login required: log in to ChatGPT"


def test_model_reports_only_changed_rows(qtbot: Any) -> None:
    model = WorkerTableModel()
    changed: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, *_: changed.append((a.row(), b.row())))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))

    rows = [_row("a"), _row("b"), _row("c")]
    model.set_rows(rows, 1003.0)
    assert model.rowCount() == 3
    changed.clear()

    model.set_rows(rows, 1003.5)  # nothing shown changed (still "3 s ago")
    assert changed == [] and model.changed_rows == 0

    rows[1] = _row("b", state=WorkerState.BUSY, current_task=7)
    model.set_rows(rows, 1003.5)
    assert changed == [(1, 1)]
    assert model.data(model.index(1, COL_STATE)) == "busy"

    # A worker goes, another comes, the order changes: a persistent index (a selection)
    # follows its worker.
    keep = QtCore.QPersistentModelIndex(model.index(2, 0))  # "c"
    model.set_rows([_row("c"), _row("d"), _row("a")], 1003.5)
    assert [r.worker_id for r in model.rows()] == ["c", "d", "a"]
    assert keep.isValid() and keep.row() == 0
    assert resets == []

    login = _row("a", state=WorkerState.LOGIN, detail="logged out")
    model.set_rows([_row("c"), _row("d"), login], 1003.5)
    font = model.data(model.index(2, 0), Qt.ItemDataRole.FontRole)
    assert (
        isinstance(font, QtGui.QFont) and font.bold()
    )  # the author must act: the whole row stands out
    assert model.data(model.index(2, 0), Qt.ItemDataRole.BackgroundRole) is not None
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) is None


def test_live_workers_pause_resume_and_close(
    qtbot: Any, session: DesktopSession, run: Any, tmp_path: Path
) -> None:
    bridge = EngineBridge(session)
    view = WorkersView(bridge)
    qtbot.addWidget(view)
    bridge.start_ticking(50)
    failures: list[tuple[str, str]] = []
    bridge.failed.connect(lambda what, message: failures.append((what, message)))

    def done_by(worker_id: str) -> int:
        return next(r.done for r in view.model.rows() if r.worker_id == worker_id)

    session.start_simulated_workers(2, SimBehaviour(latency_median=0.15, latency_sigma=0.0))
    qtbot.waitUntil(lambda: _connected(view) == ["sim-1", "sim-2"], timeout=10000)
    assert _cell(view, "sim-1", COL_STATE) == "idle"
    assert _cell(view, "sim-1", COL_HEARTBEAT).endswith("s ago")

    job_id = _job(session, run, tmp_path, 40)
    qtbot.waitUntil(
        lambda: any(_cell(view, w, COL_STATE) == "busy" for w in ("sim-1", "sim-2")),
        timeout=10000,
    )

    view.select_workers(["sim-1"])
    assert view.pause_action.isEnabled() and not view.resume_action.isEnabled()
    view.pause_action.trigger()
    assert "sim-1" in session.service.held_workers
    assert _cell(view, "sim-1", COL_STATE) == "paused"
    assert view.resume_action.isEnabled()
    # sim-2 goes on alone; sim-1 stays paused while the job runs.
    before = done_by("sim-2")
    qtbot.waitUntil(lambda: done_by("sim-2") > before + 2, timeout=10000)
    assert _cell(view, "sim-1", COL_STATE) == "paused"
    held_done = done_by("sim-1")

    view.resume_action.trigger()
    assert "sim-1" not in session.service.held_workers
    qtbot.waitUntil(lambda: _cell(view, "sim-1", COL_STATE) != "paused", timeout=10000)
    qtbot.waitUntil(lambda: done_by("sim-1") > held_done, timeout=10000)

    # Closing asks first; "no" changes nothing.
    asked: list[list[str]] = []

    def refuse(worker_ids: Sequence[str]) -> bool:
        asked.append(list(worker_ids))
        return False

    view.confirm_close = refuse  # type: ignore[method-assign]
    view.select_workers(["sim-2"])
    view.close_action.trigger()
    assert asked == [["sim-2"]]
    assert _connected(view) == ["sim-1", "sim-2"]

    view.confirm_close = lambda worker_ids: True  # type: ignore[method-assign]
    view.close_action.trigger()
    run(bridge.settle())
    qtbot.waitUntil(lambda: len(_connected(view)) == 1, timeout=10000)
    assert run(session.service.view(job_id)).total == 40
    assert failures == []
    bridge.stop()


def test_open_more_tabs_adds_one_and_stops_at_ten(
    qtbot: Any, session: DesktopSession, run: Any
) -> None:
    bridge = EngineBridge(session)
    view = WorkersView(bridge)
    qtbot.addWidget(view)
    bridge.start_ticking(50)
    failures: list[tuple[str, str]] = []
    bridge.failed.connect(lambda what, message: failures.append((what, message)))

    session.start_simulated_workers(2, SimBehaviour(latency_median=0.05))
    qtbot.waitUntil(lambda: len(_connected(view)) == 2, timeout=10000)
    view.more_action.trigger()
    run(bridge.settle())
    assert session.browser_tab_count() == 3
    qtbot.waitUntil(lambda: len(_connected(view)) == 3, timeout=10000)
    assert failures == []

    run(session.set_browser_tabs(10))  # demo mode: ten simulated tabs
    view.refresh()
    assert not view.more_action.isEnabled()
    view.open_more_tabs()
    assert failures and failures[0][0] == "open more tabs"
    bridge.stop()
