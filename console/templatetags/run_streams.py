"""The run page's streams card: what a run sent with ``ctx.stream`` / ``ctx.stream_append``."""
from __future__ import annotations

import json
from typing import Any

from django import template

from stepwise.runs.models import Run
from stepwise.runs.selectors import run_streams

register = template.Library()


@register.simple_tag
def streams_of(run: Run, hidden: bool = False) -> list[dict[str, Any]]:
    """Return the run's streams with their chunks (the newest attempt's of each call), hidden from a viewer if so."""
    return run_streams(run_id=run.id, hidden=hidden)


@register.filter
def chunk_text(chunk: Any) -> str:
    """Show a text chunk as it is, and any other JSON on a line of its own."""
    return chunk if isinstance(chunk, str) else json.dumps(chunk) + "\n"
