"""The hot path's statements sent through libpq: committed, rolled back and refused as Django's would be."""
from __future__ import annotations

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from stepwise.runs import libpq
from stepwise.runs.models import NewEvent, Run
from stepwise.runs.statements import fenced_append
from stepwise.runs.triggers import run_trigger
from tests.processes import database_url

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO stepwise_libpq_probe (id, note) VALUES ($1, $2) RETURNING id, note, made_at"


def _watched() -> bool:
    return libpq.watched(connections[DEFAULT_DB_ALIAS])


def _rows_of(sql: str, params: list) -> list[tuple]:
    return libpq.rows_of(connections[DEFAULT_DB_ALIAS], sql, params)


@pytest.fixture
def probe_table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE stepwise_libpq_probe (id integer PRIMARY KEY, note text, "
                       "made_at timestamptz NOT NULL DEFAULT now())")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS stepwise_libpq_probe")


def _seen_elsewhere() -> list[int]:
    """Return the probe rows another connection sees: what is committed."""
    with psycopg.connect(database_url()) as other:
        return [row[0] for row in other.execute("SELECT id FROM stepwise_libpq_probe ORDER BY id")]


def _prepared_here() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE '\\_stepwise\\_%%'")
        return [row[0] for row in cursor.fetchall()]


def test_a_statement_outside_a_transaction_commits_on_its_own_and_returns_typed_rows(probe_table):
    assert not _watched()
    (row,) = _rows_of(INSERT, [1, "first"])
    assert row[:2] == (1, "first") and row[2].tzinfo is not None  # an int, a str and an aware datetime
    assert _seen_elsewhere() == [1]
    _rows_of(INSERT, [2, None])
    assert _seen_elsewhere() == [1, 2]
    assert _prepared_here() == [INSERT]  # prepared once on this connection, executed twice


def test_a_statement_inside_atomic_joins_the_transaction_and_rolls_back_with_it(probe_table):
    with pytest.raises(RuntimeError), transaction.atomic():
        _rows_of(INSERT, [1, "the block's first statement"])  # the block's BEGIN is sent first
        assert _seen_elsewhere() == []
        raise RuntimeError("the caller gives up")
    assert _seen_elsewhere() == []
    with transaction.atomic():
        _rows_of(INSERT, [2, "kept"])
    assert _seen_elsewhere() == [2]


def test_a_refused_statement_raises_djangos_error_and_leaves_the_connection_usable(probe_table):
    _rows_of(INSERT, [1, "first"])
    with pytest.raises(IntegrityError):
        _rows_of(INSERT, [1, "again"])
    assert _rows_of("SELECT note FROM stepwise_libpq_probe WHERE id = $1", [1]) == [("first",)]
    with pytest.raises(IntegrityError), transaction.atomic():
        _rows_of(INSERT, [1, "again, inside a block"])
    assert _seen_elsewhere() == [1]


@override_settings(STEPWISE_PREPARED_STATEMENTS=False)
def test_without_prepared_statements_nothing_is_prepared(probe_table):
    _rows_of(INSERT, [1, "through a pooler"])
    _rows_of(INSERT, [2, "through a pooler"])
    assert _seen_elsewhere() == [1, 2]
    assert _prepared_here() == []


def test_a_watched_connection_sees_the_hot_path_as_any_other_statement():
    run, _ = run_trigger(task_id="test-noop", payload={})
    Run.objects.filter(id=run.id).update(status="EXECUTING", lease_token="t")
    with CaptureQueriesContext(connection) as queries:
        assert _watched()
        fenced_append(run_id=run.id, lease_token="t", events=[NewEvent("log", {"message": "hi"}, run.created_at)])
    assert any("last_event_seq" in q["sql"] for q in queries.captured_queries)
    seen = []
    with connection.execute_wrapper(lambda execute, sql, *args: seen.append(sql) or execute(sql, *args)):
        assert _watched()
        fenced_append(run_id=run.id, lease_token="t", events=[NewEvent("log", {"message": "again"}, run.created_at)])
    assert len(seen) == 1
    assert not _watched()
    assert Run.objects.get(id=run.id).last_event_seq == 3


def test_a_wrapper_that_needs_no_cursor_is_called_around_the_libpq_path(probe_table):
    calls = []

    def clock(execute, sql, params, many, context):
        calls.append((sql, context["cursor"]))
        return execute(sql, params, many, context)

    clock.sees_libpq = True  # as the bench's statement clock says
    with connection.execute_wrapper(clock):
        assert not _watched()
        assert _rows_of(INSERT, [1, "timed"])[0][:2] == (1, "timed")
    assert calls == [(INSERT, None)]
    assert _seen_elsewhere() == [1]
