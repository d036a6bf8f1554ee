"""A run table that outgrew its planner statistics is analyzed by the scheduler: kept plans use its indexes again."""
from __future__ import annotations

import pytest
from django.db import connection

from stepwise.runs.models import Run
from stepwise.runs.planner_stats import planner_stats_refresh, tables_outgrown
from stepwise.runs.sweeper import sweep_once
from tests.factories import run_build

pytestmark = pytest.mark.django_db(transaction=True)
RUNS = Run._meta.db_table


def _copies(run: Run, count: int) -> None:
    """Store ``count`` copies of a run's row under ids of their own (the run table grows as under a burst)."""
    columns = [field.column for field in Run._meta.concrete_fields]
    picked = ", ".join("left(id, 20) || lpad(g::text, 6, '0')" if c == "id" else connection.ops.quote_name(c)
                       for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {RUNS} ({', '.join(connection.ops.quote_name(c) for c in columns)}) "
                       f"SELECT {picked} FROM {RUNS}, generate_series(1, %s) g WHERE id = %s", [count, run.id])


def _plan() -> str:
    """The plan this connection keeps for a run's look-up by id, prepared once as the engine's statements are."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN EXECUTE run_by_id('no such run')")
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.fixture
def prepared_lookup():
    """A run table whose statistics say empty, and a look-up by id prepared on it with a plan kept for reuse."""
    Run.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {RUNS}")  # the statistics of an empty table, as after a full prune
        cursor.execute("SET plan_cache_mode = force_generic_plan")  # the plan kept, not one made per call
        cursor.execute(f"PREPARE run_by_id(text) AS SELECT status FROM {RUNS} WHERE id = $1")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE run_by_id")
        cursor.execute("RESET plan_cache_mode")


def test_a_lookup_planned_on_an_empty_table_uses_the_index_once_the_scheduler_saw_the_table_grow(prepared_lookup):
    assert "Seq Scan" in _plan()  # planned on an empty table: reading it whole is cheapest
    _copies(run_build(), 3000)
    assert "Seq Scan" in _plan()  # the kept plan reads all 3,001 runs for each look-up

    report = sweep_once()

    assert report.analyzed >= 1
    assert "Index Scan" in _plan() or "Index Only Scan" in _plan()
    assert RUNS not in tables_outgrown()
    assert sweep_once().analyzed == 0  # nothing grew since: no second ANALYZE


def test_a_table_that_grew_by_less_than_half_is_left_to_autovacuum(prepared_lookup):
    _copies(run_build(), 3000)
    assert planner_stats_refresh() == [RUNS]
    _copies(run_build(), 1000)  # about a third more pages than the statistics were taken at
    assert RUNS not in planner_stats_refresh()
    _copies(run_build(), 3000)  # now past twice
    assert RUNS in planner_stats_refresh()


def test_a_small_table_is_not_analyzed_however_fast_it_grew(prepared_lookup):
    _copies(run_build(), 20)  # a page or two: a sequential scan costs what the index would
    assert RUNS not in planner_stats_refresh()
    assert "Seq Scan" in _plan()


def test_a_project_s_own_settings_need_not_say_which_database_it_is(prepared_lookup, settings):
    # A project's settings module has none of this repository's own names: the scheduler asks the connection.
    del settings.USES_POSTGRES
    _copies(run_build(), 3000)
    assert sweep_once().analyzed >= 1
