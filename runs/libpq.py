"""Send the hot path's statements to PostgreSQL through libpq, without a cursor around each one.

A step's write is one statement; sent through Django's cursor wrapper and a psycopg cursor, the
Python around the round trip (a cursor made per statement, its query object, the prepared
statements' bookkeeping, the wrappers) costs about as much CPU as the database's own work on
it. Here the same statement takes the shortest way psycopg offers: the parameters are dumped by
the connection's adapters, the statement is prepared once per connection under a name of its
own, and the rows are loaded by the same adapters. Errors are psycopg's, mapped to Django's as
any other statement's are (``wrap_database_errors``).

Django's cursor is kept where someone watches statements: a connection that logs its queries
(DEBUG, ``CaptureQueriesContext``, ``django_assert_num_queries``) or has execute wrappers
(instrumentation) sees these statements as it sees every other. An execute wrapper that says it
needs no cursor (``sees_libpq = True``: the bench's statement clock) is called around this path
instead, with ``None`` as the context's cursor, so that it measures what runs unwatched.
"""
from __future__ import annotations

import functools
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import errors, generators, pq
from psycopg.adapt import PyFormat, Transformer

_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_IDLE = pq.TransactionStatus.IDLE
# How often a blocked wait looks up from the socket (Ctrl-C, a closed connection): psycopg's own interval.
_WAIT_INTERVAL = 0.1


def watched(wrapper: BaseDatabaseWrapper) -> bool:
    """Tell whether a connection's statements are logged or wrapped: they then take Django's cursor."""
    return wrapper.queries_logged or not all(getattr(w, "sees_libpq", False) for w in wrapper.execute_wrappers)


def rows_of(wrapper: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Execute ``sql`` (``$n`` placeholders) on a Django connection and return its rows.

    Inside ``transaction.atomic`` the statement joins the transaction (begun first if it is not
    yet, as psycopg would); otherwise it commits on its own.
    """
    wrapper.ensure_connection()
    wrapper.validate_no_broken_transaction()
    execute = _send
    for outer in reversed(wrapper.execute_wrappers):  # only wrappers that need no cursor (``watched``)
        execute = functools.partial(outer, execute)
    return execute(sql, params, False, {"connection": wrapper, "cursor": None})


def _send(sql: str, params: list[Any], many: bool, context: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The innermost executor, as Django's execute wrappers call it: the connection comes in the context."""
    wrapper = context["connection"]
    with wrapper.wrap_database_errors:
        return _execute(wrapper.connection, sql, params, prepare=settings.STEPWISE_PREPARED_STATEMENTS)


def _execute(conn: psycopg.Connection, sql: str, params: list[Any], *, prepare: bool) -> list[tuple[Any, ...]]:
    with conn.lock:
        transformer = _transformer(conn)
        data = transformer.dump_sequence(params, _auto_formats(len(params)))
        pgconn = conn.pgconn
        if not conn.autocommit and pgconn.transaction_status == _IDLE:
            conn.wait(conn._start_query(), interval=_WAIT_INTERVAL)  # BEGIN: Django's atomic block awaits it
        if prepare:
            name = _prepared_name(conn, sql, transformer.types)
            pgconn.send_query_prepared(name, data, param_formats=transformer.formats)
        else:  # behind a pooler that cannot keep prepared statements (STEPWISE_PREPARED_STATEMENTS=0)
            pgconn.send_query_params(sql.encode(), data, param_types=transformer.types,
                                     param_formats=transformer.formats)
        result = _last_result(conn)
        if result.status == _COMMAND_OK:
            return []
        transformer.set_pgresult(result)
        return transformer.load_rows(0, result.ntuples, tuple)


def _transformer(conn: psycopg.Connection) -> Transformer:
    """Return the connection's own adapter context for these statements (made once per connection).

    As a cursor keeps one across its executes: it remembers the dumper chosen for each type of
    parameter and the loaders of the last result, which a new one would look up again each time.
    """
    transformer = getattr(conn, "_stepwise_transformer", None)
    if transformer is None:
        transformer = conn._stepwise_transformer = Transformer(conn)
    return transformer


@functools.cache
def _auto_formats(count: int) -> tuple[PyFormat, ...]:
    return (PyFormat.AUTO,) * count


def _prepared_name(conn: psycopg.Connection, sql: str, types: tuple[int, ...]) -> bytes:
    """Return the name ``sql`` is prepared under on this connection (with these parameter types); prepare it once.

    The names are this module's own (psycopg's are ``_pg3_*``), kept on the connection object:
    a new connection starts with none.
    """
    prepared: dict[tuple[str, tuple[int, ...]], bytes] | None = getattr(conn, "_stepwise_prepared", None)
    if prepared is None:
        prepared = conn._stepwise_prepared = {}
    name = prepared.get((sql, types))
    if name is None:
        name = f"_stepwise_{len(prepared)}".encode()
        conn.pgconn.send_prepare(name, sql.encode(), param_types=types)
        _last_result(conn)
        prepared[sql, types] = name
    return name


def _last_result(conn: psycopg.Connection) -> pq.abc.PGresult:
    """Wait for the statement just sent; return its result, or raise psycopg's error for it."""
    results = conn.wait(generators.execute(conn.pgconn), interval=_WAIT_INTERVAL)
    for result in results:
        if result.status not in (_TUPLES_OK, _COMMAND_OK):
            raise errors.error_from_result(result, encoding=conn.info.encoding)
    return results[-1]
