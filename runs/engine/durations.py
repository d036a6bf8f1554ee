"""Parse durations such as ``30s``, ``5m``, ``1h30m`` or ``7d`` into seconds."""
from __future__ import annotations

import math
import re
from datetime import timedelta

from stepwise.runs.engine.errors import StepwiseError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# The longest duration accepted: a hundred years. Longer ones (1e20, Infinity) would overflow the
# dates they are added to; no delay, TTL or timeout needs more.
MAX_SECONDS = 100 * 365 * 86400


class InvalidDuration(StepwiseError, ValueError):
    """A duration that cannot be read."""


def duration_seconds(value: str | int | float | timedelta) -> float:
    """Return a duration in seconds; accepts seconds, a timedelta, or text like ``1h30m``."""
    if isinstance(value, bool):
        raise InvalidDuration(f"not a duration: {_shown(value)}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past the float range
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise InvalidDuration(
                    f"not a duration: {_shown(value)} (use seconds or units ms, s, m, h, d, w, e.g. '1h30m')"
                )
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise InvalidDuration(f"not a duration: {_shown(value)}")
    return _bounded(seconds, value)


def _bounded(seconds: float, value: object) -> float:
    if math.isnan(seconds):
        raise InvalidDuration("not a duration: NaN")
    if seconds < 0:
        raise InvalidDuration(f"a duration cannot be negative: {_shown(value)}")
    if seconds > MAX_SECONDS:
        raise InvalidDuration(f"a duration may be at most 100 years ({MAX_SECONDS}s), got {_shown(value)}")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
