"""Reading the reset time out of a rate-limit message.

ChatGPT words it in many ways ("Your limit resets in 23 minutes", "try again in 1 hour and 5
minutes", "resets in 45s", "You can generate more images at 3:45 PM"). The account must rest
until then, no longer (lost throughput) and no shorter (more refusals, risk to the account).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_DURATION = re.compile(
    r"(\d+(?:[.,]\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)(?![a-z])",
    re.IGNORECASE,
)
# A clock time needs minutes or am/pm, so "by 2 requests" is not read as two o'clock.
_AT_TIME = re.compile(
    r"\b(?:at|after|until|by)\s+(\d{1,2})(?:(?::(\d{2}))\s*([ap]\.?m\.?)?|\s*([ap]\.?m\.?))",
    re.IGNORECASE,
)


def parse_reset_after(message: str, *, now: datetime | None = None) -> float | None:
    """Seconds until the limit resets, or None when the message names no time.

    Durations after "in"/"resets"/"again" are summed ("1 hour and 5 minutes" → 3900 s).
    A clock time ("at 3:45 PM", "at 15:45") is taken as the next such moment in local time.
    """
    lowered = message.lower()
    anchor = max(lowered.rfind(" in "), lowered.rfind("resets"), lowered.rfind("again"))
    tail = message[anchor:] if anchor >= 0 else message
    total = 0.0
    found = False
    for number, unit in _DURATION.findall(tail):
        total += float(number.replace(",", ".")) * _UNITS[unit.lower()]
        found = True
    if found:
        return total
    match = _AT_TIME.search(message)
    if match:
        hour = int(match.group(1))
        minute = int(match.group(2) or 0)
        meridiem = (match.group(3) or match.group(4) or "").replace(".", "").lower()
        if meridiem == "pm" and hour < 12:
            hour += 12
        elif meridiem == "am" and hour == 12:
            hour = 0
        if hour > 23 or minute > 59:
            return None
        current = now or datetime.now()
        target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= current:
            target += timedelta(days=1)
        return (target - current).total_seconds()
    return None
