"""Cancel, max_duration, delays and TTLs, with real workers and the real scheduler."""
from __future__ import annotations

import time

import pytest

from stepwise.runs.models import Run, RunEvent
from stepwise.runs.services import RunAlreadyFinished, run_cancel
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import Queue
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import executions
from tests.waiting import wait_finished, wait_for


def test_cancel_of_a_queued_run_means_it_never_runs(live):
    environments_ensure()  # a queue belongs to an environment, which a flush removed
    Queue.objects.update_or_create(environment_id="dev", name="task/test-noop", defaults={"paused": True})
    run, _ = run_trigger(task_id="test-noop", payload={})
    canceled = run_cancel(run_id=run.id)
    Queue.objects.filter(name="task/test-noop").update(paused=False)
    time.sleep(1)

    assert canceled.status == RunStatus.CANCELED
    assert Run.objects.get(id=run.id).attempt_count == 0


def test_cancel_of_an_executing_run_stops_it_at_the_next_step(live):
    run, _ = run_trigger(task_id="test-sleepy-steps", payload={"steps": 10, "sleep": 0.5})
    wait_for(lambda: run.steps.count() >= 2, message="two steps")
    run_cancel(run_id=run.id, reason="user pressed cancel")
    ran_at_cancel = len(executions(run.id))
    steps_at_cancel = run.steps.count()
    time.sleep(2.5)

    final = Run.objects.get(id=run.id)
    assert final.status == RunStatus.CANCELED
    assert final.error["message"] == "user pressed cancel"
    assert len(executions(run.id)) <= ran_at_cancel + 1
    assert run.steps.count() <= steps_at_cancel + 1
    assert final.attempts.get().status == "CANCELED"


def test_cancel_of_a_finished_run_is_refused_and_changes_nothing(live):
    run = wait_finished(run_trigger(task_id="test-noop", payload={})[0].id)
    events = RunEvent.objects.filter(run=run).count()
    with pytest.raises(RunAlreadyFinished, match="already COMPLETED"):
        run_cancel(run_id=run.id)
    assert Run.objects.get(id=run.id).status == RunStatus.COMPLETED
    assert RunEvent.objects.filter(run=run).count() == events


def test_run_over_max_duration_is_timed_out_and_runs_no_further_step(live):
    run = wait_finished(run_trigger(task_id="test-slow", payload={})[0].id)
    steps = run.steps.count()
    time.sleep(1)

    assert run.status == RunStatus.TIMED_OUT
    assert "max_duration of 1s" in run.error["message"]
    assert 2 <= steps <= 6
    assert run.steps.count() == steps
    assert run.attempts.get().status == "TIMED_OUT"


def test_delayed_run_waits_then_runs(live):
    run, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(delay="1.5s"))
    assert run.status == RunStatus.DELAYED
    time.sleep(0.8)
    assert Run.objects.get(id=run.id).status == RunStatus.DELAYED

    done = wait_finished(run.id, timeout=20)
    assert done.status == RunStatus.COMPLETED
    assert done.started_at >= run.delay_until


def test_run_not_started_within_its_ttl_expires(live):
    environments_ensure()  # a queue belongs to an environment, which a flush removed
    Queue.objects.update_or_create(environment_id="dev", name="task/test-noop", defaults={"paused": True})
    run, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(ttl="1s"))

    done = wait_finished(run.id, timeout=20)
    assert done.status == RunStatus.EXPIRED
    assert done.attempt_count == 0
