"""Outages of the database and of the broker while runs execute on real workers.

Every run still ends COMPLETED with the right output, and no step recorded before the
outage runs again afterwards.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from django.db import connection
from psycopg import sql

from stepwise.runs.chaos.redis_server import PrivateRedis
from stepwise.runs.models import Run, Step
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.access import SCOPES
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import crashable, executions
from tests.processes import LOG_DIR, database_url
from tests.waiting import wait_finished, wait_for

STEPS = 5
TOTAL = sum(i * 10 for i in range(STEPS))


def admin_connect(dbname: str) -> psycopg.Connection:
    """A connection of our own, outside Django, to another database of the test's PostgreSQL server."""
    return psycopg.connect(database_url(), dbname=dbname, autocommit=True)


@contextmanager
def database_outage(seconds: float):
    """Make the test database drop every connection and refuse new ones, as during a restart."""
    name = connection.settings_dict["NAME"]
    admin = admin_connect("postgres")
    connection.close()
    try:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        time.sleep(seconds)
        yield
    finally:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
        admin.close()


def assert_recorded_steps_never_ran_again(run_id: str) -> None:
    ran = executions(run_id)
    for step in Step.objects.filter(run_id=run_id):
        later = [r for r in ran if r.startswith(f"{step.key}:") and int(r.split(":")[1]) > step.attempt_number]
        assert later == [], f"{run_id}: {step.key} ran again after attempt {step.attempt_number} recorded it"


def start_runs(count: int) -> list[str]:
    run_ids = [crashable.trigger({"steps": STEPS, "sleep": 0.3}).id for _ in range(count)]
    wait_for(lambda: Step.objects.filter(run_id__in=run_ids).count() >= 4, timeout=60,
             message="the runs to record their first steps")
    return run_ids


def assert_all_completed(run_ids: list[str], before: dict[str, set[str]]) -> None:
    for run_id in run_ids:
        run = wait_finished(run_id, timeout=120)
        assert run.status == RunStatus.COMPLETED, (run_id, run.status, run.error)
        assert run.output == {"total": TOTAL}
        assert before[run_id] <= set(Step.objects.filter(run_id=run_id).values_list("key", flat=True))
        assert_recorded_steps_never_ran_again(run_id)


@pytest.mark.xdist_group("crash")
def test_database_outage_mid_run_loses_no_run_and_repeats_no_recorded_step(transactional_db, processes):
    processes.worker(concurrency=2)
    processes.worker(concurrency=2)
    processes.scheduler(interval=0.2)
    run_ids = start_runs(6)
    before = {r: set(Step.objects.filter(run_id=r).values_list("key", flat=True)) for r in run_ids}
    in_flight = set(Run.objects.filter(id__in=run_ids, status=RunStatus.EXECUTING).values_list("id", flat=True))

    with database_outage(seconds=4):  # longer than the 2 s lease of the test workers
        pass

    assert_all_completed(run_ids, before)
    # The runs caught mid-step by the outage went on in a new attempt, replaying what was recorded.
    assert in_flight and all(Run.objects.get(id=r).attempt_count >= 2 for r in in_flight)
    assert not Run.objects.filter(status=RunStatus.FAILED).exists()


@pytest.mark.xdist_group("crash")
def test_a_database_error_in_the_engines_own_write_never_fails_the_run(transactional_db, processes):
    processes.worker(concurrency=2)
    processes.scheduler(interval=0.2)
    run_id = crashable.trigger({"steps": STEPS, "sleep": 0.3}).id  # no retries: one failure would end it
    wait_for(lambda: Step.objects.filter(run_id=run_id).exists(), timeout=60, message="a first recorded step")

    name = connection.settings_dict["NAME"]
    with admin_connect(name) as holder, admin_connect(name) as watcher:
        with holder.transaction():
            # Hold the run's row: the worker's next step write (its fenced event-seq bump) waits on it ...
            holder.execute("SELECT 1 FROM stepwise_runs_run WHERE id = %s FOR UPDATE", [run_id])

            def blocked_step_write():
                return watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s",
                    ["%SET last_event_seq = last_event_seq +%lease_token%"],
                ).fetchone()

            pid = wait_for(blocked_step_write, timeout=30, message="the step write to wait on the row")[0]
            # ... and fails with a database error (as on a lock timeout, a deadlock or a failover).
            watcher.execute("SELECT pg_cancel_backend(%s)", [pid])
            time.sleep(0.5)

    run = wait_finished(run_id, timeout=60)
    assert run.status == RunStatus.COMPLETED, (run.status, run.error)
    assert run.output == {"total": TOTAL} and run.attempt_count >= 2
    assert_recorded_steps_never_ran_again(run_id)


@pytest.mark.xdist_group("crash")
def test_broker_crash_and_restart_loses_no_run_and_repeats_no_recorded_step(transactional_db, processes):
    broker = PrivateRedis(log_dir=LOG_DIR)
    broker.start()
    try:
        on_broker = {"REDIS_URL": broker.url}
        processes.worker(concurrency=2, **on_broker)
        processes.worker(concurrency=2, **on_broker)
        processes.scheduler(interval=0.2, **on_broker)
        api = processes.console(**on_broker)
        environments_ensure()
        key = api_key_create(environment="dev", name="outage", scopes=SCOPES).secret
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            run_ids = [
                http.post("/api/tasks/test-crashable/trigger", json={"payload": {"steps": STEPS, "sleep": 0.3}})
                .raise_for_status().json()["id"]
                for _ in range(10)
            ]
        # Four execute (two workers of two threads); the other six wait as messages in the broker.
        wait_for(lambda: Step.objects.filter(run_id__in=run_ids).count() >= 4, timeout=60,
                 message="the runs to record their first steps")
        before = {r: set(Step.objects.filter(run_id=r).values_list("key", flat=True)) for r in run_ids}
        assert Run.objects.filter(id__in=run_ids, status=RunStatus.QUEUED).exists()

        broker.kill()
        time.sleep(3)
        broker.start()  # empty: the queued hints died with it

        assert_all_completed(run_ids, before)
    finally:
        processes.stop_all()
        broker.kill()
