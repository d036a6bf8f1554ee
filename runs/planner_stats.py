"""The planner's statistics of the run tables, refreshed when a table has outgrown them.

PostgreSQL plans a prepared statement once per connection and keeps the plan until the statistics
of a table it reads change. A statement first planned while the run table was nearly empty (a new
project, a bench that deleted its runs, a prune that emptied the table) looks a run up with a
sequential scan, and goes on doing so as the table grows: every claim, step and outcome then reads
the whole table. Autovacuum ANALYZEs a growing table a minute or so later, and never where it is
turned off. So each scheduler pass compares the tables' size on disk with the size their statistics
were taken at, and ANALYZEs those that have at least doubled since (and passed a few pages); the
new statistics make every connection plan its statements on the table anew, with its indexes.

Measured with ``manage.py bench`` on a run table whose statistics said empty: the outcome statement
of a no-op run took 0.75 ms of the database's time with the stale plans, and batch-triggered runs
drained a third slower.
"""
from __future__ import annotations

import logging

from django.db import connection

from stepwise.runs.models import Attempt, Run, RunEvent, Span, Step, Waitpoint, WaitpointChild
from stepwise.runs.statements import is_postgresql

logger = logging.getLogger(__name__)

# The tables the engine's statements look rows up in by key, growing with every run.
TABLES = tuple(model._meta.db_table for model in (Run, Attempt, Step, RunEvent, Waitpoint, WaitpointChild, Span))
# Below this many pages a sequential scan costs about what an index look-up does: nothing to gain.
MIN_PAGES = 16
# A table this many times the size its statistics were taken at is analyzed again.
GROWTH = 2

_GROWN = f"""
SELECT c.relname FROM pg_class c
WHERE c.oid = ANY(%s::regclass[])
  AND pg_has_role(c.relowner, 'USAGE')
  AND pg_relation_size(c.oid) / current_setting('block_size')::int >= GREATEST({MIN_PAGES}, {GROWTH} * c.relpages)
ORDER BY c.relname
"""


def tables_outgrown() -> list[str]:
    """Return the run tables at least GROWTH times the size of their statistics (which this role may ANALYZE)."""
    if not is_postgresql():  # a project's own settings say nothing of USES_POSTGRES: the connection does
        return []
    with connection.cursor() as cursor:
        cursor.execute(_GROWN, [list(TABLES)])
        return [name for (name,) in cursor.fetchall()]


def planner_stats_refresh() -> list[str]:
    """ANALYZE the run tables that have outgrown their statistics; return their names.

    SKIP_LOCKED leaves a table another ANALYZE or VACUUM is at (autovacuum's, a second scheduler's)
    to that one.
    """
    tables = tables_outgrown()
    if tables:
        names = ", ".join(connection.ops.quote_name(name) for name in tables)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE (SKIP_LOCKED) {names}")
        logger.info("analyzed %s: grown to at least %dx their statistics", ", ".join(tables), GROWTH)
    return tables
