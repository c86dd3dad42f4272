"""Throughput, ETA and per-worker statistics, driven by a synthetic clock."""

from __future__ import annotations

import pytest

from novelgen_desktop.engine.progress import ProgressTracker, WorkerStats


def feed(tracker: ProgressTracker, *, start: float, seconds: float, per_second: float) -> float:
    """Record evenly spaced completions from ``start`` for ``seconds``; return the end time."""
    step = 1.0 / per_second
    n = round(seconds * per_second)
    for i in range(1, n + 1):
        tracker.record_done("w1", latency=10.0, now=start + i * step)
    return start + n * step


# --- throughput ---------------------------------------------------------------------------


def test_steady_rate_converges_to_completions_per_minute() -> None:
    tracker = ProgressTracker(total=10_000)
    end = feed(tracker, start=0.0, seconds=120.0, per_second=2.0)
    snap = tracker.snapshot(end)
    assert snap.throughput_per_min == pytest.approx(120.0, rel=0.02)


def test_rate_converges_after_a_change_of_pace() -> None:
    tracker = ProgressTracker(total=10_000)
    t = feed(tracker, start=0.0, seconds=60.0, per_second=0.5)
    assert tracker.snapshot(t).throughput_per_min == pytest.approx(30.0, rel=0.05)
    t = feed(tracker, start=t, seconds=120.0, per_second=2.0)
    assert tracker.snapshot(t).throughput_per_min == pytest.approx(120.0, rel=0.02)


def test_a_burst_does_not_swing_the_rate() -> None:
    tracker = ProgressTracker(total=10_000)
    t = feed(tracker, start=0.0, seconds=120.0, per_second=1.0)
    for _ in range(20):  # 20 images in one instant
        tracker.record_done("w1", latency=1.0, now=t)
    t = feed(tracker, start=t, seconds=5.0, per_second=1.0)
    rate = tracker.rate_per_second(t)
    assert 1.0 < rate < 1.0 + 0.3 * 20 / 5 + 0.1  # one bucket at alpha weight, no more


def test_rate_before_the_first_bucket_closes_is_the_rate_so_far() -> None:
    tracker = ProgressTracker(total=100, bucket_seconds=5.0)
    tracker.record_done("w1", latency=1.0, now=100.0)
    tracker.record_done("w1", latency=1.0, now=101.0)
    tracker.record_done("w1", latency=1.0, now=102.0)
    assert tracker.rate_per_second(102.0) == pytest.approx(3 / 2.0)
    assert tracker.rate_per_second(100.2) == 0.0  # too early to say anything


def test_no_completions_no_rate() -> None:
    tracker = ProgressTracker(total=5)
    assert tracker.rate_per_second(0.0) == 0.0
    assert tracker.snapshot(1000.0).throughput_per_min == 0.0


def test_idle_minute_pulls_the_rate_down() -> None:
    tracker = ProgressTracker(total=10_000, bucket_seconds=5.0, alpha=0.3)
    t = feed(tracker, start=0.0, seconds=120.0, per_second=2.0)
    before = tracker.rate_per_second(t)
    after = tracker.rate_per_second(t + 60.0)
    # eleven or twelve empty buckets (the one in progress at ``t`` still held completions),
    # each keeping (1 - alpha) of the rate
    assert before * 0.7**12 * 0.99 <= after <= before * 0.7**11 * 1.01
    assert after < before / 40


def test_long_idle_gap_terminates_quickly_and_zeroes_the_rate() -> None:
    tracker = ProgressTracker(total=10_000)
    t = feed(tracker, start=0.0, seconds=60.0, per_second=2.0)
    # No wall-clock bound (shared machines are noisy): a per-bucket loop over ten hours, or
    # over the year below, would be caught by the suite's timeout instead.
    snap = tracker.snapshot(t + 10 * 3600.0)
    assert snap.throughput_per_min < 1e-6
    assert snap.eta_seconds is None  # nothing is moving: no honest ETA


def test_very_long_idle_gap_does_not_hang() -> None:
    tracker = ProgressTracker(total=10)
    tracker.record_done("w1", latency=1.0, now=0.0)
    rate = tracker.rate_per_second(1000 * 365 * 24 * 3600.0)  # asleep for a millennium
    assert rate == 0.0


def test_rate_recovers_after_an_idle_gap() -> None:
    tracker = ProgressTracker(total=10_000)
    t = feed(tracker, start=0.0, seconds=60.0, per_second=2.0)
    t += 10 * 3600.0
    t = feed(tracker, start=t, seconds=120.0, per_second=1.0)
    assert tracker.snapshot(t).throughput_per_min == pytest.approx(60.0, rel=0.02)


# --- ETA ----------------------------------------------------------------------------------


def test_eta_is_remaining_over_rate() -> None:
    tracker = ProgressTracker(total=1000)
    end = feed(tracker, start=0.0, seconds=100.0, per_second=2.0)
    snap = tracker.snapshot(end)
    remaining = 1000 - 200
    assert snap.done == 200
    assert snap.eta_seconds == pytest.approx(remaining / tracker.rate_per_second(end))
    assert snap.eta_seconds == pytest.approx(400.0, rel=0.03)
    assert snap.percent == pytest.approx(20.0)


