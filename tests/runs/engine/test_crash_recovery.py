"""Workers really killed with SIGKILL mid-run: every run still completes, no finished step runs twice."""
from __future__ import annotations

import os

import pytest

from stepwise.runs.models import Run, Step
from stepwise.runs.statuses import RunStatus
from tests.engine_tasks import crashable, executions
from tests.waiting import wait_finished, wait_for

KILLS = int(os.environ.get("STEPWISE_TEST_KILLS", "20"))


def _worker_of(run_id: str, workers: dict[int, object]):
    run = Run.objects.get(id=run_id)
    if run.status != RunStatus.EXECUTING or not run.worker_id:
        return None
    return workers.get(int(run.worker_id.split(":")[1]))


@pytest.mark.xdist_group("crash")
def test_killed_workers_never_lose_a_run_or_repeat_a_finished_step(transactional_db, processes):
    workers = {}
    for _ in range(3):
        proc = processes.worker(concurrency=2)
        workers[proc.pid] = proc
    # A kill takes every run its worker holds, so one run can be caught in several of the 20 kills: the crash
    # cap is raised out of the way here (test_run_that_keeps_crashing_ends_crashed_with_the_reason tests it).
    processes.scheduler(interval=0.2, STEPWISE_MAX_CRASHES="25")

    finished_before_kill: dict[str, list[str]] = {}
    for _ in range(KILLS):
        run_id = crashable.trigger({"steps": 4, "sleep": 0.4}).id
        wait_for(lambda run_id=run_id: Step.objects.filter(run_id=run_id).count() >= 2,
                 timeout=60, message="two steps to be recorded")
        victim = wait_for(lambda run_id=run_id: _worker_of(run_id, workers), timeout=30, message="an owner")
        finished_before_kill[run_id] = list(Step.objects.filter(run_id=run_id).values_list("key", flat=True))
        processes.kill(victim)
        del workers[victim.pid]
        replacement = processes.worker(concurrency=2)
        workers[replacement.pid] = replacement

    for run_id, finished in finished_before_kill.items():
        run = wait_finished(run_id, timeout=90)
        assert run.status == RunStatus.COMPLETED, (run_id, run.status, run.error)
        assert run.output == {"total": 60}
        assert run.attempt_count >= 2 and run.crash_count >= 1
        ran = executions(run_id)
        for key in finished:
            assert ran.count(f"{key}:1") == 1 and not [r for r in ran if r.startswith(f"{key}:") and r != f"{key}:1"]
        for step in Step.objects.filter(run_id=run_id):
            later = [r for r in ran if r.startswith(f"{step.key}:") and int(r.split(":")[1]) > step.attempt_number]
            assert later == [], f"{step.key} ran again after attempt {step.attempt_number} recorded it"
        crashed = run.attempts.filter(status="CRASHED")
        assert crashed.exists() and "stopped renewing its lease" in crashed.first().error["message"]


@pytest.mark.xdist_group("crash")
def test_run_that_keeps_crashing_ends_crashed_with_the_reason(transactional_db, processes, settings):
    processes.scheduler(interval=0.2, STEPWISE_MAX_CRASHES="2")
    run_id = crashable.trigger({"steps": 3, "sleep": 2}).id
    for _ in range(2):
        worker = processes.worker(concurrency=1)
        wait_for(lambda: Run.objects.get(id=run_id).status == RunStatus.EXECUTING, timeout=30,
                 message="the run to start")
        processes.kill(worker)
        wait_for(lambda: Run.objects.get(id=run_id).status != RunStatus.EXECUTING, timeout=30,
                 message="the sweeper to notice the dead worker")

    run = wait_finished(run_id, timeout=30)
    assert run.status == RunStatus.CRASHED
    assert "gave up after 2 crashes" in run.error["message"]
    assert list(run.attempts.values_list("status", flat=True)) == ["CRASHED", "CRASHED"]
