"""One run's events in seq order, with no gap and no duplicate: the stored ones first, then live ones.

The websocket consumer and the server-sent events stream both deliver through a RunEventFeed.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async

from stepwise.runs.selectors import run_events_after

PAGE = 500


@database_sync_to_async
def events_after(run_id: str, after: int, upto: int | None = None) -> list[dict[str, Any]]:
    """Return up to a page of a run's stored events after seq ``after`` (and up to ``upto``), as messages."""
    events = run_events_after(run_id=run_id, after=after, limit=PAGE)
    return [e.as_message() for e in events if upto is None or e.seq <= upto]


class RunEventFeed:
    """Orders one run's events for one subscriber; ``last_seq`` is the last one handed out."""

    def __init__(self, run_id: str, after: int = 0) -> None:
        self.run_id = run_id
        self.last_seq = after

    async def stored(self, *, upto: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield stored events after the last one handed out, up to ``upto`` (all if None)."""
        while True:
            events = await events_after(self.run_id, self.last_seq, upto)
            for event in events:
                self.last_seq = event["seq"]
                yield event
            if len(events) < PAGE:
                return

    async def live(self, event: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield a live event, the stored ones it skipped first; a copy already handed out yields nothing."""
        if event.get("transient"):  # live only (a step started): never stored, so no seq to check
            yield event
            return
        seq = event["seq"]
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            async for missed in self.stored(upto=seq - 1):
                yield missed
        if seq == self.last_seq + 1:
            self.last_seq = seq
            yield event
