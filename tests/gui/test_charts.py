"""The charts: a simulated run feeds them, the thresholds follow the settings, the curves are
made once and stay bounded however long the run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.metrics import (
    MEASURE_PSS,
    JobProgress,
    MemorySample,
    MetricsRecorder,
)
from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.charts import ChartsView
from novelgen_desktop.sim.worker import SimBehaviour

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


class FakeProbe:
    def __init__(self) -> None:
        self.n = 0

    def read(self) -> MemorySample:
        self.n += 1
        return _sample(float(self.n))


def _sample(ts: float, heaps: dict[str, int] | None = None) -> MemorySample:
    return MemorySample(
        ts=ts,
        system_percent=40.0 + ts % 20,
        system_used_bytes=6 * 2**30,
        system_total_bytes=16 * 2**30,
        desktop_rss_bytes=300 * 2**20,
        browser_pss_bytes=2 * 2**30,
        browser_processes=7,
        browser_measure=MEASURE_PSS,
        tab_heaps=heaps or {},
    )


def _y(curve: Any) -> list[float]:
    return [] if curve.yData is None else [float(v) for v in curve.yData]


def test_a_simulated_run_feeds_the_charts(
    qtbot: Any, session: DesktopSession, run: Any, tmp_path: Path
) -> None:
    bridge = EngineBridge(session)
    recorder = MetricsRecorder.for_session(
        session, job_id=lambda: bridge.selected_job, interval=0.05
    )
    view = ChartsView(bridge, recorder, refresh_ms=50)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    assert recorder.running

    # The thresholds come from the session's settings (80 / 60 in the fixture's).
    assert view.thresholds() == (
        session.settings.memory_pause_percent,
        session.settings.memory_resume_percent,
    )
    assert view.thresholds() == (80.0, 60.0)

    session.start_simulated_workers(2, SimBehaviour(latency_median=0.08, latency_sigma=0.0))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"panel {i}\n" for i in range(40)), encoding="utf-8")
    job_id = run(session.create_job("charts", session.preview_files([prompts])))

    qtbot.waitUntil(lambda: _y(view.done_curve)[-1:] == [40.0], timeout=20000)
    assert recorder.throughput.job_id == job_id
    assert view.total_line.isVisible() and view.total_line.value() == 40
    assert max(_y(view.throughput_curve)) > 0
    assert recorder.throughput.rate() > 0
    assert view.curve_points(view.system_curve) >= 3
    assert all(0 < v <= 100 for v in _y(view.system_curve))
    assert min(_y(view.desktop_curve)) > 10 * 2**20  # this process's RSS, in bytes
    assert view.curve_points(view.browser_curve) == view.curve_points(view.system_curve)
    # The cumulative curve never goes down.
    done = _y(view.done_curve)
    assert done == sorted(done)
    assert "Progress of charts: 40 / 40" in view.progress_plot.getPlotItem().titleLabel.text
    assert view.status.text().startswith("system ")

    # New settings move the lines on the next redraw.
    session.settings = replace(
        session.settings, memory_pause_percent=85.0, memory_resume_percent=50.0
    )
    qtbot.waitUntil(lambda: view.thresholds() == (85.0, 50.0), timeout=5000)
    view.set_thresholds(90.0, 70.0)
    assert view.pause_line.value() == 90.0 and view.resume_line.value() == 70.0

    shot = view.grab_png(tmp_path / "charts.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    view.close()
    assert recorder.running  # passed in: the caller's to stop
    recorder.stop()
    bridge.stop()


def test_curves_are_made_once_and_history_stays_bounded(
    qtbot: Any, session: DesktopSession
) -> None:
    bridge = EngineBridge(session)
    recorder = MetricsRecorder(FakeProbe(), capacity=30)
    view = ChartsView(bridge, recorder, refresh_ms=60_000)
    view.timer.stop()
    recorder.stop()  # fed by hand below
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)

    for second in range(300):
        heaps = {"tab-a": 100 * 2**20 + second, "tab-b": 150 * 2**20}
        recorder.record(_sample(float(second), heaps))
        recorder.record_progress(JobProgress("job", second * 2, 600, "long"), float(second))
        if second == 5:
            view.refresh()
            first_curves = dict(view.tab_curves)
            items = len(view.bytes_view.addedItems)
    view.refresh()

    for curve in (
        view.system_curve,
        view.browser_curve,
        view.desktop_curve,
        view.throughput_curve,
        view.done_curve,
        *view.tab_curves.values(),
    ):
        assert view.curve_points(curve) == 30
    assert view.tab_curves == first_curves  # the same curve objects, fed with setData
    assert len(view.bytes_view.addedItems) == items
    assert _y(view.done_curve)[-1] == 598.0
    assert _y(view.throughput_curve)[-1] == pytest.approx(120.0)
    assert _y(view.tab_curves["tab-a"])[-1] == 100 * 2**20 + 299

    # Nothing new: no redraw. Something new: one redraw, whatever the number of samples.
    redraws = view.redraws
    view.refresh()
    assert view.redraws == redraws
    for second in range(300, 310):
        recorder.record(_sample(float(second)))
    view.refresh()
    assert view.redraws == redraws + 1
    view.close()
    bridge.stop()


def test_a_hidden_view_does_not_redraw_and_owns_its_recorder(
    qtbot: Any, session: DesktopSession, run: Any
) -> None:
    bridge = EngineBridge(session)
    view = ChartsView(bridge, refresh_ms=20)
    qtbot.addWidget(view)
    assert view.owns_recorder and view.recorder.running
    recorder = view.recorder
    qtbot.waitUntil(lambda: recorder.version > 0, timeout=10000)
    view.refresh()
    assert view.redraws == 0  # hidden (another tab): nothing drawn
    view.show()
    qtbot.waitExposed(view)
    assert view.redraws >= 1 and view.curve_points(view.system_curve) >= 1
    view.close()
    assert not recorder.running
    bridge.stop()
