"""The job list against a real session: it shows the engine's jobs, and its actions reach it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.engine.model import JobState
from novelgen_desktop.engine.service import JobView
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.jobs_view import JobColumn, JobsView, format_eta


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the loop run (engine, bridge, widgets) until ``condition`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def make_job(session: DesktopSession, run: Any, folder: Path, name: str, count: int) -> str:
    prompts = folder / f"{name}.txt"
    prompts.write_text("".join(f"{name} panel {i}\n" for i in range(count)), encoding="utf-8")
    job_id: str = run(session.create_job(name, session.preview_files([prompts])))
    return job_id


def engine_state(session: DesktopSession, run: Any, job_id: str) -> JobState:
    views: list[JobView] = run(session.service.list_jobs())
    return next(v.state for v in views if v.job_id == job_id)


def cell(view: JobsView, job_id: str, column: JobColumn) -> str:
    row = view.model.row_of(job_id)
    assert row is not None
    text: str = view.model.data(view.model.index(row, column))
    return text


def test_the_list_shows_jobs_with_state_and_progress(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    first = make_job(session, run, tmp_path, "prologue", 3)
    second = make_job(session, run, tmp_path, "chapter-one", 5)
    view = JobsView(bridge)
    qtbot.addWidget(view)
    run(bridge.settle())
    assert [j.job_id for j in view.model.jobs()] == [second, first]  # newest first
    assert cell(view, first, JobColumn.NAME) == "prologue"
    assert cell(view, first, JobColumn.PROGRESS) == "0 / 3"
    assert cell(view, second, JobColumn.PROGRESS) == "0 / 5"
    # queued, but no tab is connected: it waits rather than runs
    assert cell(view, first, JobColumn.STATE) == "waiting"
    # nothing was selected: the newest job is, so the other views have something to show
    assert bridge.selected_job == second
    assert view.selected_job() is not None and view.selected_job().job_id == second  # type: ignore[union-attr]

    # a job submitted elsewhere (the CLI, another dialog) appears through jobs_changed
    third = make_job(session, run, tmp_path, "chapter-two", 2)
    run(until(lambda: view.model.row_of(third) is not None))
    assert cell(view, third, JobColumn.PROGRESS) == "0 / 2"
    assert bridge.selected_job == second  # the author's choice stays


def test_pause_resume_and_cancel_reach_the_engine(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    older = make_job(session, run, tmp_path, "older", 2)
    job_id = make_job(session, run, tmp_path, "story", 4)
    view = JobsView(bridge)
    qtbot.addWidget(view)
    run(bridge.settle())
    view.select(older)
    assert view.selected_job() is not None and view.selected_job().job_id == older  # type: ignore[union-attr]
    view.select(job_id)
    assert bridge.selected_job == job_id
    assert view.pause_action.isEnabled() and not view.resume_action.isEnabled()

    view.pause_action.trigger()
    run(bridge.settle())
    assert engine_state(session, run, job_id) is JobState.PAUSED
    assert engine_state(session, run, older) is JobState.RUNNING
    assert cell(view, job_id, JobColumn.STATE) == "paused"
    assert view.resume_action.isEnabled() and view.start_action.isEnabled()
    assert not view.pause_action.isEnabled()

    view.start_action.trigger()  # Start is Resume for a paused job
    run(bridge.settle())
    assert engine_state(session, run, job_id) is JobState.RUNNING

    view.pause_action.trigger()
    run(bridge.settle())
    view.resume_action.trigger()
    run(bridge.settle())
    assert engine_state(session, run, job_id) is JobState.RUNNING

    asked: list[str] = []

    def say_no(job: JobView) -> bool:
        asked.append(job.job_id)
        return False

    monkeypatch.setattr(view, "confirm_cancel", say_no)
    view.cancel_action.trigger()
    run(bridge.settle())
    assert asked == [job_id]
    assert engine_state(session, run, job_id) is JobState.RUNNING

    monkeypatch.setattr(view, "confirm_cancel", lambda job: True)
    view.cancel_action.trigger()
    run(bridge.settle())
    assert engine_state(session, run, job_id) is JobState.CANCELLED
    assert cell(view, job_id, JobColumn.STATE) == "cancelled"
    assert not view.cancel_action.isEnabled() and not view.pause_action.isEnabled()


def test_a_refused_action_becomes_a_failed_signal(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    job_id = make_job(session, run, tmp_path, "story", 2)
    view = JobsView(bridge)
    qtbot.addWidget(view)
    run(bridge.settle())
    run(session.service.cancel(job_id))  # cancelled behind the list's back
    failures: list[tuple[str, str]] = []
    bridge.failed.connect(lambda what, message: failures.append((what, message)))
    view.pause_selected()  # the list still says running until its next read
    run(bridge.settle())
    assert failures and failures[0][0] == "pause job story"
    assert "cancelled" in failures[0][1]


def test_eta_is_written_for_people() -> None:
    assert format_eta(None) == ""
    assert format_eta(42.4) == "42 s"
    assert format_eta(600) == "10 min"
    assert format_eta(3 * 3600 + 5 * 60) == "3 h 05 min"
