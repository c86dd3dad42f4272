"""The memory governor with synthetic readings: thresholds, hysteresis, ramp, browsers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novelgen_desktop.engine.model import MemoryLevel
from novelgen_desktop.memory.governor import GovernorSettings, MemoryGovernor, held_periods
from novelgen_desktop.memory.readings import BrowserMemory, MemoryReading, TabMemory

GiB = 2**30
TABS = tuple(TabMemory(f"tab-{i}", browser="pid:1", heap_bytes=100 * i) for i in range(6))


def reading(ts: float, pct: float, **kw: object) -> MemoryReading:
    kw.setdefault("tabs", TABS)
    kw.setdefault("system_total_bytes", 16 * GiB)
    return MemoryReading(ts=ts, system_percent=pct, **kw)  # type: ignore[arg-type]


def states(governor: MemoryGovernor, percents: list[float], step: float = 0.1) -> list[MemoryLevel]:
    return [governor.observe(reading(i * step, p)).state for i, p in enumerate(percents)]


def test_pauses_at_the_threshold_and_not_below() -> None:
    governor = MemoryGovernor()
    assert governor.observe(reading(0, 79.99)).state is MemoryLevel.NORMAL
    decision = governor.observe(reading(1, 80.0))
    assert decision.state is MemoryLevel.PRESSURE
    assert decision.hold_all and not decision.recall_unpaid
    assert decision.transition is not None
    assert decision.transition.previous is MemoryLevel.NORMAL
    assert "80.0 % ≥ 80 %" in decision.transition.reason
    assert decision.cleanup is not None and not decision.cleanup.urgent


def test_no_resume_until_the_resume_threshold() -> None:
    governor = MemoryGovernor()
    governor.observe(reading(0, 85))
    for i, pct in enumerate([79, 70, 65, 60.01, 61]):
        decision = governor.observe(reading(1 + i, pct))
        assert decision.state is MemoryLevel.PRESSURE and decision.hold_all
    decision = governor.observe(reading(10, 60.0))
    assert decision.state is MemoryLevel.RECOVERING
    assert not decision.hold_all


def test_critical_recalls_unpaid_attempts_and_needs_pause_level_to_end() -> None:
    governor = MemoryGovernor()
    decision = governor.observe(reading(0, 91))
    assert decision.state is MemoryLevel.CRITICAL
    assert decision.recall_unpaid and decision.hold_all
    assert decision.cleanup is not None and decision.cleanup.urgent
    assert governor.observe(reading(1, 85)).state is MemoryLevel.CRITICAL  # 80 < 85 < 90
    assert governor.observe(reading(2, 79.9)).state is MemoryLevel.PRESSURE
    assert governor.observe(reading(3, 89.9)).state is MemoryLevel.PRESSURE
    assert governor.observe(reading(4, 55)).state is MemoryLevel.RECOVERING


def test_recovery_lets_workers_back_in_batches_lightest_first_then_normal() -> None:
    settings = GovernorSettings(ramp_interval=2.0, ramp_steps=3)
    governor = MemoryGovernor(settings)
    governor.observe(reading(0, 85))
    first = governor.observe(reading(1, 50))
    assert first.state is MemoryLevel.RECOVERING
    # six tabs in three steps: two let back at once (the lightest), four still held
    assert first.held_workers == {"tab-2", "tab-3", "tab-4", "tab-5"}
    assert governor.observe(reading(2, 50)).held_workers == first.held_workers  # < 2 s later
    second = governor.observe(reading(3, 50))
    assert second.held_workers == {"tab-4", "tab-5"}
    third = governor.observe(reading(5, 50))
    assert third.held_workers == frozenset() and third.state is MemoryLevel.RECOVERING
    done = governor.observe(reading(7, 50))
    assert done.state is MemoryLevel.NORMAL
    assert done.transition is not None and done.transition.previous is MemoryLevel.RECOVERING


def test_pressure_during_recovery_holds_everyone_again() -> None:
    governor = MemoryGovernor()
    governor.observe(reading(0, 85))
    governor.observe(reading(1, 50))
    decision = governor.observe(reading(1.5, 81))
    assert decision.state is MemoryLevel.PRESSURE and decision.hold_all
    assert decision.held_workers == frozenset()  # hold_all covers them; no stale ramp left


def test_noise_around_the_pause_threshold_does_not_flap() -> None:
    governor = MemoryGovernor()
    noisy = [79.6, 80.2, 79.4, 80.4, 79.9, 80.1, 79.5, 80.3] * 50
    seen = states(governor, noisy)
    changes = sum(1 for a, b in itertools.pairwise(seen) if a is not b)
    assert changes == 1 and seen[-1] is MemoryLevel.PRESSURE
    assert governor.stats.episodes == 1


def test_noise_around_the_resume_threshold_does_not_flap() -> None:
    governor = MemoryGovernor(GovernorSettings(ramp_interval=0.0))
    seen = states(governor, [85.0] + [59.5, 60.5, 59.8, 61.0] * 100)
    assert governor.stats.episodes == 1
    # pressure → recovering → normal, and it never went back
    order = [s for i, s in enumerate(seen) if i == 0 or s is not seen[i - 1]]
    assert order == [MemoryLevel.PRESSURE, MemoryLevel.RECOVERING, MemoryLevel.NORMAL]


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=300))
def test_hysteresis_holds_for_any_sequence(percents: list[float]) -> None:
    """Dispatch stops exactly when a reading reaches pause, and a stop ends only after a
    reading at or below resume; critical exactly at ≥ critical."""
    s = GovernorSettings()
    governor = MemoryGovernor(s)
    holding = False
    for i, pct in enumerate(percents):
        decision = governor.observe(reading(float(i), pct))
        if pct >= s.pause_percent:
            assert decision.hold_all
        if holding and pct > s.resume_percent:
            assert decision.hold_all, "resumed above the resume threshold"
        if pct >= s.critical_percent:
            assert decision.state is MemoryLevel.CRITICAL
        if decision.hold_all and not holding:
            assert pct >= s.pause_percent, "paused below the pause threshold"
        holding = decision.hold_all


def test_time_held_is_counted() -> None:
    governor = MemoryGovernor(GovernorSettings(ramp_interval=0.0))
    for ts, pct in [(0, 50), (10, 85), (20, 85), (30, 95), (35, 50), (40, 50), (41, 50)]:
        governor.observe(reading(ts, pct))
    assert governor.stats.seconds[MemoryLevel.PRESSURE] == 20
    assert governor.stats.seconds[MemoryLevel.CRITICAL] == 5
    assert governor.stats.held_seconds == 25
    assert governor.stats.episodes == 1


def test_cleanup_repeats_while_pressure_lasts() -> None:
    governor = MemoryGovernor(GovernorSettings(cleanup_interval=15))
    asked = [governor.observe(reading(t, 85)).cleanup is not None for t in range(0, 40)]
    assert [t for t, yes in enumerate(asked) if yes] == [0, 15, 30]


# -- browsers --------------------------------------------------------------------------------


def two_browsers(hog_bytes: int, other_bytes: int) -> dict[str, object]:
    tabs = (
        TabMemory("a1", browser="pid:1", heap_bytes=500),
        TabMemory("a2", browser="pid:1", heap_bytes=400),
        TabMemory("b1", browser="pid:2", heap_bytes=10),
    )
    browsers = (
        BrowserMemory("pid:1", hog_bytes, worker_ids=("a1", "a2")),
        BrowserMemory("pid:2", other_bytes, worker_ids=("b1",)),
    )
    return {"tabs": tabs, "browsers": browsers}


def test_a_browser_over_its_limit_is_held_alone_while_the_system_is_fine() -> None:
    governor = MemoryGovernor(GovernorSettings(browser_limit_percent=25))  # 4 GiB of 16
    decision = governor.observe(reading(0, 50, **two_browsers(5 * GiB, GiB)))
    assert decision.state is MemoryLevel.NORMAL and not decision.hold_all
    assert decision.held_workers == {"a1", "a2"}
    assert [(c.browser, c.held) for c in decision.browser_changes] == [("pid:1", True)]
    assert decision.cleanup is not None and decision.cleanup.browsers[0] == "pid:1"
    # 3.5 GiB: under the limit but above limit × 60/80 = 3 GiB: still held
    assert governor.observe(reading(1, 50, **two_browsers(int(3.5 * GiB), GiB))).held_workers
    released = governor.observe(reading(2, 50, **two_browsers(int(2.9 * GiB), GiB)))
    assert released.held_workers == frozenset()
    assert [(c.browser, c.held) for c in released.browser_changes] == [("pid:1", False)]


def test_the_hog_is_cleaned_first_and_let_back_last() -> None:
    governor = MemoryGovernor(GovernorSettings(browser_limit_percent=None, ramp_interval=1))
    pressure = governor.observe(reading(0, 85, **two_browsers(6 * GiB, GiB)))
    assert pressure.hold_all
    assert [(c.browser, c.held) for c in pressure.browser_changes] == [("pid:1", True)]
    assert pressure.cleanup is not None and pressure.cleanup.browsers == ("pid:1", "pid:2")
    recovering = governor.observe(reading(1, 55, **two_browsers(2 * GiB, GiB)))
    assert recovering.state is MemoryLevel.RECOVERING
    assert recovering.held_workers == {"a1", "a2"}  # b1 (the other browser) first
    later = governor.observe(reading(2, 55, **two_browsers(2 * GiB, GiB)))
    assert later.held_workers == {"a1", "a2"}  # still held: its browser goes last
    last = governor.observe(reading(3, 55, **two_browsers(2 * GiB, GiB)))
    assert last.held_workers == frozenset()
    assert ("pid:1", False) in [(c.browser, c.held) for c in last.browser_changes]


def test_a_browser_that_disappears_is_forgotten() -> None:
    governor = MemoryGovernor(GovernorSettings(browser_limit_percent=25))
    governor.observe(reading(0, 50, **two_browsers(5 * GiB, GiB)))
    assert governor.held_browsers
    decision = governor.observe(reading(1, 50, tabs=(), browsers=()))
    assert not governor.held_browsers and decision.held_workers == frozenset()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resume_percent": 80}, "resume_percent: 80 must be below pause_percent 80"),
        ({"critical_percent": 70}, "critical_percent: 70 must be above pause_percent 80"),
        ({"pause_percent": 120}, "pause_percent: 120 is not between 1 and 100"),
        ({"hog_share": 0}, "hog_share"),
        ({"ramp_steps": 0}, "ramp_steps: 0 must be ≥ 1"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GovernorSettings(**kwargs)  # type: ignore[arg-type]


def test_held_periods_for_the_charts() -> None:
    governor = MemoryGovernor(GovernorSettings(ramp_interval=0.0))
    transitions = []
    for ts, pct in [(0, 50), (10, 85), (20, 95), (30, 50), (31, 50), (32, 50), (40, 82)]:
        decision = governor.observe(reading(ts, pct))
        if decision.transition is not None:
            transitions.append(decision.transition)
    assert held_periods(transitions, now=45) == [(10, 30), (40, 45)]
    assert held_periods([], now=45) == []
