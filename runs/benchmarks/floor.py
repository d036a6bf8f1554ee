"""PostgreSQL's own floor: one single-row INSERT and its COMMIT, on a fresh connection."""
from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql

from stepwise.runs.benchmarks.measure import Latencies


def commit_floor(*, conninfo: str, samples: int, work_ms: float = 0.0) -> Latencies:
    """Time ``samples`` single-row INSERT + COMMIT round trips into a scratch table made for the purpose.

    With ``work_ms``, this process keeps its CPU busy that long before each: as an engine does
    between two steps' statements. On a virtual machine whose idle CPUs sleep, a round trip
    after client work can take longer than one right after the last (the server's CPU went
    idle meanwhile); the two floors side by side show how much.
    """
    table = sql.Identifier(f"stepwise_bench_floor_{os.getpid()}")
    with psycopg.connect(conninfo, application_name="stepwise bench commit floor") as conn:
        # A normal (logged) table: an unlogged or temporary one would skip the WAL flush we measure.
        conn.execute(sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, data jsonb NOT NULL)").format(table))
        conn.commit()
        try:
            return Latencies(tuple(_insert_commit(conn, table, index, work_ms) for index in range(samples)))
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.commit()


def _insert_commit(conn: psycopg.Connection, table: sql.Identifier, index: int, work_ms: float) -> float:
    """Work ``work_ms`` on the CPU, then insert one row and commit it; return the milliseconds both took."""
    statement = sql.SQL("INSERT INTO {} (data) VALUES (%s::jsonb)").format(table)
    busy_until = time.perf_counter() + work_ms / 1000
    while time.perf_counter() < busy_until:
        pass
    started = time.perf_counter()
    conn.execute(statement, (f'{{"index": {index}}}',))
    conn.commit()
    return (time.perf_counter() - started) * 1000
