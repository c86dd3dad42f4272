"""The bridge turns engine callbacks into signals and reports failed actions in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.gui.bridge import EngineBridge


def test_job_submission_reaches_views_as_signals(
    qtbot: Any, session: DesktopSession, run: Any, tmp_path: Path
) -> None:
    bridge = EngineBridge(session)
    events: list[Any] = []
    bridge.event_logged.connect(events.append)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na whale\n", encoding="utf-8")
    with qtbot.waitSignal(bridge.jobs_changed, timeout=5000):
        job_id = run(session.create_job("two", session.preview_files([prompts])))
    assert any(e.kind == "job_submitted" and e.job_id == job_id for e in events)
    bridge.stop()


def test_a_failed_action_becomes_one_failed_signal(
    qtbot: Any, session: DesktopSession, run: Any
) -> None:
    bridge = EngineBridge(session)

    async def refuse() -> None:
        raise ConfigError("job x is cancelled; its tasks cannot change")

    with qtbot.waitSignal(bridge.failed, timeout=5000) as blocker:
        bridge.spawn("move tasks", refuse())
        run(bridge.settle())
    assert blocker.args == ["move tasks", "job x is cancelled; its tasks cannot change"]
    bridge.stop()
