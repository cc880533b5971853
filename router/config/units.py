"""Durations and money, parsed once when a route file is compiled."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_MONEY = re.compile(r"^\s*\$?\s*(\d+(?:\.\d+)?|\.\d+)\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

DURATION_PATTERN = _DURATION.pattern
MONEY_PATTERN = _MONEY.pattern


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``500ms``, ``5s``, ``2m``, ``1h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 500ms, 5s, 2m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not a duration: write 500ms, 5s, 2m, 1h or a number")
    return float(m.group(1)) * _SCALE[m.group(2)]


def parse_money(value: str | float | int) -> float:
    """US dollars from ``5``, ``0.25`` or ``"$5"``."""
    if isinstance(value, bool):
        raise ValueError("an amount of money is a number of US dollars")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("an amount of money cannot be negative")
        return float(value)
    m = _MONEY.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not an amount of US dollars: write 5 or 0.25")
    return float(m.group(1))


def format_duration(seconds: float) -> str:
    """A short human form: 250ms, 1.5s, 2m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.3g}s"
    return f"{seconds / 60:.3g}m"
