"""A scheduler asleep for its whole interval wakes for a retry, a delay or a wait set meanwhile,
and fires deadlines while one of its full passes is held up."""
from __future__ import annotations

import psycopg
from django.db import connection

from stepwise.runs.models import SchedulerBeat
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from tests.processes import database_url
from tests.waiting import wait_finished, wait_for


def _scheduler_listening() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN stepwise_timers'")
        return cursor.fetchone()[0] > 0


def test_timers_set_while_the_scheduler_sleeps_fire_long_before_its_interval(transactional_db, processes):
    processes.worker(concurrency=2)
    processes.scheduler(interval=120)  # without being woken it would sweep again only in two minutes
    wait_for(_scheduler_listening, timeout=30, message="the scheduler to finish its first pass and sleep")

    retried = run_trigger(task_id="test-third-step-flaky", payload={})[0].id  # retries after 0.1 s, twice
    delayed = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(delay=0.5))[0].id
    waiting = run_trigger(task_id="test-wait-duration", payload={"seconds": 1})[0].id

    for run_id in (retried, delayed, waiting):
        assert wait_finished(run_id, timeout=20).status == RunStatus.COMPLETED
    assert wait_finished(retried).attempt_count == 3


def _pass_blocked_on_its_beat() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                       " AND query LIKE 'UPDATE \"stepwise_runs_schedulerbeat\"%'")
        return cursor.fetchone()[0] > 0


def test_a_full_pass_held_up_does_not_hold_up_deadlines(transactional_db, processes):
    processes.worker(concurrency=2)
    # Beats every half second, so a pass soon needs the row this test locks.
    processes.scheduler(interval=0.2, STEPWISE_SCHEDULER_STALE_SECONDS="2")
    wait_for(SchedulerBeat.objects.exists, timeout=30, message="the scheduler's first beat")

    with psycopg.connect(database_url()) as blocker:
        blocker.execute("SELECT * FROM stepwise_runs_schedulerbeat FOR UPDATE")
        wait_for(_pass_blocked_on_its_beat, timeout=10, message="a full pass to wait for the locked beat row")
        run_id = run_trigger(task_id="test-wait-duration", payload={"seconds": 1})[0].id
        # The wait's deadline fires and the run completes while the full pass is still stuck.
        assert wait_finished(run_id, timeout=15).status == RunStatus.COMPLETED
        assert _pass_blocked_on_its_beat()
        blocker.rollback()
