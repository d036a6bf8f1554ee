"""Wake a sleeping scheduler when a timer is set that falls due before its next pass.

The scheduler sleeps until the earliest stored timer; a retry, a delay or a wait set while
it sleeps would otherwise wait for the end of its sweep interval. Whoever sets such a timer
sends a PostgreSQL notification with its transaction (delivered on commit, never for a
rollback); the scheduler listens and shortens its sleep. Elsewhere (SQLite) nothing is sent
and the interval bounds the delay.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

TIMERS_CHANNEL = "stepwise_timers"
# Timers due later than this are left to the scheduler's own passes: it computes its sleep from
# the earliest stored timer on every pass, and sweeps at least this often unless told otherwise.
HORIZON_SECONDS = 60.0


def timer_is_soon(at: datetime | None) -> bool:
    """Tell whether a timer may fall due before a sleeping scheduler's next pass."""
    return (
        at is not None
        and connection.vendor == "postgresql"
        and (at - timezone.now()).total_seconds() < max(HORIZON_SECONDS, settings.STEPWISE_SWEEP_INTERVAL_SECONDS)
    )


def timer_notify(at: datetime | None) -> None:
    """Tell sleeping schedulers of a timer due before their next pass; sent when the caller commits."""
    if timer_is_soon(at):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [TIMERS_CHANNEL, at.isoformat()])


class TimerListener:
    """The scheduler's ear: a connection of its own that LISTENs for timers set meanwhile."""

    RECONNECT_SECONDS = 5.0

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None
        self._next_try = 0.0

    def _connected(self) -> psycopg.Connection | None:
        # Behind a transaction-pooling PgBouncer a LISTEN would stay on a server connection others then use.
        if connection.vendor != "postgresql" or not settings.STEPWISE_TIMERS_LISTEN:
            return None
        if (self._conn is None or self._conn.closed) and time.monotonic() >= self._next_try:
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params.pop("prepare_threshold", None)
            try:
                self._conn = psycopg.connect(**params, autocommit=True)
                self._conn.execute(f"LISTEN {TIMERS_CHANNEL}")
            except psycopg.Error as exc:
                logger.warning("scheduler: cannot listen for new timers (%s); sweeping on the interval", exc)
                self._conn = None
                self._next_try = time.monotonic() + self.RECONNECT_SECONDS
        return self._conn

    def wait(self, timeout: float) -> datetime | None:
        """Wait up to ``timeout`` seconds; return the earliest timer notified meanwhile, or None."""
        conn = self._connected()
        if conn is None:
            time.sleep(timeout)
            return None
        earliest = None
        try:
            for notify in conn.notifies(timeout=timeout, stop_after=1):
                at = datetime.fromisoformat(notify.payload)
                earliest = at if earliest is None else min(earliest, at)
        except (psycopg.Error, OSError, ValueError) as exc:
            logger.warning("scheduler: lost the timer notifications (%s); listening again", exc)
            self.close()
        return earliest

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
