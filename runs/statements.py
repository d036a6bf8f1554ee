"""The hot path's writes on PostgreSQL, each one statement of data-modifying CTEs.

A trigger, a claim, a step and an outcome each cost one round trip and one commit (an outcome
also claims the next run of its group hint, if any, in the same statement): the run
row's fenced UPDATE (or INSERT) comes first, and every other row of the write (events, the
step, spans, the attempt) is inserted ``FROM`` it, so nothing lands unless the run row moved
under the caller's lease. Other databases take the ORM path in ``stepwise.runs.store`` instead.
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorDebugWrapper
from django.db.models import (
    AutoField,
    BigAutoField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKey,
    IntegerField,
    JSONField,
    Model,
    TextField,
)

from stepwise.runs import libpq
from stepwise.runs.models import Attempt, NewEvent, Run, RunEvent, Span, Step, Waitpoint
from stepwise.runs.statuses import AttemptStatus, RunStatus, VersionPolicy
from stepwise.tasks.models import Queue, TaskVersion

SPAN_COLUMNS = (
    "run_id", "trace_id", "span_id", "parent_span_id", "name", "kind", "status", "status_message",
    "attributes", "events", "started_at", "ended_at",
)


def is_postgresql() -> bool:
    """Tell whether the default database takes the one-statement path."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


@functools.cache
def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: type[Model]) -> str:
    return _q(model._meta.db_table)


@functools.cache
def _insert_shape(model: type[Model]) -> tuple[tuple[Any, ...], str, str]:
    """Return a model's inserted fields, their quoted columns and typed placeholders (built once)."""
    fields = tuple(f for f in model._meta.concrete_fields if not isinstance(f, AutoField | BigAutoField))
    columns = ", ".join(_q(f.column) for f in fields)
    # Typed placeholders: bound server-side, a parameter's type must not depend on its value.
    placeholders = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
    return fields, columns, placeholders


class NewRow(SimpleNamespace):
    """An unsaved row of ``model`` for the hot path: its field values as attributes (attnames), no Model instance.

    Building a Model instance runs its init signals and a loop over its fields; the statement
    only reads the values. Every inserted field must be given. ``instance()`` makes the Model
    where one is needed (the ORM path of other databases).
    """

    model: type[Model]

    def instance(self) -> Model:
        return self.model(**vars(self))


@functools.cache
def new_row_type(model: type[Model]) -> type[NewRow]:
    """Return the class of ``model``'s unsaved hot-path rows (``NewRow``)."""
    return type(f"New{model.__name__}", (NewRow,), {"model": model})


def _row_model(row: Model | NewRow) -> type[Model]:
    return row.model if isinstance(row, NewRow) else type(row)


