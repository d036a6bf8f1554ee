"""The embedded default's broker: kombu's in-memory transport, which lets a stopping worker go at once.

Celery's worker loop over a transport without an event loop of its own waits up to two seconds
for a message before it looks whether it should stop: Ctrl-C on ``manage.py up`` took three
seconds. Each wait here lasts at most DRAIN_SECONDS; the loop only waits again.
"""
from __future__ import annotations

from typing import Any

from kombu.transport import memory

DRAIN_SECONDS = 0.25


class Transport(memory.Transport):
    """kombu's memory transport (the same in-process queues) with each timed wait cut to DRAIN_SECONDS."""

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        return super().drain_events(connection, timeout=timeout if timeout is None else min(timeout, DRAIN_SECONDS))
