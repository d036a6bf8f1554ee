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

from stepwise.runs.models import Attempt, Run, RunEvent, Step

try:
    from stepwise.runs.triggers import TriggerOptions, run_trigger
except ImportError:  # an older tree kept triggers with the other run services
    from stepwise.runs.services import TriggerOptions, run_trigger

# Seeded runs carry {SEED_MARKER_KEY: <marker>} in their metadata: one DELETE finds them all, and only them.
SEED_MARKER_KEY = "stepwise_bench_seed"
# What run_details_seed gives each started run, beside its attempt.
DETAIL_STEPS = 3
DETAIL_EVENTS = 6
TAG_POOL = tuple(f"customer-{i:02d}" for i in range(50)) + ("region-eu", "region-us", "region-ap")
# About 1.5 % of the tagged seeded runs carry it: the tag the runs-list bench filters on.
LISTED_TAG = "customer-07"
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # the alphabet of stepwise.runs.ids, lower case
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
    # Each run that started also gets what a finished three-step run leaves: an attempt, its steps and events.
    details: bool = False


# Per status: (started, finished) in ms after creation (None: never), attempts, and the error (JSON).
_STATUS_SHAPES: dict[str, tuple[int | None, int | None, int, str | None]] = {
    "COMPLETED": (20, 1_000, 1, None),
    "FAILED": (20, 30_000, 3, '{"type": "BenchSeed", "message": "seeded"}'),
    "CANCELED": (20, 5_000, 1, None),
    "TIMED_OUT": (20, 300_000, 1, '{"type": "TimedOut", "message": "seeded"}'),
    "CRASHED": (20, 120_000, 5, '{"type": "Crashed", "message": "seeded"}'),
    "EXPIRED": (None, 3_600_000, 0, None),
    "WAITING": (20, None, 1, None),
}
# Filled per row, first in every COPY line; every other column takes its model default.
_PER_ROW = ("id", "task_id", "version_id", "environment_id", "queue", "status", "tags", "error", "attempt_count",
            "created_at", "started_at", "finished_at", "updated_at")
_NULL = "\\N"


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
    columns, constant = _constant_columns(plan.marker)
    step = -(-plan.count // connections)
    chunks = [(first, min(plan.count, first + step)) for first in range(0, plan.count, step)]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(chunks), thread_name_prefix="bench-seed") as pool:
        checked = list(pool.map(lambda chunk: _copy(plan, [*_PER_ROW, *columns], constant, chunk, conninfo), chunks))
    return SeedTiming(time.perf_counter() - started, all(checked))


def _copy(plan: SeedPlan, columns: list[str], constant: str, chunk: tuple[int, int], conninfo: str) -> bool:
    """COPY one slice of the plan's rows in one transaction; return whether foreign keys were checked."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(Run._meta.db_table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with psycopg.connect(conninfo, application_name="stepwise bench seeding") as conn:
        checked = not _foreign_key_triggers_off(conn)
        with conn.cursor() as cursor:
            # The queued writer sends from its own thread, so building lines and sending them overlap.
            with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
                for block in _lines(plan, constant, *chunk):
                    copy.write(block)
        conn.commit()
    return checked


def run_details_seed(plan: SeedPlan, *, conninfo: str) -> SeedTiming:
    """Give every started run of the plan an attempt, DETAIL_STEPS steps and DETAIL_EVENTS events, built in SQL."""
    marker = json.dumps({SEED_MARKER_KEY: plan.marker})

    def seeded(join: str = "") -> sql.Composed:
        return sql.SQL("FROM {} r {} WHERE r.metadata @> %(marker)s::jsonb AND r.started_at IS NOT NULL").format(
            sql.Identifier(Run._meta.db_table), sql.SQL(join))

    statements = [
        sql.SQL("INSERT INTO {} (run_id, number, status, worker_id, lease_token, started_at, finished_at, version_id) "
                "SELECT r.id, 1, CASE WHEN r.status = 'COMPLETED' THEN 'COMPLETED' ELSE 'FAILED' END, "
                "'bench-seed', 'bench-seed', r.started_at, coalesce(r.finished_at, r.started_at), r.version_id {}"
                ).format(sql.Identifier(Attempt._meta.db_table), seeded()),
        sql.SQL("INSERT INTO {} (run_id, position, key, name, kind, status, output, attempt_number, started_at, "
                "finished_at) SELECT r.id, g, 'step-' || g, 'step', 'STEP', 'COMPLETED', '{{\"ok\": true}}', 1, "
                "r.started_at, r.started_at {}").format(
            sql.Identifier(Step._meta.db_table), seeded("CROSS JOIN generate_series(0, %(last_step)s) g")),
        sql.SQL("INSERT INTO {} (run_id, seq, type, data, created_at) SELECT r.id, g, 'bench.seeded', "
                "'{{\"seq\": 1}}', r.started_at {}").format(
            sql.Identifier(RunEvent._meta.db_table), seeded("CROSS JOIN generate_series(1, %(events)s) g")),
    ]
    params = {"marker": marker, "last_step": DETAIL_STEPS - 1, "events": DETAIL_EVENTS}
    started = time.perf_counter()
    with psycopg.connect(conninfo, application_name="stepwise bench seeding") as conn:
        checked = not _foreign_key_triggers_off(conn)
        for statement in statements:
            conn.execute(statement, params)
        conn.commit()
    return SeedTiming(time.perf_counter() - started, checked)


def seeded_delete(*, conninfo: str, marker: str, details: bool = False) -> tuple[int, SeedTiming]:
    """Delete the runs seeded with ``marker`` (and their details, if seeded); return how many, and how long it took."""
    runs = sql.Identifier(Run._meta.db_table)
    children = [
        sql.SQL("DELETE FROM {} c USING {} r WHERE c.run_id = r.id AND r.metadata @> %s::jsonb").format(
            sql.Identifier(model._meta.db_table), runs)
        for model in (Attempt, Step, RunEvent)
    ] if details else []
    statement = sql.SQL("DELETE FROM {} WHERE metadata @> %s::jsonb").format(runs)
    params = (json.dumps({SEED_MARKER_KEY: marker}),)
    started = time.perf_counter()
    with psycopg.connect(conninfo, application_name="stepwise bench seeding") as conn:
        checked = not _foreign_key_triggers_off(conn)
        for child in children:
            conn.execute(child, params)
        deleted = conn.execute(statement, params).rowcount
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


# The tables seeding fills: the runs, and the details run_details_seed gives them.
SEEDED_MODELS = (Run, Attempt, Step, RunEvent)
_SEEDED_TABLES = sql.SQL(", ").join(sql.Identifier(model._meta.db_table) for model in SEEDED_MODELS)


def runs_vacuum(*, conninfo: str) -> float:
    """VACUUM and ANALYZE the seeded tables, so the next phase (or bench) does not pay for the seeded rows."""
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(_SEEDED_TABLES))
    return time.perf_counter() - started


def runs_reindex(*, conninfo: str) -> float | None:
    """REINDEX the seeded tables without blocking their writes; return the seconds it took, None if this role may not.

    VACUUM frees the index entries of the deleted runs but keeps their pages: after a million
    seeded runs were deleted, the run table's primary key stayed 170 MB and its status index 230 MB
    for an empty table, and every insert and claim that came after touched pages scattered over
    them. Bursts on the same machine read 51-53 % of raw Celery on those indexes, 64-68 % once the
    tables were reindexed. The bench leaves the indexes of the project's database as it found them.
    """
    started = time.perf_counter()
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:  # CONCURRENTLY cannot run in a transaction
            for model in SEEDED_MODELS:
                conn.execute(sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(sql.Identifier(model._meta.db_table)))
    except psycopg.errors.InsufficientPrivilege:  # only the tables' owner may
        return None
    return time.perf_counter() - started


def runs_analyze(*, conninfo: str) -> None:
    """Refresh the planner's statistics of the seeded tables, as autovacuum would after a while."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(_SEEDED_TABLES))