@dataclass
class Write:
    """A statement being built: named CTEs and their parameters, in order."""

    ctes: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    tail_params: list[Any] = field(default_factory=list)  # the final select's, after every CTE's

    def add(self, name: str, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
        self.ctes.append(f"{name} AS ({sql})")
        self.params.extend(params)

    def row(self, name: str, obj: Model | NewRow, source: str) -> None:
        """Insert an unsaved model instance (or ``NewRow``), once per row of ``source``."""
        model = _row_model(obj)
        self.add(name, _row_insert_sql(model, source), _row_params(model, obj))

    def events(self, run_id: str, events: Sequence[NewEvent], source: str) -> None:
        """Insert events numbered up to the ``last_event_seq`` that ``source`` returns."""
        self.ctes += _events_ctes(len(events), source)
        for event in events:
            self.params += _event_params(run_id, event)

    def spans(self, rows: list[dict[str, Any]], source: str) -> None:
        """Insert ended spans (rows as the span processor makes them) if ``source`` returned a row."""
        if rows:
            self.add("spans", _spans_insert_sql(source), [_spans_param(rows)])

    def execute(self, select: str) -> list[tuple[Any, ...]]:
        return _rows(numbered_placeholders("WITH " + ", ".join(self.ctes) + " " + select),
                     self.params + self.tail_params)


@functools.cache
def _row_insert_sql(model: type[Model], source: str) -> str:
    """Return the INSERT of one ``model`` row per row of ``source`` (its values are ``_value_readers``')."""
    _, columns, placeholders = _insert_shape(model)
    return f"INSERT INTO {_table(model)} ({columns}) SELECT {placeholders} FROM {source}"


def _row_params(model: type[Model], obj: Model | NewRow) -> list[Any]:
    """Return the parameters of one row's INSERT (``_row_insert_sql``)."""
    return [read(obj) for read in _value_readers(model)]


@functools.cache
def _events_ctes(count: int, source: str) -> tuple[str, ...]:
    """Return the CTEs inserting ``count`` events numbered up to the ``last_event_seq`` that ``source`` returns.

    Each takes four parameters: run id, type, data (JSON text) and time.
    """
    return tuple(
        f"event{index} AS (INSERT INTO {_table(RunEvent)} (run_id, seq, type, data, created_at) "
        f"SELECT %s::varchar, last_event_seq - {count - 1 - index}, %s::varchar, %s::jsonb, %s::timestamptz "
        f"FROM {source})"
        for index in range(count)
    )


def _event_params(run_id: str, event: NewEvent) -> tuple[Any, ...]:
    """Return the parameters of one event's CTE (``_events_ctes``)."""
    return run_id, event.type, json.dumps(event.data), event.created_at


@functools.cache
def _spans_insert_sql(source: str) -> str:
    """Return the INSERT of ended spans (one JSON array parameter) if ``source`` returned a row."""
    columns = ", ".join(SPAN_COLUMNS)
    return (f"INSERT INTO {_table(Span)} ({columns}) SELECT {columns} FROM {source}, "
            f"jsonb_populate_recordset(NULL::{_table(Span)}, %s::jsonb) ON CONFLICT DO NOTHING")


def _spans_param(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps([_span_json(row) for row in rows])


_PLACEHOLDER = re.compile(r"%(s|%)|%")


@functools.lru_cache(maxsize=256)
def numbered_placeholders(sql: str) -> str:
    """Return ``sql`` with its ``%s`` placeholders numbered (``$1``, ``$2``…), as PostgreSQL takes them.

    The hot statements are few and long: psycopg converts a query on every call once it has
    more than 50 parameters, so they are converted once here and sent through libpq (or a raw
    cursor where statements are watched).
    """
    numbers = iter(range(1, 100_000))

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "s":
            return f"${next(numbers)}"
        if match.group(1) == "%":
            return "%"
        raise ValueError(f"unsupported placeholder at {match.start()} in a hot statement: {sql[match.start():][:20]!r}")

    return _PLACEHOLDER.sub(replace, sql)


def _prepared_cursor() -> Any:
    """Return a raw cursor (``$n`` placeholders) that binds parameters server-side and prepares its statements.

    For a connection whose statements are logged or wrapped; the others take ``libpq.rows_of``.

    The hot path sends the same few statements over and over: prepared, PostgreSQL parses and
    plans each once per connection instead of once per step, and the values travel as
    parameters instead of being quoted into the text. Set STEPWISE_PREPARED_STATEMENTS=0 behind
    a pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction mode).
    Django's wrapper is kept: errors map to django.db's and queries are logged as any other.
    """
    wrapper = connections[DEFAULT_DB_ALIAS]  # once: each attribute read through ``connection`` is a look-up
    wrapper.ensure_connection()
    raw = wrapper.connection
    raw.prepare_threshold = 0 if settings.STEPWISE_PREPARED_STATEMENTS else None
    cursor = psycopg.RawCursor(raw)
    return _LoggedStatement(cursor, wrapper) if wrapper.queries_logged else wrapper.make_cursor(cursor)


class _LoggedStatement(CursorDebugWrapper):
    """Logs the statement as sent: Django cannot read the text of a prepared one back from psycopg."""

    def execute(self, sql: str, params: Any = None) -> Any:
        with self.debug_sql(sql, params):
            return self._execute_with_wrappers(sql, params, many=False, executor=self._execute)


def _db_value(model_field: Any, obj: Model, wrapper: Any) -> Any:
    """Return a field's value ready for the database; an unset auto_now(_add) date is filled in."""
    value = getattr(obj, model_field.attname)
    if value is None and (getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False)):
        value = model_field.pre_save(obj, add=True)
    return model_field.get_db_prep_save(value, wrapper)


_PLAIN = frozenset({float, bool})
_TEXT = frozenset({str})
_JSON_PLAIN = frozenset({dict, list, str, int, float, bool})


@functools.cache
def _value_readers(model: type[Model]) -> tuple[Callable[[Model], Any], ...]:
    """Return, per inserted field of ``model``, a function giving an instance's value ready for the database.

    The same values as ``_db_value``, without Django's generic conversion where it would change
    nothing: a string, float, boolean or aware date goes as it is (the statement's placeholders
    are typed), an integer gets its type, a dict or list becomes JSON. Any other value (an enum
    member, a naive date), and a field of any other kind, takes ``_db_value``. A run's 45 fields
    cost a third of the time, a step's a quarter.
    """
    # The backend's operations only: they are the same for every thread's connection.
    ops = connections[DEFAULT_DB_ALIAS].ops
    fields, _, _ = _insert_shape(model)
    return tuple(_value_reader(f, ops) for f in fields)


def _value_reader(model_field: Any, ops: Any) -> Callable[[Model], Any]:
    if isinstance(model_field, DateTimeField) and (model_field.auto_now or model_field.auto_now_add):
        def stamped(obj: Model) -> Any:
            return _db_value(model_field, obj, connections[DEFAULT_DB_ALIAS])

        return stamped
    attname, convert = model_field.attname, _value_converter(model_field, ops)

    def read(obj: Model) -> Any:
        return convert(getattr(obj, attname))

    return read


def _value_converter(model_field: Any, ops: Any) -> Callable[[Any], Any]:
    """Return a function giving a value of ``model_field`` ready for the database (``_value_readers`` says how)."""
    def full(value: Any) -> Any:
        return model_field.get_db_prep_save(value, connections[DEFAULT_DB_ALIAS])

    if isinstance(model_field, DateTimeField):
        def date(value: Any) -> Any:
            return value if value is None or (type(value) is datetime and value.tzinfo is not None) else full(value)

        return date
    if isinstance(model_field, JSONField):
        adapt, encoder = ops.adapt_json_value, model_field.encoder

        def json_value(value: Any) -> Any:
            if value is None:  # SQL NULL, as get_db_prep_save stores it
                return None
            return adapt(value, encoder) if type(value) in _JSON_PLAIN else full(value)

        return json_value
    if isinstance(model_field, IntegerField):
        # Typed as Django types them (Int4, Int8...): a prepared statement keeps its parameter types.
        adapt_int, internal = ops.adapt_integerfield_value, model_field.get_internal_type()

        def integer(value: Any) -> Any:
            return adapt_int(value, internal) if type(value) is int else full(value)

        return integer
    if isinstance(model_field, CharField | TextField | BooleanField | FloatField | ForeignKey):
        kinds = _TEXT if isinstance(model_field, CharField | TextField | ForeignKey) else _PLAIN

        def plain(value: Any) -> Any:
            return value if value is None or type(value) in kinds else full(value)

        return plain
    return full


def status_event(outcome: Outcome, spans: list[dict[str, Any]], now: datetime) -> NewEvent:
    """Return the run.status event an outcome writes, listing the spans stored alongside."""
    return NewEvent("run.status", with_spans({"from": RunStatus.EXECUTING.value, "to": outcome.to,
                                               **outcome.event_data}, spans), now)


def with_spans(data: dict[str, Any], spans: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return an event's data naming the spans stored with it (``span_ids``): the timeline reads them back.

    Ids only: a step record carries a batch of spans, and repeating each span in the event
    would double what the write stores.
    """
    if not spans:
        return data
    return {**data, "span_ids": [*data.get("span_ids", ()), *(r["span_id"] for r in spans)]}


def span_ended_data(row: dict[str, Any]) -> dict[str, Any]:
    """Return what an event says of one ended span stored with it."""
    return {
        "span_id": row["span_id"],
        "parent_span_id": row["parent_span_id"],
        "name": row["name"],
        "kind": row["kind"],
        "status": row["status"],
        "started_at": row["started_at"].isoformat(),
        "ended_at": row["ended_at"].isoformat(),
        "duration_ms": round((row["ended_at"] - row["started_at"]).total_seconds() * 1000, 3),
    }


def span_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Return the Span columns of a span row as the processor makes it (which also notes its attempt's lease)."""
    return {k: row[k] for k in SPAN_COLUMNS}


def _span_json(row: dict[str, Any]) -> dict[str, Any]:
    data = span_fields(row)
    for name in ("started_at", "ended_at"):  # the only dates of a span row
        if isinstance(data[name], datetime):
            data[name] = data[name].isoformat()
    return data


def _durability() -> str:
    """Return the condition that, under STEPWISE_DURABILITY=relaxed, commits this statement asynchronously.

    ``set_config(..., true)`` lasts for the statement's own transaction: PostgreSQL then answers
    before the commit is flushed to disk. A database crash can lose the last moments of such
    commits (about three times wal_writer_delay, 0.6 s by default); a worker crash loses nothing.
    """
    if settings.STEPWISE_DURABILITY != "relaxed":
        return ""
    return " AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'"


def lease_fence(lease_token: str | None) -> tuple[str, list[Any]]:
    """Return the WHERE clause (and its parameters after the run id) of a write fenced by a lease token."""
    if lease_token is None:
        return _UNFENCED_WHERE, []
    return _FENCED_WHERE, [lease_token, RunStatus.EXECUTING.value]


_UNFENCED_WHERE = "id = %s"
_FENCED_WHERE = "id = %s AND lease_token = %s AND status = %s"


def _run_assignments(run_fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Return the SET assignments (and their parameters) that give a run these field values."""
    assignments, params = [], []
    for name, value in run_fields.items():
        assignment, convert = _run_setter(name)
        assignments.append(assignment)
        params.append(convert(value))
    return assignments, params


@functools.cache
def _run_setter(name: str) -> tuple[str, Callable[[Any], Any]]:
    """Return the SET assignment of a run field and the function readying its values (built once per field)."""
    model_field = Run._meta.get_field(name)
    return f"{_q(model_field.column)} = %s", _value_converter(model_field, connections[DEFAULT_DB_ALIAS].ops)


def fenced_append(
    *,
    run_id: str,
    lease_token: str | None,
    events: Sequence[NewEvent],
    rows: Sequence[Model | NewRow] = (),
    spans: list[dict[str, Any]] = (),
    run_fields: dict[str, Any] | None = None,
) -> int | None:
    """Append events (and rows, spans, run field values) to a run in one statement.

    Returns the last seq, or None if fenced off.

    A run's writes come in few shapes (a step: one event and one Step row), each sent many
    times: the statement's text is built once per shape (``_fenced_append_sql``) and only the
    parameters are gathered per call, in the order its placeholders take them.
    """
    run_fields = run_fields or {}
    models = tuple(_row_model(row) for row in rows)
    sql = _fenced_append_sql(
        len(events), models, bool(spans), tuple(run_fields), lease_token is not None, _durability()
    )
    params = _run_assignments(run_fields)[1]
    params.append(run_id)
    params += lease_fence(lease_token)[1]
    for event in events:
        params += _event_params(run_id, event)
    for model, row in zip(models, rows, strict=True):
        params += _row_params(model, row)
    if spans:
        params.append(_spans_param(spans))
    found = _rows(sql, params)
    return found[0][0] if found else None


@functools.lru_cache(maxsize=256)
def _fenced_append_sql(
    events: int, models: tuple[type[Model], ...], spans: bool, run_fields: tuple[str, ...], fenced: bool,
    durability: str,
) -> str:
    """Return the statement of a ``fenced_append`` shape, its placeholders numbered (built once per shape)."""
    assignments = [f"last_event_seq = last_event_seq + {events}", *(_run_setter(name)[0] for name in run_fields)]
    where = _FENCED_WHERE if fenced else _UNFENCED_WHERE
    ctes = [f"seq AS (UPDATE {_table(Run)} SET {', '.join(assignments)} WHERE {where}{durability} "
            "RETURNING last_event_seq)"]
    ctes += _events_ctes(events, "seq")
    ctes += [f"row{index} AS ({_row_insert_sql(model, 'seq')})" for index, model in enumerate(models)]
    if spans:
        ctes.append(f"spans AS ({_spans_insert_sql('seq')})")
    return numbered_placeholders("WITH " + ", ".join(ctes) + " SELECT last_event_seq FROM seq")


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Execute a hot statement (``$n`` placeholders) on the default connection and return its rows."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    if not libpq.watched(wrapper):
        return libpq.rows_of(wrapper, sql, params)
    with _prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def run_insert(*, run: Run, event: NewEvent) -> bool:
    """Insert a new run with its first event; False if its idempotency key is taken."""
    write = Write()
    _, columns, placeholders = _insert_shape(Run)
    write.add(
        "run",
        f"INSERT INTO {_table(Run)} ({columns}) VALUES ({placeholders}) "
        "ON CONFLICT DO NOTHING RETURNING id, last_event_seq",
        [read(run) for read in _value_readers(Run)],
    )
    write.events(run.id, [event], "run")
    if not write.execute("SELECT id FROM run"):
        return False
    run._state.adding, run._state.db = False, DEFAULT_DB_ALIAS  # stored, as save() leaves an instance
    return True


@dataclass(frozen=True)
class ClaimedRow:
    """What the claim statement returns about the run it took."""

    task_id: str
    payload: Any
    attempt_number: int
    environment: str
    max_duration: float | None
    executed_seconds: float
    tags: list[str]
    metadata: dict[str, Any]
    metadata_cursor: list[int] | None
    retry: dict[str, Any] | None
    hooks_done: list[str]
    trace_id: str
    span_id: str
    seq: int
    queue: str
    parent_waitpoint_id: str | None
    version_hash: str
    failed_attempts: int
    steps: list[dict[str, Any]]
    resolved_waits: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str | None = None
    idempotency_key_scope: str | None = None


@dataclass(frozen=True)
class ClaimRefused:
    """The claim statement took nothing; ``queued``: the run was QUEUED, so the locked claim may still take it."""

    queued: bool


def _version_held(versions: Sequence[str] | None) -> tuple[str, list[Any]]:
    """Return the claim's condition that a pinned run's version is one of ``versions`` (none without them)."""
    if versions is None:
        return "", []
    return (
        f" AND (r.version_policy <> %s OR EXISTS (SELECT 1 FROM {_table(TaskVersion)} pv "
        "WHERE pv.id = r.version_id AND pv.content_hash = ANY(%s::varchar[])))",
        [VersionPolicy.PIN.value, list(versions)],
    )


def run_claim(args: ClaimArgs) -> ClaimedRow | ClaimRefused:
    """Claim a QUEUED run of an unlimited, unpaused queue (its environment's) in one statement.

    A run of a paused or limited queue is left to the ORM claim, which locks the queue row
    to count its slots. With ``args.versions`` (the content hashes of the worker's code), a run
    pinned to another version is refused too. A refusal says whether the run was QUEUED when
    the statement began: a hint of a run that runs, waits or ended already needs no second look.
    """
    write = Write()
    _claim_add(write, args, prefix="")
    rows = write.execute(_claim_select(""))
    return _claimed_row(rows[0]) if rows else ClaimRefused(queued=False)  # none: deleted since its hint was sent


@dataclass(frozen=True)
class ClaimArgs:
    """Who claims which run, with which lease (``run_claim``'s arguments)."""

    run_id: str
    worker_id: str
    token: str
    now: datetime
    lease_expires_at: datetime
    versions: Sequence[str] | None = None


def _claim_add(write: Write, args: ClaimArgs, *, prefix: str, skip_locked: bool = False) -> None:
    """Add the claim's CTEs (``{prefix}claimed``, its attempt and its status event) and the final select's parameters.

    With ``skip_locked`` a run another transaction holds locked is refused (as QUEUED) instead of
    waited for: a statement that also ends another run's attempt holds that run's row, and must
    never wait on a second one (two such statements could each hold what the other waits for).
    """
    held, held_params = _version_held(args.versions)
    taken = "r.id = %s AND r.status = %s"
    if skip_locked:
        taken = (f"r.id = (SELECT l.id FROM {_table(Run)} l WHERE l.id = %s AND l.status = %s "
                 "FOR NO KEY UPDATE SKIP LOCKED)")
    write.add(
        f"{prefix}claimed",
        f"UPDATE {_table(Run)} r SET status = %s, lease_token = %s, lease_expires_at = %s, worker_id = %s, "
        "attempt_count = r.attempt_count + 1, started_at = COALESCE(r.started_at, %s), updated_at = %s, "
        "last_event_seq = r.last_event_seq + 1, version_wait_since = NULL "
        f"WHERE {taken} AND NOT EXISTS (SELECT 1 FROM {_table(Queue)} q "
        f"WHERE q.environment_id = r.environment_id AND q.name = r.queue "
        "AND (q.paused OR q.concurrency_limit IS NOT NULL OR q.total_limit IS NOT NULL OR q.rate_limit IS NOT NULL))"
        f"{held}{_durability()} "
        "RETURNING r.*",
        [RunStatus.EXECUTING.value, args.token, args.lease_expires_at, args.worker_id, args.now, args.now, args.run_id,
         RunStatus.QUEUED.value, *held_params],
    )
    write.add(
        f"{prefix}attempt",
        f"INSERT INTO {_table(Attempt)} (run_id, number, status, worker_id, lease_token, version_id, started_at) "
        "SELECT id, attempt_count, %s::varchar, %s::varchar, %s::varchar, version_id, %s::timestamptz "
        f"FROM {prefix}claimed",
        [AttemptStatus.EXECUTING.value, args.worker_id, args.token, args.now],
    )
    write.add(
        f"{prefix}event",
        f"INSERT INTO {_table(RunEvent)} (run_id, seq, type, data, created_at) "
        "SELECT id, last_event_seq, 'run.status', jsonb_build_object('from', %s::text, 'to', %s::text, "
        f"'attempt', attempt_count, 'worker', %s::text), %s::timestamptz FROM {prefix}claimed",
        [RunStatus.QUEUED.value, RunStatus.EXECUTING.value, args.worker_id, args.now],
    )
    write.tail_params += [AttemptStatus.FAILED.value, args.run_id]


@functools.cache
def _claim_select(prefix: str) -> str:
    """Return the claim's final select: the run as the statement's snapshot saw it, joined to what was claimed.

    One row whether or not the claim took it, so a refusal says whether the run was QUEUED.
    Its two parameters (``_claim_add`` adds them) come after every CTE's.
    """
    steps = (
        "SELECT coalesce(json_agg(json_build_object('position', s.position, 'key', s.key, 'name', s.name, "
        "'status', s.status, 'output', s.output, 'error', s.error, 'kind', s.kind, 'started_at', s.started_at, "
        f"'finished_at', s.finished_at) ORDER BY s.position), '[]')::text FROM {_table(Step)} s WHERE s.run_id = c.id"
    )
    # The run's waitpoints that resolved while it waited and whose wait no step records yet: the
    # claim brings them, so the resumed wait reads its result without a query of its own.
    resolved_waits = (
        "SELECT coalesce(json_agg(json_build_object('id', w.id, 'key', w.key, 'status', w.status, "
        "'output', w.output, 'created_at', w.created_at, 'resolved_at', w.completed_at)), '[]')::text "
        f"FROM {_table(Waitpoint)} w WHERE w.run_id = c.id AND w.status <> 'PENDING' "
        f"AND NOT EXISTS (SELECT 1 FROM {_table(Step)} s WHERE s.run_id = w.run_id AND s.key = w.key)"
    )
    failed = f"SELECT count(*) FROM {_table(Attempt)} a WHERE a.run_id = c.id AND a.status = %s"
    # A first attempt (attempt_count is 1 once claimed) finds nothing recorded: no attempt failed
    # before it, and steps and waits are only ever written by attempts. Its claim skips the three
    # look-ups (a tenth of the statement's execution); CASE evaluates only the branch it takes.
    first = "c.attempt_count = 1"
    return (
        "SELECT c.task_id, c.payload::text, c.attempt_count, c.environment_id, c.max_duration, c.executed_seconds, "
        "c.tags::text, c.metadata::text, c.metadata_cursor::text, c.retry::text, c.hooks_done::text, c.trace_id, "
        "c.span_id, c.last_event_seq, c.queue, c.parent_waitpoint_id, "
        f"v.content_hash, CASE WHEN {first} THEN 0::bigint ELSE ({failed}) END, "
        f"CASE WHEN {first} THEN '[]'::text ELSE ({steps}) END, "
        f"CASE WHEN {first} THEN '[]'::text ELSE ({resolved_waits}) END, "
        "c.idempotency_key, c.idempotency_key_scope, r.status "
        f"FROM {_table(Run)} r LEFT JOIN {prefix}claimed c ON c.id = r.id "
        f"LEFT JOIN {_table(TaskVersion)} v ON v.id = c.version_id WHERE r.id = %s"
    )


def _claimed_row(row: tuple[Any, ...]) -> ClaimedRow | ClaimRefused:
    """Read the claim's final row (``_claim_select``): what was claimed, or a refusal."""
    (task_id, payload, number, environment, max_duration, executed, tags, metadata, cursor, retry, hooks_done,
     trace_id, span_id, seq, queue, parent_waitpoint_id, version_hash, failed, steps_json, waits_json, key,
     key_scope, status_before) = row
    if task_id is None:
        return ClaimRefused(queued=status_before == RunStatus.QUEUED.value)
    return ClaimedRow(
        task_id=task_id, payload=json.loads(payload), attempt_number=number, environment=environment,
        max_duration=max_duration, executed_seconds=executed, tags=json.loads(tags), metadata=json.loads(metadata),
        metadata_cursor=json.loads(cursor) if cursor else None, retry=json.loads(retry) if retry else None,
        hooks_done=json.loads(hooks_done),
        trace_id=trace_id, span_id=span_id, seq=seq, queue=queue, parent_waitpoint_id=parent_waitpoint_id,
        version_hash=version_hash, failed_attempts=failed, steps=json.loads(steps_json),
        resolved_waits=json.loads(waits_json), idempotency_key=key, idempotency_key_scope=key_scope,
    )


@dataclass(frozen=True)
class Outcome:
    """How an attempt ends: the run's new status and fields, the attempt's, and the run span's end."""

    to: str
    attempt_status: str
    run_fields: dict[str, Any]
    attempt_error: dict[str, Any] | None = None
    retry_delay: float | None = None
    event_data: dict[str, Any] = field(default_factory=dict)
    span_result: tuple[str, str] | None = None  # set when the run reaches a final status: its root span ends
    attempt_span_id: str = ""  # the attempt's span, when its row holds it (stepwise.runs.engine.spans.attempt_span_end)
    notify: tuple[str, str] | None = None  # (channel, payload) sent with the commit: a scheduler's timer wakes


def run_outcome(
    *,
    run_id: str,
    lease_token: str,
    attempt_number: int,
    outcome: Outcome,
    elapsed: float,
    now: datetime,
    events: Sequence[NewEvent],
    spans: list[dict[str, Any]] = (),
    rows: Sequence[Model | NewRow] = (),
    claim: ClaimArgs | None = None,
) -> tuple[int | None, ClaimedRow | ClaimRefused | None]:
    """Write an attempt's outcome in one statement (run, attempt, events, spans); with ``claim``, claim a run too.

    ``events`` end with the outcome's ``status_event``; before it, and in ``rows``, the steps
    noted since the last write (a resumed wait). Returns the outcome's last event seq (None if
    fenced off) and what the claim took (None without ``claim``).

    ``claim`` (the next run of the attempt's group hint) is ``run_claim``'s, in the same statement
    and commit, except that a run another transaction holds locked is refused (as QUEUED) rather
    than waited for. Either may be refused without the other: a fenced-off outcome still claims,
    and a refused claim still writes the outcome.
    """
    write = Write()
    assignments = ["status = %s", "updated_at = %s", "executed_seconds = executed_seconds + %s",
                   f"last_event_seq = last_event_seq + {len(events)}"]
    params: list[Any] = [outcome.to, now, elapsed]
    more, values = _run_assignments(outcome.run_fields)
    assignments += more
    params += values
    where, fence = lease_fence(lease_token)
    write.add(
        "moved",
        f"UPDATE {_table(Run)} SET {', '.join(assignments)} WHERE {where}{_durability()} "
        "RETURNING id, last_event_seq",
        [*params, run_id, *fence],
    )
    error_field = Attempt._meta.get_field("error")
    write.add(
        "attempt",
        f"UPDATE {_table(Attempt)} SET status = %s, error = %s, retry_delay = %s, finished_at = %s, span_id = %s "
        "WHERE run_id = %s AND number = %s AND status = %s AND EXISTS (SELECT 1 FROM moved)",
        [outcome.attempt_status, error_field.get_db_prep_save(outcome.attempt_error, connection), outcome.retry_delay,
         now, outcome.attempt_span_id, run_id, attempt_number, AttemptStatus.EXECUTING.value],
    )
    write.events(run_id, events, "moved")
    for index, row in enumerate(rows):
        write.row(f"row{index}", row, "moved")
    write.spans(list(spans), "moved")
    if outcome.span_result is not None:  # the root span row of a run triggered before 0016
        write.add(
            "root_span",
            f"UPDATE {_table(Span)} SET ended_at = %s, status = %s, status_message = %s "
            "WHERE run_id = %s AND kind = 'run' AND ended_at IS NULL AND EXISTS (SELECT 1 FROM moved)",
            [now, *outcome.span_result, run_id],
        )
    moved = "moved"
    if outcome.notify is not None:
        # A SELECT CTE runs only if the statement reads it: the condition does, and is always true.
        write.add("notified", "SELECT pg_notify(%s, %s) FROM moved", list(outcome.notify))
        moved = "moved WHERE (SELECT count(*) FROM notified) >= 0"
    if claim is None:
        found = write.execute(f"SELECT last_event_seq FROM {moved}")
        return (found[0][0] if found else None), None
    _claim_add(write, claim, prefix="next_", skip_locked=True)
    # One row always: the outcome's seq (or NULL) beside the claim's row (all NULL for a run deleted
    # meanwhile, which reads as a refusal of a run that was not QUEUED).
    found = write.execute(f"SELECT (SELECT last_event_seq FROM {moved}), x.* FROM (SELECT 1) one "
                          f"LEFT JOIN ({_claim_select('next_')}) x ON true")
    last, *claimed = found[0]
    return last, _claimed_row(tuple(claimed))


@dataclass(frozen=True)
class FiredWaits:
    """What one batch of due waitpoints did: the events it stored and the runs it queued again."""

    events: list[RunEvent]
    woken: list[str]
    resolved: int


def waitpoints_fire(*, now: datetime, limit: int = 1000) -> FiredWaits:
    """Resolve up to ``limit`` due waitpoints and queue their WAITING runs again, in one statement.

    Timers (durations, dates) complete; token and event waits whose timeout passed time out.
    Each waitpoint gets its event and each woken run its status event, numbered after the
    run's last seq; waitpoints are locked before their runs, the order every resolution takes,
    and runs in id order, as the span flusher locks them: two such writes cannot deadlock.
    """
    write = Write()
    timer = "w.kind IN ('DURATION', 'DATE')"
    write.add(
        "due",
        f"SELECT w.id FROM {_table(Waitpoint)} w WHERE w.status = 'PENDING' AND w.resume_at <= %s "
        "ORDER BY w.resume_at LIMIT %s FOR NO KEY UPDATE SKIP LOCKED",
        [now, limit],
    )
    write.add(
        "resolved",
        f"UPDATE {_table(Waitpoint)} w SET status = CASE WHEN {timer} THEN 'COMPLETED' ELSE 'TIMED_OUT' END, "
        f"output = CASE WHEN {timer} THEN %s::jsonb ELSE NULL END, completed_at = %s "
        "FROM due WHERE w.id = due.id RETURNING w.id, w.run_id, w.key, w.kind, w.status",
        [json.dumps({"resumed_at": now.isoformat()}), now],
    )
    write.add("counted", "SELECT run_id, count(*) AS n FROM resolved GROUP BY run_id")
    write.add(
        "locked",
        f"SELECT r.id, r.status, r.last_event_seq FROM {_table(Run)} r JOIN counted c ON c.run_id = r.id "
        'ORDER BY r.id COLLATE "C" FOR NO KEY UPDATE OF r',  # in id order, as every multi-run write locks
    )
    write.add(
        "moved",
        f"UPDATE {_table(Run)} r SET last_event_seq = l.last_event_seq + c.n "
        "+ (CASE WHEN l.status = 'WAITING' THEN 1 ELSE 0 END), "
        "status = CASE WHEN l.status = 'WAITING' THEN 'QUEUED' ELSE r.status END, "
        "dispatched_at = CASE WHEN l.status = 'WAITING' THEN %s ELSE r.dispatched_at END, updated_at = %s "
        "FROM locked l JOIN counted c ON c.run_id = l.id WHERE r.id = l.id "
        "RETURNING r.id, l.status AS was, l.last_event_seq AS base, c.n",
        [now, now],
    )
    write.add(
        "wait_events",
        f"INSERT INTO {_table(RunEvent)} (run_id, seq, type, data, created_at) "
        "SELECT x.run_id, m.base + x.k, CASE WHEN x.status = 'COMPLETED' THEN 'wait.completed' "
        "ELSE 'wait.timed_out' END, jsonb_build_object('key', x.key, 'waitpoint', x.id, 'kind', x.kind), "
        "%s::timestamptz "
        "FROM (SELECT resolved.*, row_number() OVER (PARTITION BY run_id ORDER BY id) AS k FROM resolved) x "
        "JOIN moved m ON m.id = x.run_id RETURNING run_id, seq, type, data::text",
        [now],
    )
    write.add(
        "wake_events",
        f"INSERT INTO {_table(RunEvent)} (run_id, seq, type, data, created_at) "
        "SELECT m.id, m.base + m.n + 1, 'run.status', jsonb_build_object('from', 'WAITING', 'to', 'QUEUED'), "
        "%s::timestamptz "
        "FROM moved m WHERE m.was = 'WAITING' RETURNING run_id, seq, type, data::text",
        [now],
    )
    rows = write.execute(
        "SELECT run_id, seq, type, data, 'event' FROM wait_events UNION ALL "
        "SELECT run_id, seq, type, data, 'wake' FROM wake_events UNION ALL "
        "SELECT NULL, count(*), NULL, NULL, 'count' FROM resolved"
    )
    events, woken, resolved = [], [], 0
    for run_id, seq, type_, data, what in rows:
        if what == "count":
            resolved = seq
            continue
        events.append(RunEvent(run_id=run_id, seq=seq, type=type_, data=json.loads(data), created_at=now))
        if what == "wake":
            woken.append(run_id)
    return FiredWaits(events=sorted(events, key=lambda e: (e.run_id, e.seq)), woken=woken, resolved=resolved)
