"""Seed many runs at once with PostgreSQL COPY, each marked, and delete them again by that mark."""
from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.db import models
from django.utils import timezone
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from runs.models import Run
from runs.services import TriggerOptions, run_trigger

# Seeded runs carry {SEED_MARKER_KEY: <marker>} in their metadata: one DELETE finds them all, and only them.
SEED_MARKER_KEY = "stepwise_bench_seed"
TAG_POOL = tuple(f"customer-{i:02d}" for i in range(50)) + ("region-eu", "region-us", "region-ap")
# About 2 % of the seeded runs carry it: the tag the runs-list bench filters on.
LISTED_TAG = "customer-07"
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # the alphabet of runs.ids, lower case
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # ten bits -> two characters
_ID_SHIFTS = tuple(range(120, -1, -10))  # 48 bits of milliseconds then 80 random bits, ten at a time


class SeedingUnsupported(RuntimeError):
    """The runs table has a column the seeder cannot fill."""


@dataclass(frozen=True)
class SeedTask:
    """The rows a seeded run points at: those of a run triggered the normal way."""

    task_id: str
    version_id: int
    environment_id: str
    queue: str


@dataclass(frozen=True)
class SeedPlan:
    """What to seed: how many runs, of which tasks, in which statuses (weights), created over which span."""

    count: int
    tasks: tuple[SeedTask, ...]
    statuses: dict[str, float]
    spread: timedelta
    marker: str
    tagged: bool = False


# Per status: (started after creation, finished after creation, attempts, error) of a typical seeded run.
_STATUS_SHAPES: dict[str, tuple[timedelta | None, timedelta | None, int, str | None]] = {
    "COMPLETED": (timedelta(milliseconds=20), timedelta(seconds=1), 1, None),
    "FAILED": (timedelta(milliseconds=20), timedelta(seconds=30), 3, '{"type": "BenchSeed", "message": "seeded"}'),
    "CANCELED": (timedelta(milliseconds=20), timedelta(seconds=5), 1, None),
    "TIMED_OUT": (timedelta(milliseconds=20), timedelta(minutes=5), 1, '{"type": "TimedOut", "message": "seeded"}'),
    "CRASHED": (timedelta(milliseconds=20), timedelta(minutes=2), 5, '{"type": "Crashed", "message": "seeded"}'),
    "EXPIRED": (None, timedelta(hours=1), 0, None),
    "WAITING": (timedelta(milliseconds=20), None, 1, None),
}


def seed_task_ensure(task_id: str) -> SeedTask:
    """Trigger one run of a task (delayed, never executed) so its rows exist; delete it and return them."""
    run, _ = run_trigger(task_id=task_id, payload={}, options=TriggerOptions(delay=86400))
    seed_task = SeedTask(run.task_id, run.version_id, run.environment_id, run.queue)
    Run.objects.filter(id=run.id).delete()
    return seed_task


@dataclass(frozen=True)
class SeedTiming:
    """Seconds a seeding or a delete took, and whether foreign-key triggers ran during it."""

    seconds: float
    fk_checked: bool


