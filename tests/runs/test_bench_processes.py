"""The benchmark's worker processes: started on the project's Celery app and settings module, whatever they are."""
from __future__ import annotations

import os
import signal
import uuid

import pytest

from stepwise.runs.benchmarks.processes import BenchProcesses, celery_conf_overridden
from stepwise.runs.benchmarks.tasks import NOOP_TASK_ID
from stepwise.runs.celery_app import celery_app
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from tests.processes import LOG_DIR
from tests.waiting import wait_finished

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_bench_worker_runs_on_the_project_s_celery_app_and_takes_the_bench_s_queue_only():
    queue = f"bench-processes-{uuid.uuid4().hex[:10]}"
    procs = BenchProcesses(queue=queue, log_dir=LOG_DIR / queue)
    try:
        with celery_conf_overridden(CELERY_TASK_DEFAULT_QUEUE=queue):
            assert celery_app().conf.task_default_queue == queue
            procs.start_worker(pool="threads", concurrency=1)
            procs.wait_ready(timeout=60)  # it answers a ping sent through this process's app
            run, _ = run_trigger(task_id=NOOP_TASK_ID, payload={})
            assert wait_finished(run.id, timeout=60).status == RunStatus.COMPLETED
    finally:
        procs.stop()
    assert celery_app().conf.task_default_queue != queue  # put back afterwards
    assert procs.log_count("Traceback") == 0


@pytest.mark.django_db(transaction=False)
def test_a_celery_setting_the_project_does_not_set_is_overridden_under_celerys_own_name():
    # A project that never sets CELERY_TASK_DEFAULT_QUEUE (a new one) must still have the bench's queue used.
    app = celery_app()
    assert "CELERY_TASK_DEFAULT_PRIORITY" not in app.conf
    before = app.conf.task_default_priority
    with celery_conf_overridden(CELERY_TASK_DEFAULT_PRIORITY=7):
        assert app.conf.task_default_priority == 7
    assert app.conf.task_default_priority == before



def test_a_bench_process_that_ends_by_itself_is_named_and_one_stopped_by_the_bench_is_not():
    # A scheduler that crashed in the middle of a phase would leave figures measured without it.
    queue = f"bench-processes-{uuid.uuid4().hex[:10]}"
    procs = BenchProcesses(queue=queue, log_dir=LOG_DIR / queue)
    try:
        scheduler = procs.start_scheduler(interval=1.0)
        assert procs.exited() == []
        os.killpg(scheduler.pid, signal.SIGKILL)  # as the OOM killer would, not through the bench
        scheduler.wait(timeout=10)
        assert procs.exited() == ["scheduler"]
    finally:
        procs.stop()
    assert procs.exited() == []  # stopped by the bench: nothing left to report
