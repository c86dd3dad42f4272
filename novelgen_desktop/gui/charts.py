"""The charts tab: memory over time against the dispatch thresholds, throughput, and the
followed job's cumulative progress.

Drawing is decoupled from the engine on purpose: the recorder samples at its own rate and the
plots are redrawn by a timer at a fixed rate (every two seconds) from its bounded histories, so
ten workers finishing images as fast as they can cost the same redraws as one. Curves are
made once and fed with ``setData``; antialiasing is off and long histories are clipped to
the view and downsampled, so an hour of points draws as cheaply as a minute. Nothing is
redrawn while the tab is hidden.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from novelgen_desktop.desktop.metrics import (
    MEASURE_MIXED,
    MEASURE_NONE,
    MEASURE_RSS,
    MetricsRecorder,
    SeriesBuffer,
)
from novelgen_desktop.errors import OutputError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import QtCore, QtGui, QtWidgets
from novelgen_desktop.memory.governor import held_periods

# isort: split
# After gui.qt, which sets QT_API: pyqtgraph must draw with PySide6 whatever else is installed.
import pyqtgraph as pg

REFRESH_MS = 2000
"""The charts' redraw rate, whatever the rate of results: every two seconds. A redraw of
the three plots costs ~25-70 ms of the loop (axis text is drawn in Python by pyqtgraph);
once a second that alone put the window's loop-lag p99 above 50 ms during a 10-worker run
(benchmarks/gui_responsiveness.py)."""

AXIS_WIDTH = 64
MAX_HELD_REGIONS = 200  # shaded memory holds drawn at most (the oldest are dropped)

SYSTEM_COLOUR = "#1f77b4"
BROWSER_COLOUR = "#d62728"
DESKTOP_COLOUR = "#2ca02c"
PAUSE_COLOUR = "#c0392b"
RESUME_COLOUR = "#27ae60"
THROUGHPUT_COLOUR = "#9467bd"
DONE_COLOUR = "#ff7f0e"
TAB_COLOURS = (
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
)


def _format_bytes(value: float) -> str:
    if value >= 2**30:
        return f"{value / 2**30:.2f} GB"
    return f"{value / 2**20:.0f} MB"


class ChartsView(QtWidgets.QWidget):
    """Three stacked plots fed by a :class:`MetricsRecorder`.

    Without a ``recorder`` the view makes one for the bridge's session (following the job
    the author selected, else the running one), starts it, and stops it when closed; a
    recorder passed in is started if need be and left running.
    """

    def __init__(
        self,
        bridge: EngineBridge,
        recorder: MetricsRecorder | None = None,
        parent: QtWidgets.QWidget | None = None,
        *,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self.owns_recorder = recorder is None
        self.recorder = recorder or MetricsRecorder.for_session(
            self.session, job_id=lambda: bridge.selected_job
        )
        self._drawn_version = -1
        self.redraws = 0  # how many times the curves were fed (tests, profiling)

        self.status = QtWidgets.QLabel(self)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        self.memory_plot = self._plot("Memory")
        memory = self.memory_plot.getPlotItem()
        memory.setLabel("left", "system memory in use", units="%")
        memory.setYRange(0, 100, padding=0.02)
        memory.enableAutoRange(axis="y", enable=False)
        self.legend = memory.addLegend(
            offset=(10, 10), labelTextColor="#333333", brush=pg.mkBrush(255, 255, 255, 210)
        )
        self.system_curve = self._curve(memory, SYSTEM_COLOUR, "system %")
        # Bytes on a second axis at the right: the thresholds are percentages of the
        # machine, the browser and this app are sizes, and both belong on one time line.
        self.bytes_view = pg.ViewBox()
        memory.getAxis("right").setStyle(showValues=True)
        memory.scene().addItem(self.bytes_view)
        memory.getAxis("right").linkToView(self.bytes_view)
        memory.getAxis("right").setLabel("memory", units="B")
        self.bytes_view.setXLink(memory)
        memory.vb.sigResized.connect(self._sync_views)
        self.browser_curve = self._curve(self.bytes_view, BROWSER_COLOUR, "browser PSS")
        self.desktop_curve = self._curve(self.bytes_view, DESKTOP_COLOUR, "NovelGen")
        self.tab_curves: dict[str, Any] = {}
        pause, resume = (
            self.session.settings.memory_pause_percent,
            (self.session.settings.memory_resume_percent),
        )
        self.held_regions: list[Any] = []  # shaded stretches where dispatch was held
        self._held_key: tuple[int, float] | None = None
        self.pause_line = self._threshold(memory, pause, PAUSE_COLOUR, "pause dispatch at")
        self.resume_line = self._threshold(memory, resume, RESUME_COLOUR, "resume at")

        self.throughput_plot = self._plot("Throughput")
        throughput = self.throughput_plot.getPlotItem()
        throughput.setLabel("left", "images / min")
        self.throughput_curve = self._curve(throughput, THROUGHPUT_COLOUR, None)

        self.progress_plot = self._plot("Progress")
        progress = self.progress_plot.getPlotItem()
        progress.setLabel("left", "images done")
        self.done_curve = self._curve(progress, DONE_COLOUR, None)
        self.total_line = pg.InfiniteLine(
            pos=0,
            angle=0,
            movable=False,
            pen=pg.mkPen("#888888", style=QtCore.Qt.PenStyle.DashLine),
            label="total {value:.0f}",
            labelOpts={"position": 0.02, "color": "#555555", "anchors": [(0, 0), (0, 0)]},
        )
        self.total_line.setVisible(False)
        progress.addItem(self.total_line)  # in the range: the curve shows how far to go

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status)
        layout.addWidget(self.memory_plot, 2)
        layout.addWidget(self.throughput_plot, 1)
        layout.addWidget(self.progress_plot, 1)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        bridge.job_selected.connect(self._on_job_selected)
        if self.owns_recorder:
            self.destroyed.connect(self.recorder.stop)  # dropped without being closed
        self.recorder.start()

    # --- construction ---------------------------------------------------------------------

    def _plot(self, title: str) -> Any:
        widget = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        widget.setBackground("w")
        item = widget.getPlotItem()
        item.setTitle(title)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        item.setMenuEnabled(False)
        # Same axis widths on every plot, so the three time lines line up.
        item.getAxis("left").setWidth(AXIS_WIDTH)
        item.showAxis("right")
        item.getAxis("right").setWidth(AXIS_WIDTH)
        item.getAxis("right").setStyle(showValues=False)
        widget.setMinimumHeight(120)
        return widget

    def _curve(self, target: Any, colour: str, name: str | None) -> Any:
        curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5), antialias=False, name=name)
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        target.addItem(curve)
        if name is not None and not isinstance(target, pg.PlotItem):
            self.legend.addItem(curve, name)  # the legend only sees its own plot's items
        return curve

    def _threshold(self, plot: Any, value: float, colour: str, text: str) -> Any:
        line = pg.InfiniteLine(
            pos=value,
            angle=0,
            movable=False,
            pen=pg.mkPen(colour, width=1, style=QtCore.Qt.PenStyle.DashLine),
            label=text + " {value:g} %",
            labelOpts={"position": 0.98, "color": colour, "anchors": [(1, 1), (1, 1)]},
        )
        plot.addItem(line, ignoreBounds=True)
        return line

    def _shade_held(self) -> None:
        """Shade the stretches the memory governor held dispatch back (pressure, critical)."""
        monitor = self.session.monitor
        if monitor is None:
            return
        transitions = list(monitor.transitions)
        periods = held_periods(transitions, time.time())[-MAX_HELD_REGIONS:]
        key = (len(transitions), periods[-1][1] if periods else 0.0)
        if key == self._held_key:
            return
        self._held_key = key
        plot = self.memory_plot.getPlotItem()
        while len(self.held_regions) > len(periods):
            plot.removeItem(self.held_regions.pop())
        while len(self.held_regions) < len(periods):
            region = pg.LinearRegionItem(
                movable=False, brush=pg.mkBrush(PAUSE_COLOUR + "30"), pen=pg.mkPen(None)
            )
            region.setZValue(-10)
            plot.addItem(region, ignoreBounds=True)
            self.held_regions.append(region)
        for region, (start, end) in zip(self.held_regions, periods, strict=True):
            region.setRegion((start, end))

    def _sync_views(self) -> None:
        memory = self.memory_plot.getPlotItem()
        self.bytes_view.setGeometry(memory.vb.sceneBoundingRect())
        self.bytes_view.linkedViewChanged(memory.vb, self.bytes_view.XAxis)

    def _on_job_selected(self, _job_id: str) -> None:
        self.refresh(force=True)

    # --- public ---------------------------------------------------------------------------

    def set_thresholds(self, pause_percent: float, resume_percent: float) -> None:
        """Move the threshold lines (the settings changed)."""
        if self.pause_line.value() != pause_percent:
            self.pause_line.setValue(pause_percent)
        if self.resume_line.value() != resume_percent:
            self.resume_line.setValue(resume_percent)

    def thresholds(self) -> tuple[float, float]:
        return float(self.pause_line.value()), float(self.resume_line.value())

    def refresh(self, force: bool = False) -> None:
        """Feed the curves from the recorder (a timer calls this every REFRESH_MS)."""
        settings = self.session.settings
        self.set_thresholds(settings.memory_pause_percent, settings.memory_resume_percent)
        if not force and (not self.isVisible() or self.recorder.version == self._drawn_version):
            return
        self._drawn_version = self.recorder.version
        self.redraws += 1
        memory = self.recorder.memory
        self._feed(self.system_curve, memory.system_percent)
        self._shade_held()
        self._feed(self.browser_curve, memory.browser)
        self._feed(self.desktop_curve, memory.desktop)
        self._feed_tabs()
        tracker = self.recorder.throughput
        self._feed(self.throughput_curve, tracker.rates)
        self._feed(self.done_curve, tracker.cumulative)
        if tracker.total:
            self.total_line.setVisible(True)  # first: a hidden line's label ignores new values
            self.total_line.setValue(tracker.total)
            self.total_line.label.valueChanged()
        else:
            self.total_line.setVisible(False)
        self._update_titles()

    def _feed(self, curve: Any, series: SeriesBuffer) -> None:
        times, values = series.arrays()
        curve.setData(times, values)

    def _feed_tabs(self) -> None:
        series_by_tab = self.recorder.memory.tabs
        for worker_id in [w for w in self.tab_curves if w not in series_by_tab]:
            curve = self.tab_curves.pop(worker_id)  # its history was dropped: so is its line
            self.bytes_view.removeItem(curve)
            self.legend.removeItem(curve)
        for worker_id in sorted(series_by_tab):
            curve = self.tab_curves.get(worker_id)
            if curve is None:
                colour = TAB_COLOURS[len(self.tab_curves) % len(TAB_COLOURS)]
                curve = self._curve(self.bytes_view, colour, f"tab heap {worker_id}")
                curve.setPen(pg.mkPen(colour, width=1, style=QtCore.Qt.PenStyle.DotLine))
                self.tab_curves[worker_id] = curve
            self._feed(curve, series_by_tab[worker_id])

    def _update_titles(self) -> None:
        sample = self.recorder.last
        if sample is None:
            self.status.setText("memory: no reading yet")
        else:
            browser = "no Chrome/Chromium process found"
            if sample.browser_measure != MEASURE_NONE:
                browser = (
                    f"browser {_format_bytes(sample.browser_pss_bytes)} over "
                    f"{sample.browser_processes} process(es)"
                )
                if sample.browser_measure == MEASURE_RSS:
                    browser += " (RSS: PSS unreadable here, shared pages counted repeatedly)"
                elif sample.browser_measure == MEASURE_MIXED:
                    browser += " (some processes by RSS: PSS unreadable for them)"
            pause, resume = self.thresholds()
            self.status.setText(
                f"system {sample.system_percent:.0f} % of "
                f"{_format_bytes(sample.system_total_bytes)} (dispatch pauses at {pause:g} %, "
                f"resumes at {resume:g} %) · {browser} · NovelGen "
                f"{_format_bytes(sample.desktop_rss_bytes)}"
            )
        tracker = self.recorder.throughput
        self.throughput_plot.getPlotItem().setTitle(
            f"Throughput: {tracker.rate():.1f} images/min (last {tracker.window:g} s)"
        )
        progress = self.recorder.last_progress
        if progress is None:
            self.progress_plot.getPlotItem().setTitle("Progress: no job followed")
        else:
            name = progress.name or progress.job_id
            self.progress_plot.getPlotItem().setTitle(
                f"Progress of {name}: {progress.done} / {progress.total}"
            )

    def curve_points(self, curve: Any) -> int:
        """How many points a curve holds (before clipping and downsampling)."""
        data = curve.xData
        return 0 if data is None else len(data)

    def grab_png(self, path: str | Path) -> Path:
        """Save a screenshot of the charts as PNG (the docs, a bug report)."""
        target = Path(path)
        if self.isWindow() and not self.isVisible():
            self.resize(max(self.width(), 1000), max(self.height(), 760))
            layout = self.layout()
            if layout is not None:
                layout.activate()
        self.refresh(force=True)
        pixmap: QtGui.QPixmap = self.grab()
        if pixmap.isNull() or not pixmap.save(str(target), "PNG"):
            raise OutputError(f"cannot save the charts to {target}")
        return target

    # --- lifecycle ------------------------------------------------------------------------

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.refresh(force=True)  # it was not redrawn while hidden

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.stop()
        super().closeEvent(event)

    def stop(self) -> None:
        """Stop redrawing, and sampling if this view started the recorder."""
        self.timer.stop()
        if self.owns_recorder:
            self.recorder.stop()


__all__ = ["REFRESH_MS", "ChartsView"]
