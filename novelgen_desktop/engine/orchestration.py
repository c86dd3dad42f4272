"""When several tabs at once keep failing, fall back to one tab by itself.

The requirements' contingency plan is "fallback to single-tab mode if orchestration fails".
The ``multi_tab`` kill switch is that fallback; this module decides when to throw it without
the author, who is asleep while a long job runs. A breaker that watches the attempts' endings:

* Only failures that speak of the tabs themselves count: a tab that vanished or crashed
  (``worker_lost``), one that stopped answering (``lease_expired``, ``timeout``) or whose page
  went wrong (``page_error``). A refusal, a rate limit, an expired login or a network outage
  says nothing about running tabs side by side, and one tab would not fix it; they are not
  counted at all. A finished image counts as a success.
* It trips when, within ``window`` seconds, at least ``min_failures`` such failures happened,
  they are at least ``min_share`` of the counted endings, and they came from at least
  ``min_workers`` different tabs: one bad tab is the health monitor's business, several
  failing together is orchestration's.
* Once tripped it starts over empty; the caller keeps it quiet while multi_tab is off.

Pure: no clock, no I/O. The runner feeds it and acts on a trip (:mod:`.runner`).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from novelgen_desktop.engine.model import ErrorKind

ORCHESTRATION_FAILURES = frozenset(
    {ErrorKind.WORKER_LOST, ErrorKind.LEASE_EXPIRED, ErrorKind.TIMEOUT, ErrorKind.PAGE_ERROR}
)

# What the log says when no one who owns the flags is listening (a runner in a test or a
# benchmark): the breaker tripped, and nothing changes.
NOTHING_SWITCHES = "nothing here switches the flags: the tabs go on"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    window: float = 600.0  # seconds of history looked at
    min_failures: int = 10
    min_share: float = 0.6  # of the counted endings in the window
    min_workers: int = 2  # different tabs among the failures

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError(f"window: expected seconds > 0, got {self.window}")
        if self.min_failures < 1:
            raise ValueError(f"min_failures: expected at least 1, got {self.min_failures}")
        if not 0.0 < self.min_share <= 1.0:
            raise ValueError(f"min_share: expected a share in (0, 1], got {self.min_share}")
        if self.min_workers < 1:
            raise ValueError(f"min_workers: expected at least 1, got {self.min_workers}")


@dataclass(frozen=True, slots=True)
class OrchestrationTrip:
    """What the breaker saw when it tripped: the figures the author is told."""

    failures: int
    endings: int  # failures + images within the window
    workers: tuple[str, ...]  # the tabs that failed, sorted
    kinds: tuple[tuple[str, int], ...]  # (error kind, count), most frequent first
    window: float

    def describe(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.kinds)
        minutes = self.window / 60
        span = f"{minutes:g} min" if minutes >= 1 else f"{self.window:g} s"
        return (
            f"{self.failures} of {self.endings} attempts in the last {span} failed on "
            f"{len(self.workers)} tabs ({kinds})"
        )


@dataclass(frozen=True, slots=True)
class _Ending:
    at: float
    worker_id: str | None
    kind: ErrorKind | None  # None: an image


class OrchestrationBreaker:
    """Feed it every attempt's ending (:meth:`record`); it answers with a trip when due.

    The counts are kept as endings enter and leave the window, so a decision costs the same
    whether the window holds ten endings or the hundreds of thousands of a load test."""

    def __init__(self, settings: BreakerSettings | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self._endings: deque[_Ending] = deque()
        # The failures in the window by kind and by tab (entries at zero are dropped).
        self._kinds: Counter[str] = Counter()
        self._failing_workers: Counter[str] = Counter()

    def reset(self) -> None:
        self._endings.clear()
        self._kinds.clear()
        self._failing_workers.clear()

    def __len__(self) -> int:
        return len(self._endings)

    def record(
        self, now: float, worker_id: str | None, kind: ErrorKind | None
    ) -> OrchestrationTrip | None:
        """An attempt ended at ``now``: with an image (``kind`` None) or with ``kind``."""
        if kind is not None and kind not in ORCHESTRATION_FAILURES:
            return None
        self._forget_before(now - self.settings.window)
        ending = _Ending(now, worker_id, kind)
        self._endings.append(ending)
        if kind is None:
            return None
        self._count(ending, +1)
        trip = self._check()
        if trip is not None:
            self.reset()
        return trip

    def _count(self, ending: _Ending, step: int) -> None:
        _step(self._kinds, str(ending.kind), step)
        if ending.worker_id is not None:
            _step(self._failing_workers, ending.worker_id, step)

    def _forget_before(self, horizon: float) -> None:
        while self._endings and self._endings[0].at < horizon:
            gone = self._endings.popleft()
            if gone.kind is not None:
                self._count(gone, -1)

    def _check(self) -> OrchestrationTrip | None:
        s = self.settings
        failures = self._kinds.total()
        if failures < s.min_failures:
            return None
        if failures < s.min_share * len(self._endings):
            return None
        if len(self._failing_workers) < s.min_workers:
            return None
        return OrchestrationTrip(
            failures=failures,
            endings=len(self._endings),
            workers=tuple(sorted(self._failing_workers)),
            kinds=tuple(self._kinds.most_common()),
            window=s.window,
        )


def _step(counts: Counter[str], key: str, step: int) -> None:
    counts[key] += step
    if counts[key] == 0:
        del counts[key]


__all__ = [
    "NOTHING_SWITCHES",
    "ORCHESTRATION_FAILURES",
    "BreakerSettings",
    "OrchestrationBreaker",
    "OrchestrationTrip",
]
