"""Reading reset times out of rate-limit messages (``parse_reset_after``).

Every expected value is worked out by hand from the wording; clock-time cases use a fixed
``now`` so that they do not depend on when the suite runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novelgen_desktop.engine.ratelimit import parse_reset_after
from novelgen_desktop.sim.worker import rate_limit_message

# A fixed afternoon: 14:00:00 on 1 March 2026.
NOW = datetime(2026, 3, 1, 14, 0, 0)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("resets in 23 minutes", 23 * 60),
        ("Your limit resets in 23 minutes.", 23 * 60),
        ("in 1 hour and 5 minutes", 3600 + 5 * 60),
        ("Please try again in 1 hour and 5 minutes.", 3600 + 5 * 60),
        ("45s", 45),
        ("resets in 45s", 45),
        ("2h 30m", 2 * 3600 + 30 * 60),
        ("1.5 hours", 5400),
        ("resets in 1,5 hours", 5400),  # decimal comma
        ("try again in 10 seconds", 10),
        ("Try again in 2 mins.", 120),
        ("Resets in 2 hrs", 7200),
        ("resets in 1 day", 86400),
        ("come back in 5 min", 300),
        ("in 45 s", 45),
        ("RESETS IN 3 MINUTES", 180),
        (
            "You can create more images when the limit resets in 12 minutes and 30 seconds.",
            12 * 60 + 30,
        ),
        (
            "You've hit the plus plan limit for image generation requests. "
            "You can create more images when the limit resets in 4 minutes.",
            240,
        ),
        # Numbers before the anchor ("50 images in 3 hours") are not the reset time.
        ("A limit of 50 images in 3 hours was reached. Resets in 2 hours", 7200),
        # A duration wins over a clock time named after it.
        ("Your limit resets in 23 minutes (at 3:45 PM)", 23 * 60),
    ],
)
def test_durations(message: str, expected: float) -> None:
    assert parse_reset_after(message, now=NOW) == pytest.approx(expected)


def test_compact_hours_and_minutes_are_summed() -> None:
    # "1h30m" is the compact form of "1 hour 30 minutes". Reading only "30m" would rest the
    # account an hour too short, which is exactly what the module promises not to do.
    assert parse_reset_after("Limit reached, resets in 1h30m", now=NOW) == pytest.approx(5400)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("You can generate more images at 3:45 PM", timedelta(hours=1, minutes=45)),
        ("at 3:45 PM", timedelta(hours=1, minutes=45)),
        ("at 3:45 pm", timedelta(hours=1, minutes=45)),
        ("at 3:45 p.m.", timedelta(hours=1, minutes=45)),
        ("at 15:45", timedelta(hours=1, minutes=45)),
        ("Try again at 4 PM", timedelta(hours=2)),
        # Already past today: the next such moment is tomorrow.
        ("at 12 am", timedelta(hours=10)),  # midnight
        ("at 12 pm", timedelta(hours=22)),  # noon has passed at 14:00
        ("Try again at 9:05 AM.", timedelta(hours=19, minutes=5)),
        ("at 1:30 PM", timedelta(hours=23, minutes=30)),
        # Exactly now is not in the future: a full day.
        ("at 2:00 PM", timedelta(days=1)),
    ],
)
def test_clock_times(message: str, expected: timedelta) -> None:
    assert parse_reset_after(message, now=NOW) == pytest.approx(expected.total_seconds())


@pytest.mark.parametrize(
    ("now", "message", "expected"),
    [
        (datetime(2026, 3, 1, 23, 50), "at 12:10 AM", timedelta(minutes=20)),
        (datetime(2026, 3, 1, 23, 50), "at 00:05", timedelta(minutes=15)),
        (datetime(2026, 3, 1, 23, 50), "at 1 am", timedelta(hours=1, minutes=10)),
        (datetime(2026, 3, 1, 23, 59, 30), "at 12 am", timedelta(seconds=30)),
        # Crossing midnight at the end of a month and of a year.
        (datetime(2026, 2, 28, 22, 0), "at 2:00 AM", timedelta(hours=4)),
        (datetime(2026, 12, 31, 23, 0), "at 0:30", timedelta(hours=1, minutes=30)),
    ],
)
def test_clock_times_crossing_midnight(now: datetime, message: str, expected: timedelta) -> None:
    assert parse_reset_after(message, now=now) == pytest.approx(expected.total_seconds())


def test_try_again_after_clock_time() -> None:
    # ChatGPT's usage-cap wording ("You've reached the current usage cap for GPT-4, please
    # try again after 6:25 PM") names a time; returning None would fall back to the default
    # cooldown, hours away from the announced reset.
    message = "You've reached the current usage cap, please try again after 6:25 PM"
    assert parse_reset_after(message, now=NOW) == pytest.approx(4 * 3600 + 25 * 60)


def test_clock_time_uses_the_current_time_by_default() -> None:
    value = parse_reset_after("try again at 3:45 PM")
    assert value is not None
    assert 0 < value <= 86400


@pytest.mark.parametrize(
    "message",
    [
        "",
        "hello",
        "Please try again later.",
        "You have 3 images left",
        "Something went wrong while generating the response.",
        "You've hit the plus plan limit for image generation requests.",
        "at 24:00",  # not a clock time
        "at 7:75 pm",
        "at 25 pm",
    ],
)
def test_messages_without_a_time(message: str) -> None:
    assert parse_reset_after(message, now=NOW) is None


@pytest.mark.parametrize("seconds", [1, 2, 30, 59, 90, 119, 120, 600, 900, 3600, 7200])
def test_simulated_wording_round_trips(seconds: float) -> None:
    value = parse_reset_after(rate_limit_message(seconds), now=NOW)
    assert value == pytest.approx(seconds)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(message: str) -> None:
    value = parse_reset_after(message, now=NOW)
    assert value is None or value >= 0


_WORDS = st.sampled_from(
    [" in ", " at ", "resets", "again", "try", " ", ":", ".", ",", "pm", "am", "p.m.",
     "h", "m", "s", "hours", "minutes", "seconds", "day", "and", "12", "0", "99", "1.5", "7"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=20).map("".join))
def test_never_raises_on_near_miss_wordings(message: str) -> None:
    value = parse_reset_after(message, now=NOW)
    assert value is None or value >= 0


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 30)),
)
def test_clock_time_is_the_next_such_moment(hour: int, minute: int, now: datetime) -> None:
    value = parse_reset_after(f"try again at {hour}:{minute:02d}", now=now)
    assert value is not None
    assert 0 < value <= 86400
    reached = now + timedelta(seconds=value)
    assert (reached.hour, reached.minute, reached.second) == (hour, minute, 0)
