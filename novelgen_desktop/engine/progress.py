"""Progress, throughput, ETA and per-worker statistics, from completion events only.

Throughput is an exponentially weighted moving average of completions per second over
fixed time buckets, so a burst does not swing the ETA and an idle minute pulls it down. The
ETA is cooldown-aware: when every account is cooling down, nothing will finish before the
first reset, so that wait is added instead of pretending the queue still moves.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

_STALLED = 1e-5  # completions per second (under one a day): no honest ETA exists


@dataclass(slots=True)
class WorkerStats:
    worker_id: str
    account_id: str
    done: int = 0
    failed: int = 0
    rate_limited: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=500))

    @property
    def attempts(self) -> int:
        return self.done + self.failed

    @property
    def success_rate(self) -> float | None:
        return self.done / self.attempts if self.attempts else None

    @property
    def mean_latency(self) -> float | None:
        return sum(self.latencies) / len(self.latencies) if self.latencies else None

    @property
    def p95_latency(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    total: int
    done: int
    failed_terminal: int  # dead + refused + cancelled
    percent: float
    throughput_per_min: float
    eta_seconds: float | None
    cooling_until: float | None


class ProgressTracker:
    """Feed it completions; ask it for a :class:`ProgressSnapshot` whenever you draw."""

    def __init__(
        self, total: int, done: int = 0, *, bucket_seconds: float = 5.0, alpha: float = 0.3
    ) -> None:
        self.total = total
        self.done = done
        self.failed_terminal = 0
        self.bucket_seconds = bucket_seconds
        self.alpha = alpha
        self.workers: dict[str, WorkerStats] = {}
        self._rate: float | None = None  # completions per second (EWMA)
        self._bucket_start: float | None = None
        self._bucket_count = 0

    def worker(self, worker_id: str, account_id: str = "") -> WorkerStats:
        stats = self.workers.get(worker_id)
        if stats is None:
            stats = self.workers[worker_id] = WorkerStats(worker_id, account_id)
        return stats

    def _roll(self, now: float) -> None:
        """Close every bucket that ended before ``now``, in O(1) however long the gap."""
        if self._bucket_start is None:
            self._bucket_start = now
            return
        elapsed = int((now - self._bucket_start) // self.bucket_seconds)
        if elapsed <= 0:
            return
        observed = self._bucket_count / self.bucket_seconds
        rate = (
            observed
            if self._rate is None
            else (self.alpha * observed + (1 - self.alpha) * self._rate)
        )
        # The elapsed - 1 buckets after it were empty: each multiplies the rate by (1 - alpha).
        self._rate = rate * (1 - self.alpha) ** (elapsed - 1)
        self._bucket_count = 0
        self._bucket_start += elapsed * self.bucket_seconds

    def record_done(self, worker_id: str, latency: float, now: float) -> None:
        self._roll(now)
        self._bucket_count += 1
        self.done += 1
        stats = self.worker(worker_id)
        stats.done += 1
        stats.latencies.append(latency)

    def record_failure(self, worker_id: str, now: float, *, rate_limited: bool = False) -> None:
        self._roll(now)
        stats = self.worker(worker_id)
        if rate_limited:
            stats.rate_limited += 1
        else:
            stats.failed += 1

    def record_terminal_failure(self) -> None:
        self.failed_terminal += 1

    def rate_per_second(self, now: float) -> float:
        """The EWMA rate; before the first bucket closes, the rate of the bucket so far."""
        self._roll(now)
        if self._rate is not None:
            return self._rate
        if self._bucket_start is None:
            return 0.0
        elapsed = now - self._bucket_start
        return self._bucket_count / elapsed if elapsed > 0.5 else 0.0

    def snapshot(self, now: float, *, cooling_until: float | None = None) -> ProgressSnapshot:
        rate = self.rate_per_second(now)
        remaining = max(0, self.total - self.done - self.failed_terminal)
        eta: float | None
        if remaining == 0:
            eta = 0.0
        elif rate > _STALLED:
            eta = remaining / rate
            if cooling_until is not None and cooling_until > now:
                eta += cooling_until - now
        else:
            eta = None
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return ProgressSnapshot(
            total=self.total,
            done=self.done,
            failed_terminal=self.failed_terminal,
            percent=percent,
            throughput_per_min=rate * 60.0,
            eta_seconds=eta,
            cooling_until=cooling_until,
        )
