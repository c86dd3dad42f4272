"""The breaker that decides when tabs failing together call for the single-tab fallback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novelgen_desktop.engine.model import ErrorKind
from novelgen_desktop.engine.orchestration import (
    ORCHESTRATION_FAILURES,
    BreakerSettings,
    OrchestrationBreaker,
    OrchestrationTrip,
)

LOST, PAGE, TIMEOUT, EXPIRED = (
    ErrorKind.WORKER_LOST,
    ErrorKind.PAGE_ERROR,
    ErrorKind.TIMEOUT,
    ErrorKind.LEASE_EXPIRED,
)
SMALL = BreakerSettings(window=60.0, min_failures=4, min_share=0.5, min_workers=2)


def feed(
    breaker: OrchestrationBreaker, endings: list[tuple[float, str | None, ErrorKind | None]]
) -> list[OrchestrationTrip]:
    trips = []
    for at, worker, kind in endings:
        trip = breaker.record(at, worker, kind)
        if trip is not None:
            trips.append(trip)
    return trips


def test_trips_on_the_failure_that_reaches_every_threshold() -> None:
    breaker = OrchestrationBreaker(SMALL)
    endings: list[tuple[float, str | None, ErrorKind | None]] = [
        (1.0, "w1", None),
        (2.0, "w1", PAGE),
        (3.0, "w2", LOST),
        (4.0, "w3", None),
        (5.0, "w2", TIMEOUT),
    ]
    assert feed(breaker, endings) == []  # 3 failures: one short
    [trip] = feed(breaker, [(6.0, "w1", EXPIRED)])
    assert trip.failures == 4 and trip.endings == 6
    assert trip.workers == ("w1", "w2")
    assert dict(trip.kinds) == {"page_error": 1, "worker_lost": 1, "timeout": 1, "lease_expired": 1}
    assert trip.window == 60.0
    assert trip.describe() == (
        "4 of 6 attempts in the last 1 min failed on 2 tabs "
        "(page_error 1, worker_lost 1, timeout 1, lease_expired 1)"
    )
    assert len(breaker) == 0, "a trip starts the breaker over"


def test_kinds_are_listed_most_frequent_first() -> None:
    breaker = OrchestrationBreaker(SMALL)
    [trip] = feed(
        breaker, [(1.0, "w1", PAGE), (2.0, "w2", LOST), (3.0, "w1", LOST), (4, "w2", LOST)]
    )
    assert trip.kinds[0] == ("worker_lost", 3)


def test_one_failing_tab_among_healthy_ones_is_not_orchestration() -> None:
    breaker = OrchestrationBreaker(SMALL)
    assert feed(breaker, [(float(n), "w1", PAGE) for n in range(20)]) == []
    # The same failures spread over two tabs trip at once.
    [trip] = feed(breaker, [(21.0, "w2", PAGE)])
    assert trip.workers == ("w1", "w2")


def test_failures_without_a_worker_count_but_do_not_make_a_second_tab() -> None:
    breaker = OrchestrationBreaker(SMALL)
    assert feed(breaker, [(1.0, None, EXPIRED), (2.0, None, EXPIRED), (3.0, "w1", PAGE)]) == []
    [trip] = feed(breaker, [(4.0, "w2", PAGE)])
    assert trip.failures == 4 and trip.workers == ("w1", "w2")


def test_a_low_share_of_failures_does_not_trip() -> None:
    breaker = OrchestrationBreaker(SMALL)
    endings: list[tuple[float, str | None, ErrorKind | None]] = []
    for n in range(10):  # 1 failure for every 2 images: a third of the endings
        endings += [(n + 0.1, "w1", None), (n + 0.2, "w2", None), (n + 0.3, f"w{n % 2 + 1}", PAGE)]
    assert feed(breaker, endings) == []
    # Images stop coming: the share climbs past one half and it trips.
    trips = feed(breaker, [(11.0 + n, f"w{n % 2 + 1}", LOST) for n in range(12)])
    assert len(trips) == 1
    assert trips[0].failures / trips[0].endings >= 0.5


@pytest.mark.parametrize(
    "kind",
    sorted(set(ErrorKind) - ORCHESTRATION_FAILURES),
)
def test_failures_that_one_tab_would_not_fix_are_not_counted(kind: ErrorKind) -> None:
    breaker = OrchestrationBreaker(SMALL)
    assert feed(breaker, [(float(n), f"w{n % 3}", kind) for n in range(50)]) == []
    assert len(breaker) == 0


def test_the_kinds_counted() -> None:
    assert {LOST, EXPIRED, TIMEOUT, PAGE} == ORCHESTRATION_FAILURES


def test_old_failures_leave_the_window() -> None:
    breaker = OrchestrationBreaker(SMALL)
    # Three failures a minute apart never stand together in a one-minute window.
    slow = [(n * 61.0, f"w{n % 2}", PAGE) for n in range(30)]
    assert feed(breaker, slow) == []
    assert len(breaker) == 1
    # Four within the window do.
    fast = [(2000.0 + n, f"w{n % 2}", PAGE) for n in range(4)]
    assert len(feed(breaker, fast)) == 1


def test_the_window_edge_is_inclusive() -> None:
    breaker = OrchestrationBreaker(SMALL)
    feed(breaker, [(0.0, "w1", PAGE), (10.0, "w2", PAGE), (20.0, "w1", PAGE)])
    [trip] = feed(breaker, [(60.0, "w2", PAGE)])  # the first is exactly 60 s old: still in
    assert trip.failures == 4


def test_reset_forgets_everything() -> None:
    breaker = OrchestrationBreaker(SMALL)
    feed(breaker, [(1.0, "w1", PAGE), (2.0, "w2", PAGE), (3.0, "w1", PAGE)])
    breaker.reset()
    assert len(breaker) == 0
    assert feed(breaker, [(4.0, "w2", PAGE)]) == []


def test_it_trips_again_after_a_fresh_run_of_failures() -> None:
    breaker = OrchestrationBreaker(SMALL)
    trips = feed(breaker, [(float(n), f"w{n % 2}", LOST) for n in range(8)])
    assert len(trips) == 2  # the 4th and the 8th: the count starts over after a trip


def test_defaults_are_conservative() -> None:
    s = BreakerSettings()
    assert (s.window, s.min_failures, s.min_share, s.min_workers) == (600.0, 10, 0.6, 2)
    breaker = OrchestrationBreaker()
    # 9 failures on three tabs in ten minutes with nothing drawn: not yet.
    assert feed(breaker, [(n * 60.0, f"w{n % 3}", PAGE) for n in range(9)]) == []
    assert len(feed(breaker, [(540.0, "w1", PAGE)])) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window", 0.0, "window: expected seconds > 0, got 0.0"),
        ("min_failures", 0, "min_failures: expected at least 1, got 0"),
        ("min_share", 0.0, "min_share: expected a share in (0, 1], got 0.0"),
        ("min_share", 1.5, "min_share: expected a share in (0, 1], got 1.5"),
        ("min_workers", 0, "min_workers: expected at least 1, got 0"),
    ],
)
def test_bad_settings_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        BreakerSettings(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == message


def naive_trips(
    settings: BreakerSettings, endings: list[tuple[float, str | None, ErrorKind | None]]
) -> list[int]:
    """The rule read straight from the docs, recomputed from scratch at every ending."""
    window: list[tuple[float, str | None, ErrorKind | None]] = []
    trips = []
    for index, (at, worker, kind) in enumerate(endings):
        if kind is not None and kind not in ORCHESTRATION_FAILURES:
            continue
        window = [e for e in window if e[0] >= at - settings.window] + [(at, worker, kind)]
        if kind is None:
            continue
        failed = [e for e in window if e[2] is not None]
        workers = {e[1] for e in failed if e[1] is not None}
        if (
            len(failed) >= settings.min_failures
            and len(failed) >= settings.min_share * len(window)
            and len(workers) >= settings.min_workers
        ):
            trips.append(index)
            window = []
    return trips


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 30.0),
            st.sampled_from(["w1", "w2", "w3", None]),
            st.sampled_from([None, None, *ErrorKind]),
        ),
        max_size=200,
    )
)
def test_the_kept_counts_agree_with_counting_from_scratch(
    steps: list[tuple[float, str | None, ErrorKind | None]],
) -> None:
    at = 0.0
    endings = []
    for gap, worker, kind in steps:  # times only move forward, as the clock does
        at += gap
        endings.append((at, worker, kind))
    breaker = OrchestrationBreaker(SMALL)
    got = [i for i, (t, w, k) in enumerate(endings) if breaker.record(t, w, k) is not None]
    assert got == naive_trips(SMALL, endings)
