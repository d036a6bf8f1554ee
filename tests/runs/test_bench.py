"""manage.py bench with tiny parameters: it starts its workers, measures, and prints every figure."""
from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from stepwise.runs.models import Attempt, Run, RunEvent, Step
from stepwise.tasks.models import Queue
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import noop

ROWS = [
    "no-op runs, triggered -> completed",
    "raw Celery no-op tasks, sent -> done",
    "ours / raw",
    "no-op runs, batch_trigger() -> completed",
    "trigger() calls from one thread",
    "apply_async() calls from one thread",
    "trigger-to-start latency p50, idle",
    "trigger-to-start latency p99, idle",
    "trigger-to-start latency p50, burst",
    "trigger-to-start latency p99, burst",
    "5-step task, checkpointed in a worker",
    "5-step function, undecorated",
    "checkpoint overhead",
    "5-step attempt in-process, untraced",
    "... in statements (claim, steps, outcome)",
    "... in Python around them",
    "statements per step / commit floor p50",
    "INSERT + COMMIT p50 after",
    "5-step attempt in-process, traced",
    "traced / untraced",
    "event latency, worker commit -> websocket p50",
    "event latency, worker commit -> websocket p99",
    "PostgreSQL INSERT + COMMIT p50",
    "checkpoint overhead / commit floor p50",
    "PostgreSQL INSERT + COMMIT p50, between these runs",
    "10-step runs, triggered -> completed",
    "raw Celery send-to-start latency p50",
    "wait lateness p99",
    "with / without",
    "runs list, first page, no filter",
    "prune finished runs past 30 days",
    "... runs deleted per second",
    "embedded: CLI trigger -> run started p50",
]


def figure_of(table: str, metric: str) -> float:
    line = next((line for line in table.splitlines() if line.startswith(metric)), None)
    assert line is not None, f"no row '{metric}' in:\n{table}"
    match = re.search(r"\s(-?[\d,]+(?:\.\d+)?(?:e[-+]\d+)?)\s+\S+$", line)
    assert match, f"no figure and unit in '{line}'"
    return float(match.group(1).replace(",", ""))


@pytest.mark.xdist_group("heavy")
def test_bench_prints_every_figure_and_cleans_up(transactional_db, processes):
    # `processes` stops the session's shared workers and scheduler: the bench starts and measures its own.
    out, progress = io.StringIO(), io.StringIO()
    call_command(
        "bench", "--runs", "20", "--burst-rounds", "2", "--latency-runs", "5", "--steps", "5", "--step-runs", "1",
        "--floor-samples", "50", "--ten-step-runs", "5", "--wait-runs", "5", "--wait-burst", "50",
        "--wait-lead", "12", "--waiting-runs", "2000", "--dispatch-runs", "20", "--list-runs", "2000",
        "--list-repeats", "3", "--prune-runs", "2000", "--embedded-triggers", "2",
        "--workers", "2", "--concurrency", "2", "--timeout", "90", "--durability", "relaxed",
        stdout=out, stderr=progress,
    )
    phases = [line.split("]")[0] + "]" for line in progress.getvalue().splitlines() if line.startswith("[")]
    assert phases == [f"[{i}/14]" for i in range(1, 15)], progress.getvalue()
    table = out.getvalue()
    for metric in ROWS:
        assert figure_of(table, metric) > 0, f"'{metric}' is not positive in:\n{table}"
    # Two pairs of bursts: the ratio reported is their median, between the two pairs' own.
    low, middle, high = (
        figure_of(table, f"ours / raw, {which} of 2 pairs") for which in ("lowest", "median", "highest")
    )
    assert low <= middle <= high, table
    assert "2 x celery worker --pool=prefork --concurrency=2" in table
    assert "STEPWISE_DURABILITY=relaxed in the workers; DEBUG off in every process" in table
    assert not Run.objects.exists(), "the bench's runs are deleted afterwards"


def test_bench_prunes_seeded_runs_with_their_details_and_leaves_nothing_behind(transactional_db):
    out = io.StringIO()
    call_command("bench", "--only", "prune", "--prune-runs", "2000", stdout=out, stderr=io.StringIO())
    table = out.getvalue()
    pruned = re.search(r"prune finished runs past 30 days \(([\d,]+) of 2,000, each started one with its attempt, "
                       r"3 steps and 6 events\)", table)
    assert pruned, table
    # Runs are spread over 60 days and kept 30: about half are past it, the WAITING ones never are.
    assert 600 < int(pruned.group(1).replace(",", "")) < 1400, table
    assert figure_of(table, "... of which their attempts, 3 steps and 6 events") > 0
    for model in (Run, Attempt, Step, RunEvent):
        assert not model.objects.exists(), f"seeded {model.__name__} rows are deleted afterwards"


@override_settings(USES_POSTGRES=False)
def test_bench_refuses_the_embedded_database_with_a_clear_error(transactional_db):
    with pytest.raises(CommandError, match="DATABASE_URL must point at PostgreSQL"):
        call_command("bench", "--runs", "1")


@pytest.mark.xdist_group("heavy")
def test_bench_vacuums_the_run_tables_after_deleting_its_runs(transactional_db, processes):
    # The machine's PostgreSQL may run without autovacuum: the deleted runs' rows must not weigh on the next bench.
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        before = cursor.fetchone()[0]
    call_command("bench", "--only", "idle", "--latency-runs", "2", "--workers", "1", "--concurrency", "1",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert not Run.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT relname, last_vacuum FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                       [[model._meta.db_table for model in (Run, Attempt, Step, RunEvent)]])
        vacuumed = dict(cursor.fetchall())
    assert len(vacuumed) == 4 and all(at is not None and at > before for at in vacuumed.values()), vacuumed


def _run_index_pages() -> int:
    """The pages all of the run table's indexes take on disk."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(pg_relation_size(indexrelid)) / 8192 FROM pg_index WHERE indrelid = %s::regclass",
                       [Run._meta.db_table])
        return int(cursor.fetchone()[0])


def test_bench_leaves_the_run_tables_indexes_as_small_as_it_found_them(transactional_db):
    # VACUUM keeps the pages of deleted index entries: the seeded runs' would stay for the next bench to step over.
    before = _run_index_pages()
    out = io.StringIO()
    call_command("bench", "--only", "list", "--list-runs", "20000", "--list-repeats", "1",
                 stdout=out, stderr=io.StringIO())
    assert figure_of(out.getvalue(), "REINDEX the seeded tables after deleting 20,000 runs") > 0
    assert not Run.objects.exists()
    assert _run_index_pages() <= before + 10, f"{before} pages before the bench"


def test_bench_says_when_the_database_holds_unfinished_runs_of_other_work(transactional_db):
    # Its scheduler re-sends their hints and its workers run them: the figures then include that work.
    environments_ensure()
    Queue.objects.update_or_create(environment_id="dev", name="task/test-noop", defaults={"paused": True})
    noop.trigger({})
    out, progress = io.StringIO(), io.StringIO()
    call_command("bench", "--only", "floor", "--floor-samples", "10", stdout=out, stderr=progress)
    assert "1 run in the database not finished before the bench" in out.getvalue()
    assert "1 run in this database not finished" in progress.getvalue()
    Run.objects.all().delete()
    out = io.StringIO()
    call_command("bench", "--only", "floor", "--floor-samples", "10", stdout=out, stderr=io.StringIO())
    assert "none: every run in the database had finished before the bench" in out.getvalue()