def _constant_columns(marker: str) -> tuple[list[str], str]:
    """Return the runs table's columns not filled per row, and their defaults as the tail of a COPY line."""
    fields = [field for field in Run._meta.concrete_fields if field.column not in _PER_ROW]
    values = [_default(field, marker) for field in fields]
    return [field.column for field in fields], "\t".join(_copy_text(value) for value in values)


def _default(field: models.Field, marker: str) -> Any:
    if field.column == "metadata":
        return json.dumps({SEED_MARKER_KEY: marker})
    if not field.has_default():
        if field.null:
            return None
        raise SeedingUnsupported(f"{Run._meta.db_table}.{field.column} is NOT NULL without a default")
    value = field.get_default()
    return json.dumps(value) if isinstance(field, models.JSONField) else value


def _copy_text(value: Any) -> str:
    """Return a value as a field of COPY's text format."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _timestamp(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


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


def _lines(plan: SeedPlan, constant: str, first: int, stop: int, block: int = 2000) -> Iterator[str]:
    """Yield COPY lines for rows ``first`` to ``stop``, oldest first as a real table fills, ``block`` at a time."""
    statuses = random.choices(list(plan.statuses), weights=list(plan.statuses.values()), k=stop - first)
    tasks = random.choices(
        ["\t".join(map(_copy_text, (t.task_id, t.version_id, t.environment_id, t.queue))) for t in plan.tasks],
        k=stop - first,
    )
    tags = [_copy_text(t) for t in _tag_sets(4096)] if plan.tagged else ["[]"]
    shapes = {
        status: (started, finished, str(attempts), _copy_text(error))
        for status, (started, finished, attempts, error) in _STATUS_SHAPES.items()
    }
    spread_ms = plan.spread.total_seconds() * 1000
    first_ms = int(timezone.now().timestamp() * 1000 - spread_ms)
    lines: list[str] = []
    for index in range(stop - first):
        millis = first_ms + int((first + index) * spread_ms / plan.count)
        started_after, finished_after, attempts, error = shapes[statuses[index]]
        created = _timestamp(millis)
        started = _timestamp(millis + started_after) if started_after is not None else _NULL
        finished = _timestamp(millis + finished_after) if finished_after is not None else _NULL
        updated = finished if finished_after is not None else started if started_after is not None else created
        lines.append(
            f"{_run_id(millis)}\t{tasks[index]}\t{statuses[index]}\t{tags[index % len(tags)]}\t{error}\t"
            f"{attempts}\t{created}\t{started}\t{finished}\t{updated}\t{constant}\n"
        )
        if len(lines) == block:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)
