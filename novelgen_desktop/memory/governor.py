"""The memory governor: a state machine from memory readings to dispatch decisions. No I/O.

States (``engine.model.MemoryLevel``)::

    normal ──≥pause──▶ pressure ──≥critical──▶ critical
      ▲                   │  ▲                    │
      │                ≤resume └──<pause──────────┤
      │                   ▼                       │≤resume
      └──ramp done── recovering ◀─────────────────┘
                          │ ≥pause / ≥critical: back to pressure / critical

* **pressure** (system memory ≥ ``pause_percent``): no new attempts; those in flight finish.
* **critical** (≥ ``critical_percent``): as pressure, and attempts not yet sent to ChatGPT are
  called back (``recall_unpaid``); cleanup is urgent (every idle tab, not only the heaviest).
* **recovering** (≤ ``resume_percent``): workers are let back in batches, ``ramp_interval``
  apart, lightest tabs and well-behaved browsers first, so that a whole fleet restarting at once
  does not push memory straight back over the line; normal one interval after the last batch.

Hysteresis is the whole defence against flapping: pressure starts at ``pause_percent`` and
ends only at ``resume_percent``; critical ends below ``pause_percent``. Nothing is debounced on
the way in, so a crossing is acted on at the first reading that shows it.

Per browser: a browser whose memory passes ``browser_limit_percent`` of the machine is held on
its own (its tabs get no new work, and cleanup goes to it first) even while the system as a
whole is fine, until it is back under the limit × resume/pause. Under system pressure with
several browsers, one holding ``hog_share`` of all browser memory is the hog: cleaned first,
released last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from novelgen_desktop.engine.model import MemoryLevel
from novelgen_desktop.memory.readings import MemoryReading

_HOLDING = frozenset({MemoryLevel.PRESSURE, MemoryLevel.CRITICAL})


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    """Thresholds in percent of system memory in use (total − available)."""

    pause_percent: float = 80.0
    resume_percent: float = 60.0
    critical_percent: float = 90.0
    browser_limit_percent: float | None = 50.0
    hog_share: float = 0.6
    ramp_interval: float = 2.0
    ramp_steps: int = 3
    cleanup_interval: float = 15.0

    def __post_init__(self) -> None:
        for name in ("pause_percent", "resume_percent", "critical_percent"):
            value = getattr(self, name)
            if not 1.0 <= value <= 100.0:
                raise ValueError(f"memory setting {name}: {value:g} is not between 1 and 100")
        if self.resume_percent >= self.pause_percent:
            raise ValueError(
                f"memory setting resume_percent: {self.resume_percent:g} must be below "
                f"pause_percent {self.pause_percent:g} (the gap is what stops flapping)"
            )
        if self.critical_percent <= self.pause_percent:
            raise ValueError(
                f"memory setting critical_percent: {self.critical_percent:g} must be above "
                f"pause_percent {self.pause_percent:g}"
            )
        limit = self.browser_limit_percent
        if limit is not None and not 1.0 <= limit <= 100.0:
            raise ValueError(f"memory setting browser_limit_percent: {limit:g} is not 1–100")
        if not 0.0 < self.hog_share <= 1.0:
            raise ValueError(f"memory setting hog_share: {self.hog_share:g} is not in (0, 1]")
        if self.ramp_interval < 0 or self.cleanup_interval < 0:
            raise ValueError("memory settings ramp_interval and cleanup_interval must be ≥ 0")
        if self.ramp_steps < 1:
            raise ValueError(f"memory setting ramp_steps: {self.ramp_steps} must be ≥ 1")


@dataclass(frozen=True, slots=True)
class Transition:
    ts: float
    previous: MemoryLevel
    state: MemoryLevel
    system_percent: float
    reason: str


@dataclass(frozen=True, slots=True)
class BrowserChange:
    """One browser held on its own (or let go)."""

    browser: str
    held: bool
    bytes: int
    reason: str


@dataclass(frozen=True, slots=True)
class CleanupRequest:
    """The governor wants memory back now. ``browsers``: where to start (heaviest first)."""

    reason: str
    urgent: bool
    browsers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GovernorDecision:
    state: MemoryLevel
    hold_all: bool  # no new attempt for anyone (pressure, critical)
    held_workers: frozenset[str]  # workers held on their own (a hog browser, not yet ramped)
    recall_unpaid: bool  # critical: call back attempts not yet sent to ChatGPT
    transition: Transition | None = None
    browser_changes: tuple[BrowserChange, ...] = ()
    cleanup: CleanupRequest | None = None


@dataclass
class GovernorStats:
    """How long each state lasted and how often pressure began (for reports)."""

    seconds: dict[MemoryLevel, float] = field(
        default_factory=lambda: dict.fromkeys(MemoryLevel, 0.0)
    )
    episodes: int = 0  # times dispatch was stopped (entries into pressure or critical)
    transitions: int = 0

    @property
    def held_seconds(self) -> float:
        return self.seconds[MemoryLevel.PRESSURE] + self.seconds[MemoryLevel.CRITICAL]


class MemoryGovernor:
    """Feed it readings in time order (``observe``); it answers what dispatch may do."""

    def __init__(self, settings: GovernorSettings | None = None) -> None:
        self.settings = settings or GovernorSettings()
        self.state = MemoryLevel.NORMAL
        self.stats = GovernorStats()
        self.held_browsers: dict[str, str] = {}  # browser key -> why
        self._hog_by_share: set[str] = set()
        self._pending: list[str] = []  # recovering: workers not yet let back, in release order
        self._last_release = -math.inf
        self._batch = 1
        self._last_cleanup = -math.inf
        self._last_ts: float | None = None
        self.last_decision = GovernorDecision(MemoryLevel.NORMAL, False, frozenset(), False)

    def update_settings(self, settings: GovernorSettings) -> None:
        """New thresholds apply from the next reading (the state is kept)."""
        self.settings = settings

    # -- the state machine ----------------------------------------------------------------

    def _next_state(self, pct: float) -> tuple[MemoryLevel, str]:
        s, state = self.settings, self.state
        if state in (MemoryLevel.NORMAL, MemoryLevel.RECOVERING):
            if pct >= s.critical_percent:
                return MemoryLevel.CRITICAL, f"system memory {pct:.1f} % ≥ {s.critical_percent:g} %"
            if pct >= s.pause_percent:
                return MemoryLevel.PRESSURE, f"system memory {pct:.1f} % ≥ {s.pause_percent:g} %"
        elif state is MemoryLevel.PRESSURE:
            if pct >= s.critical_percent:
                return MemoryLevel.CRITICAL, f"system memory {pct:.1f} % ≥ {s.critical_percent:g} %"
            if pct <= s.resume_percent:
                return MemoryLevel.RECOVERING, f"system memory {pct:.1f} % ≤ {s.resume_percent:g} %"
        elif state is MemoryLevel.CRITICAL:
            if pct <= s.resume_percent:
                return MemoryLevel.RECOVERING, f"system memory {pct:.1f} % ≤ {s.resume_percent:g} %"
            if pct < s.pause_percent:
                return MemoryLevel.PRESSURE, f"system memory {pct:.1f} % < {s.pause_percent:g} %"
        return state, ""

    def observe(self, reading: MemoryReading) -> GovernorDecision:
        now, pct = reading.ts, reading.system_percent
        if self._last_ts is not None and now > self._last_ts:
            self.stats.seconds[self.state] += now - self._last_ts
        self._last_ts = now
        previous = self.state
        state, reason = self._next_state(pct)
        if state is MemoryLevel.RECOVERING and previous is not MemoryLevel.RECOVERING:
            self._pending = self._release_order(reading)
            self._batch = max(1, math.ceil(len(self._pending) / self.settings.ramp_steps))
            # With nobody to let back, recovering still lasts one interval: a reading that
            # climbs straight back is pressure again, not a second episode after "normal".
            self._last_release = -math.inf if self._pending else now
        ramp_due = now - self._last_release >= self.settings.ramp_interval
        if state is MemoryLevel.RECOVERING and self._pending and ramp_due:
            self._release_batch(now)
            ramp_due = False
        changes = self._judge_browsers(reading, state)
        if state is MemoryLevel.RECOVERING and not self._pending and ramp_due:
            state, reason = MemoryLevel.NORMAL, "every worker is back at work"
        transition = None
        if state is not previous:
            transition = Transition(now, previous, state, pct, reason)
            self.stats.transitions += 1
            if state in _HOLDING and previous not in _HOLDING:
                self.stats.episodes += 1
            if state in _HOLDING:
                self._pending = []
        self.state = state
        cleanup = self._cleanup_wanted(reading, transition, changes)
        decision = GovernorDecision(
            state=state,
            hold_all=state in _HOLDING,
            held_workers=self._held_workers(reading),
            recall_unpaid=state is MemoryLevel.CRITICAL,
            transition=transition,
            browser_changes=tuple(changes),
            cleanup=cleanup,
        )
        self.last_decision = decision
        return decision

    # -- browsers ---------------------------------------------------------------------------

    def _limit_bytes(self, reading: MemoryReading) -> float | None:
        limit = self.settings.browser_limit_percent
        if limit is None or reading.system_total_bytes <= 0:
            return None
        return reading.system_total_bytes * limit / 100.0

    def _judge_browsers(self, reading: MemoryReading, state: MemoryLevel) -> list[BrowserChange]:
        s = self.settings
        changes: list[BrowserChange] = []
        present = {b.key for b in reading.browsers}
        for key in [k for k in self.held_browsers if k not in present]:
            del self.held_browsers[key]  # the browser is gone (closed, crashed)
            self._hog_by_share.discard(key)
        limit = self._limit_bytes(reading)
        total = sum(b.bytes for b in reading.browsers)
        for browser in reading.browsers:
            held = browser.key in self.held_browsers
            share = browser.bytes / total if total else 0.0
            if limit is not None and browser.bytes >= limit and not held:
                why = (
                    f"browser {browser.key} uses {browser.bytes / 2**30:.1f} GiB ≥ "
                    f"{s.browser_limit_percent:g} % of memory"
                )
                self.held_browsers[browser.key] = why
                changes.append(BrowserChange(browser.key, True, browser.bytes, why))
                continue
            if state in _HOLDING and len(reading.browsers) >= 2 and share >= s.hog_share:
                if not held:
                    why = f"browser {browser.key} holds {share:.0%} of the browsers' memory"
                    self.held_browsers[browser.key] = why
                    self._hog_by_share.add(browser.key)
                    changes.append(BrowserChange(browser.key, True, browser.bytes, why))
                continue
            if not held:
                continue
            below = limit is None or browser.bytes <= limit * s.resume_percent / s.pause_percent
            if browser.key in self._hog_by_share:
                # The hog is let go last: once the ramp has let every other worker back (its
                # own tabs are last in the order), or once the system is back to normal.
                ramp_done = state is MemoryLevel.RECOVERING and not self._pending
                if below and (ramp_done or state is MemoryLevel.NORMAL):
                    changes.append(self._release_browser(browser.key, browser.bytes))
            elif below:
                changes.append(self._release_browser(browser.key, browser.bytes))
        return changes

    def _release_browser(self, key: str, size: int) -> BrowserChange:
        del self.held_browsers[key]
        self._hog_by_share.discard(key)
        return BrowserChange(key, False, size, f"browser {key} back under its limit")

    @staticmethod
    def _workers_of(reading: MemoryReading, key: str) -> set[str]:
        found = {t.worker_id for t in reading.tabs if t.browser == key}
        browser = reading.browser(key)
        if browser is not None:
            found.update(browser.worker_ids)
        return found

    # -- recovery ramp ----------------------------------------------------------------------

    def _release_order(self, reading: MemoryReading) -> list[str]:
        """Lightest tabs of well-behaved browsers first; the held browsers' tabs last."""
        last = set().union(*(self._workers_of(reading, k) for k in self.held_browsers))
        tabs = sorted(
            reading.tabs, key=lambda t: (t.worker_id in last, t.heap_bytes or 0, t.worker_id)
        )
        return [t.worker_id for t in tabs]

    def _release_batch(self, now: float) -> None:
        del self._pending[: self._batch]
        self._last_release = now

    def _held_workers(self, reading: MemoryReading) -> frozenset[str]:
        held: set[str] = set(self._pending) if self.state is MemoryLevel.RECOVERING else set()
        for key in self.held_browsers:
            held |= self._workers_of(reading, key)
        return frozenset(held)

    # -- cleanup ----------------------------------------------------------------------------

    def _cleanup_wanted(
        self,
        reading: MemoryReading,
        transition: Transition | None,
        changes: list[BrowserChange],
    ) -> CleanupRequest | None:
        now = reading.ts
        newly_held = [c.browser for c in changes if c.held]
        due = now - self._last_cleanup >= self.settings.cleanup_interval
        if self.state in _HOLDING and (transition is not None or due):
            reason = transition.reason if transition is not None else "memory still high"
        elif newly_held or (self.held_browsers and due):
            reason = "; ".join(self.held_browsers[k] for k in sorted(self.held_browsers))
        else:
            return None
        self._last_cleanup = now
        hogs = sorted(self.held_browsers, key=lambda k: -_size(reading, k))
        rest = sorted(
            (b.key for b in reading.browsers if b.key not in self.held_browsers),
            key=lambda k: -_size(reading, k),
        )
        return CleanupRequest(
            reason=reason, urgent=self.state is MemoryLevel.CRITICAL, browsers=(*hogs, *rest)
        )

    def force_cleanup(self, reading: MemoryReading, reason: str) -> CleanupRequest:
        """A cleanup the author asked for ("Free memory now"), whatever the state."""
        self._last_cleanup = reading.ts
        order = sorted((b.key for b in reading.browsers), key=lambda k: -_size(reading, k))
        return CleanupRequest(reason=reason, urgent=False, browsers=tuple(order))


def _size(reading: MemoryReading, key: str) -> int:
    browser = reading.browser(key)
    return browser.bytes if browser is not None else 0


def held_periods(transitions: Iterable[Transition], now: float) -> list[tuple[float, float]]:
    """(start, end) of every stretch spent in pressure or critical, in order; one still going
    ends at ``now`` (the charts shade them)."""
    periods: list[tuple[float, float]] = []
    start: float | None = None
    for transition in transitions:
        holding = transition.state in _HOLDING
        if holding and start is None:
            start = transition.ts
        elif not holding and start is not None:
            periods.append((start, transition.ts))
            start = None
    if start is not None:
        periods.append((start, max(start, now)))
    return periods
