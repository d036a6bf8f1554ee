"""Where chaos tasks note what really ran: step executions and their intervals, kept in Redis.

The records live outside PostgreSQL (which a scenario takes away) and outside the broker (which
another scenario kills): in the Redis that ``STEPWISE_CHAOS_RECORDS_URL`` names.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import cache

import redis

RECORDS_URL_VARIABLE = "STEPWISE_CHAOS_RECORDS_URL"
_PREFIX = "stepwise-chaos"
_TTL_SECONDS = 6 * 3600


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get(RECORDS_URL_VARIABLE) or os.environ.get("REDIS_URL") or "redis://")


def _executions_key(session: str) -> str:
    return f"{_PREFIX}:{session}:executions"


def execution_note(session: str, *, run_id: str, key: str, attempt: int, began: float, ended: float) -> None:
    """Note that a step body ran to its end in ``attempt``, from ``began`` to ``ended`` (epoch seconds)."""
    client = _client()
    client.rpush(_executions_key(session), f"{run_id} {key} {attempt} {began!r} {ended!r}")
    client.expire(_executions_key(session), _TTL_SECONDS)


@dataclass(frozen=True)
class Execution:
    """One step body that ran: its run, step key, attempt and interval (epoch seconds)."""

    run_id: str
    key: str
    attempt: int
    began: float
    ended: float


def executions(session: str) -> list[Execution]:
    """Return every step execution noted in a session."""
    rows = []
    for raw in _client().lrange(_executions_key(session), 0, -1):
        run_id, key, attempt, began, ended = raw.decode().split(" ")
        rows.append(Execution(run_id, key, int(attempt), float(began), float(ended)))
    return rows


def executions_forget(session: str) -> None:
    """Delete a session's records."""
    _client().delete(_executions_key(session))


def executions_by_step(rows: list[Execution]) -> dict[tuple[str, str], list[Execution]]:
    """Group executions by (run id, step key)."""
    grouped: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for row in rows:
        grouped[(row.run_id, row.key)].append(row)
    return grouped


def max_overlap(rows: list[Execution]) -> int:
    """Return the largest number of distinct runs whose step bodies ran at the same moment."""
    edges = sorted([(row.began, 1, row.run_id) for row in rows] + [(row.ended, -1, row.run_id) for row in rows],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    running: dict[str, int] = defaultdict(int)
    best = 0
    for _, delta, run_id in edges:
        running[run_id] += delta
        if running[run_id] <= 0:
            del running[run_id]
        best = max(best, len(running))
    return best


def now() -> float:
    """Return the wall-clock time the records use."""
    return time.time()