def runs_seed(plan: SeedPlan, *, conninfo: str, connections: int | None = None) -> SeedTiming:
    """COPY the plan's runs into the runs table, split by creation time over ``connections`` connections."""
    # Half the cores: this process builds the rows on the other half. On two cores a second
    # connection gains nothing, its backend contending for the same index pages.
    connections = connections or max(1, min(4, (os.cpu_count() or 2) // 2))
    columns, template = _columns_and_template(plan.marker)
    step = -(-plan.count // connections)
    chunks = [(first, min(plan.count, first + step)) for first in range(0, plan.count, step)]
    started = time.perf_counter()
    # Index upkeep is PostgreSQL's work: one backend per slice of time keeps every core busy.
    with ThreadPoolExecutor(len(chunks), thread_name_prefix="bench-seed") as pool:
        checked = list(pool.map(lambda chunk: _copy(plan, columns, template, chunk, conninfo), chunks))
    return SeedTiming(time.perf_counter() - started, all(checked))


def _copy(plan: SeedPlan, columns: list[str], template: list[Any], chunk: tuple[int, int], conninfo: str) -> bool:
    """COPY one slice of the plan's rows in one transaction; return whether foreign keys were checked."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(Run._meta.db_table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with psycopg.connect(conninfo, application_name="stepwise bench seeding") as conn:
        checked = not _foreign_key_triggers_off(conn)
        with conn.cursor() as cursor:
            # The queued writer sends from its own thread, so building rows and sending them overlap.
            with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
                for row in _rows(plan, columns, template, *chunk):
                    copy.write_row(row)
        conn.commit()
    return checked


def seeded_delete(*, conninfo: str, marker: str) -> tuple[int, SeedTiming]:
    """Delete the runs seeded with ``marker``; return how many, and how long it took."""
    statement = sql.SQL("DELETE FROM {} WHERE metadata @> %s::jsonb").format(sql.Identifier(Run._meta.db_table))
    started = time.perf_counter()
    with psycopg.connect(conninfo, application_name="stepwise bench seeding") as conn:
        checked = not _foreign_key_triggers_off(conn)
        deleted = conn.execute(statement, (json.dumps({SEED_MARKER_KEY: marker}),)).rowcount
        conn.commit()
    return deleted, SeedTiming(time.perf_counter() - started, checked)


def _foreign_key_triggers_off(conn: psycopg.Connection) -> bool:
    """Skip foreign-key triggers in this session if the role may; return whether they are off.

    Seeded runs point at task, version and environment rows that exist (a real trigger made them),
    and nothing refers to them: no worker claims a final run or a WAITING one without waitpoints.
    Checking a million such references would double the seeding time and make the delete minutes long.
    """
    try:
        conn.execute("SET session_replication_role = replica")
        return True
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        return False


def runs_vacuum(*, conninfo: str) -> float:
    """VACUUM and ANALYZE the runs table, so the next phase (or bench) does not pay for the seeded rows."""
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(Run._meta.db_table)))
    return time.perf_counter() - started


def runs_analyze(*, conninfo: str) -> None:
    """Refresh the planner's statistics of the runs table, as autovacuum would after a while."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(Run._meta.db_table)))


def _columns_and_template(marker: str) -> tuple[list[str], list[Any]]:
    """Return every column of the runs table and a row of their defaults; raise SeedingUnsupported."""
    columns, template = [], []
    for field in Run._meta.concrete_fields:
        columns.append(field.column)
        template.append(_default(field, marker))
    return columns, template


# Filled per row by _rows; every other column takes its model default.
_PER_ROW = {"id", "task_id", "version_id", "environment_id", "status", "queue", "tags", "error", "attempt_count",
            "created_at", "updated_at", "started_at", "finished_at"}


def _default(field: models.Field, marker: str) -> Any:
    if field.column == "metadata":
        return json.dumps({SEED_MARKER_KEY: marker})
    if field.column in _PER_ROW:
        return None
    if not field.has_default():
        if field.null:
            return None
        raise SeedingUnsupported(f"{Run._meta.db_table}.{field.column} is NOT NULL without a default")
    value = field.get_default()
    return json.dumps(value) if isinstance(field, models.JSONField) else value


def _run_id(millis: int) -> str:
    """Return a time-ordered run id for a creation time, in the format of the platform's own ids."""
    value = (millis << 80) | random.getrandbits(80)
    return "run_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _ID_SHIFTS])


def _tag_sets(count: int) -> list[str]:
    """Return ``count`` JSON tag lists: none, one or two customers, sometimes a region."""
    sets = []
    for _ in range(count):
        tags = random.sample(TAG_POOL[:50], k=random.choice((0, 0, 1, 1, 2)))
        if random.random() < 0.3:
            tags.append(random.choice(TAG_POOL[50:]))
        sets.append(json.dumps(tags))
    return sets


def _rows(plan: SeedPlan, columns: list[str], template: list[Any], first: int, stop: int) -> Iterator[list[Any]]:
    """Yield rows ``first`` to ``stop`` of the plan oldest first, as a real table fills: ids follow creation times."""
    at = {column: index for index, column in enumerate(columns)}
    statuses = random.choices(list(plan.statuses), weights=list(plan.statuses.values()), k=stop - first)
    tasks = random.choices(plan.tasks, k=stop - first)
    tags = _tag_sets(4096) if plan.tagged else ["[]"]
    spread_ms = plan.spread.total_seconds() * 1000
    first_ms = int(timezone.now().timestamp() * 1000 - spread_ms)
    for index in range(stop - first):
        millis = first_ms + int((first + index) * spread_ms / plan.count)
        created = datetime.fromtimestamp(millis / 1000, tz=UTC)
        started_after, finished_after, attempts, error = _STATUS_SHAPES[statuses[index]]
        started = created + started_after if started_after is not None else None
        finished = created + finished_after if finished_after is not None else None
        seed_task = tasks[index]
        row = template.copy()
        row[at["id"]] = _run_id(millis)
        row[at["task_id"]] = seed_task.task_id
        row[at["version_id"]] = seed_task.version_id
        row[at["environment_id"]] = seed_task.environment_id
        row[at["queue"]] = seed_task.queue
        row[at["status"]] = statuses[index]
        row[at["tags"]] = tags[index & 4095] if plan.tagged else "[]"
        row[at["error"]] = error
        row[at["attempt_count"]] = attempts
        row[at["created_at"]] = created
        row[at["started_at"]] = started
        row[at["finished_at"]] = finished
        row[at["updated_at"]] = finished or started or created
        yield row
