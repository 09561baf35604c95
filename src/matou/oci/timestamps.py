"""RFC 3339 timestamps with nanoseconds, as Docker and the OCI state write them
(``2026-11-29T13:30:24.460313558Z``), their parsing, and durations as Docker shows them."""

from __future__ import annotations

import time

_LAYOUT = "%Y-%m-%dT%H:%M:%S"


def format(t: float | None = None) -> str:
    """``t`` (seconds since the epoch; now by default) in UTC, nanosecond digits."""
    t = time.time() if t is None else t
    return time.strftime(_LAYOUT, time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def parse(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC timestamp; None if it is not one."""
    import calendar  # not needed on the runtime's start path, which only formats

    try:
        base = calendar.timegm(time.strptime(text[:19], _LAYOUT))
    except ValueError:
        return None
    frac = text[19:].rstrip("Z")
    if frac.startswith("."):
        try:
            return base + float(frac)
        except ValueError:
            return float(base)
    return float(base)


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration, as `docker ps` shows ages."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{s // 3600 // 24 // 365} years"