def test_eta_counts_terminal_failures_as_no_longer_remaining() -> None:
    tracker = ProgressTracker(total=1000)
    end = feed(tracker, start=0.0, seconds=100.0, per_second=2.0)
    for _ in range(300):
        tracker.record_terminal_failure()
    snap = tracker.snapshot(end)
    assert snap.failed_terminal == 300
    assert snap.eta_seconds == pytest.approx(500 / tracker.rate_per_second(end))


def test_eta_adds_the_cooldown_wait() -> None:
    tracker = ProgressTracker(total=1000)
    end = feed(tracker, start=0.0, seconds=100.0, per_second=2.0)
    plain = tracker.snapshot(end).eta_seconds
    assert plain is not None
    cooling = tracker.snapshot(end, cooling_until=end + 900.0)
    assert cooling.eta_seconds == pytest.approx(plain + 900.0)
    assert cooling.cooling_until == end + 900.0


def test_eta_ignores_a_cooldown_already_over() -> None:
    tracker = ProgressTracker(total=1000)
    end = feed(tracker, start=0.0, seconds=100.0, per_second=2.0)
    plain = tracker.snapshot(end).eta_seconds
    assert tracker.snapshot(end, cooling_until=end - 1.0).eta_seconds == pytest.approx(plain)


def test_eta_none_when_nothing_moves_and_work_remains() -> None:
    tracker = ProgressTracker(total=10)
    snap = tracker.snapshot(50.0)
    assert snap.eta_seconds is None
    assert tracker.snapshot(50.0, cooling_until=500.0).eta_seconds is None


def test_eta_zero_when_nothing_remains() -> None:
    tracker = ProgressTracker(total=3)
    for i in range(3):
        tracker.record_done("w1", latency=1.0, now=float(i))
    snap = tracker.snapshot(3.0, cooling_until=1000.0)
    assert snap.eta_seconds == 0.0
    assert snap.percent == pytest.approx(100.0)


def test_eta_zero_when_the_rest_failed_for_good() -> None:
    tracker = ProgressTracker(total=2, done=1)
    tracker.record_terminal_failure()
    assert tracker.snapshot(0.0).eta_seconds == 0.0


def test_resumed_job_starts_from_its_done_count() -> None:
    tracker = ProgressTracker(total=200, done=50)
    snap = tracker.snapshot(0.0)
    assert snap.done == 50 and snap.percent == pytest.approx(25.0)


def test_empty_job_is_complete() -> None:
    snap = ProgressTracker(total=0).snapshot(0.0)
    assert snap.percent == 100.0 and snap.eta_seconds == 0.0


# --- per-worker statistics ----------------------------------------------------------------


def test_success_rate_on_known_data() -> None:
    tracker = ProgressTracker(total=100)
    for i in range(3):
        tracker.record_done("w1", latency=5.0, now=float(i))
    tracker.record_failure("w1", now=4.0)
    tracker.record_failure("w1", now=5.0, rate_limited=True)  # not the worker's fault
    stats = tracker.workers["w1"]
    assert (stats.done, stats.failed, stats.rate_limited) == (3, 1, 1)
    assert stats.attempts == 4
    assert stats.success_rate == pytest.approx(0.75)


def test_success_rate_none_without_attempts() -> None:
    stats = WorkerStats("w1", "a1")
    assert stats.success_rate is None
    assert stats.mean_latency is None
    assert stats.p95_latency is None


def test_p95_and_mean_of_1_to_100() -> None:
    stats = WorkerStats("w1", "a1")
    for latency in reversed(range(1, 101)):  # order of arrival does not matter
        stats.latencies.append(float(latency))
    assert stats.p95_latency == 95.0
    assert stats.mean_latency == pytest.approx(50.5)


def test_p95_of_small_samples() -> None:
    stats = WorkerStats("w1", "a1")
    stats.latencies.append(7.0)
    assert stats.p95_latency == 7.0
    stats.latencies.extend([1.0, 2.0, 3.0])
    assert stats.p95_latency == 7.0  # ceil(0.95 * 4) = 4th smallest


def test_p95_of_twenty_values() -> None:
    stats = WorkerStats("w1", "a1")
    stats.latencies.extend(float(v) for v in range(1, 21))
    assert stats.p95_latency == 19.0  # ceil(0.95 * 20) = 19th smallest


def test_latency_history_is_bounded() -> None:
    tracker = ProgressTracker(total=1000)
    for i in range(1, 601):
        tracker.record_done("w1", latency=float(i), now=float(i))
    stats = tracker.workers["w1"]
    assert stats.done == 600
    assert stats.latencies.maxlen == 500
    assert len(stats.latencies) == 500
    assert min(stats.latencies) == 101.0  # the oldest were dropped
    assert stats.mean_latency == pytest.approx(350.5)
    assert stats.p95_latency == 575.0  # 101 + ceil(0.95 * 500) - 1


def test_workers_are_tracked_separately() -> None:
    tracker = ProgressTracker(total=10)
    tracker.worker("w1", "a1")
    tracker.record_done("w1", latency=2.0, now=1.0)
    tracker.record_failure("w2", now=1.0)
    assert tracker.workers["w1"].account_id == "a1"
    assert tracker.workers["w1"].success_rate == 1.0
    assert tracker.workers["w2"].success_rate == 0.0
    assert tracker.done == 1
