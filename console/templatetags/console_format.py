"""Template filters of the console: durations and pretty JSON."""
from __future__ import annotations

import json
from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def seconds_human(seconds: float | None) -> str:
    """Format seconds as 850ms, 4.2s, 3m 05s or 2h 03m."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def duration_between(start: datetime | None, end: datetime | None) -> str:
    """Format the time from start to end."""
    if start is None or end is None:
        return "—"
    return seconds_human((end - start).total_seconds())


@register.filter
def percent(value: float | None) -> str:
    """Format a ratio as a percentage."""
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def pretty_json(value: object) -> str:
    """Format a value as indented JSON."""
    return json.dumps(value, indent=2)


@register.filter
def time_ago(moment: datetime | None) -> str:
    """Format a past moment as 'just now' or '5 minutes ago'."""
    if moment is None:
        return "—"
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, depth=1)} ago"


@register.filter
def schedule_of(tags: list[str] | None) -> str:
    """Return the id of the schedule that triggered a run (its ``schedule:<id>`` tag), or ''."""
    for tag in tags or []:
        if isinstance(tag, str) and tag.startswith("schedule:"):
            return tag.removeprefix("schedule:")
    return ""


@register.filter
def pretty_json_inline(value: object) -> str:
    """Format a value as JSON on one line."""
    return json.dumps(value)
