"""Durations as people write them in policy files and settings: ``90s``, ``15m``, ``4h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils.translation import pgettext

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d{1,7})([smhd])")
_WHOLE = re.compile(r"(?:\d{1,7}[smhd])+")

# Nothing in the broker is sensibly longer than a year; bounding it keeps datetime arithmetic safe.
MAX_DURATION = timedelta(days=366)


def parse_duration(text: str) -> timedelta:
    """Parse ``4h`` or ``1h30m``; raise ValueError with a readable message otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as 30m or 4h, got {text!r}")
    compact = text.strip().lower()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"expected a duration such as 30m, 4h or 1h30m (units s, m, h, d), got {text!r}")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {text!r}")
    value = timedelta(seconds=seconds)
    if value > MAX_DURATION:
        raise ValueError(f"a duration may not exceed 366d, got {text!r}")
    return value


def format_duration(value: timedelta | None) -> str:
    """The shortest exact spelling: ``1h30m``, ``45s``, ``2d``."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def day_unit() -> str:
    """The abbreviation of days in the active language ("d"; "Tg." in German)."""
    return pgettext("abbreviation of days in a duration", "d")


def humanize_duration(value: timedelta | None) -> str:
    """For people: ``1 h 30 min`` (the day unit in the active language)."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    names = ((day_unit(), 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts = []
    for unit, size in names:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2]) or "0 s"
