"""A scheduler asleep for its whole interval wakes for a retry, a delay or a wait set meanwhile."""
from __future__ import annotations

from django.db import connection

from runs.statuses import RunStatus
from runs.triggers import TriggerOptions, run_trigger
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
