"""A step with its own retry policy tries again inside the attempt instead of failing it."""
from __future__ import annotations

import pytest
from django.db import connections

from stepwise.runs.engine.logs import _off_loop
from stepwise.runs.models import Run, RunEvent, Step
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt
from tests.engine_tasks import executions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone claims the run, and records its log lines."""
    yield
    # An async task's log lines are stored from the engine's log thread: close its connection too.
    _off_loop.submit(connections.close_all).result()


def test_a_step_that_fails_twice_succeeds_on_its_third_try_in_the_first_attempt():
    run, _ = run_trigger(task_id="test-step-retries", payload={"fail": 2})

    assert run_attempt(run.id).result == "completed"

    final = Run.objects.get(id=run.id)
    assert final.output == {"sync": "ok"}
    assert final.status == RunStatus.COMPLETED and final.attempt_count == 1
    assert executions(run.id) == ["flaky:1", "flaky:1", "flaky:1"]
    assert list(Step.objects.filter(run_id=run.id).values_list("key", "output")) == [("flaky", "ok")]
    logs = [e.data["message"] for e in RunEvent.objects.filter(run_id=run.id, type="log").order_by("seq")]
    assert logs == ["step flaky failed (Flaky: not yet); try 2 of 3 in 0.05s",
                    "step flaky failed (Flaky: not yet); try 3 of 3 in 0.05s"]


def test_a_step_whose_tries_run_out_fails_the_attempt_and_the_task_policy_takes_over():
    run, _ = run_trigger(task_id="test-step-retries", payload={"fail": 3})

    assert run_attempt(run.id).result == "retrying"
    assert executions(run.id) == ["flaky:1", "flaky:1", "flaky:1"]
    assert not Step.objects.filter(run_id=run.id).exists()
    Run.objects.filter(id=run.id).update(status=RunStatus.QUEUED)

    assert run_attempt(run.id).result == "completed"  # the fourth try, in the second attempt
    assert executions(run.id)[-1] == "flaky:2"


def test_an_async_step_retries_the_same_way():
    run, _ = run_trigger(task_id="test-async-step-retries", payload={"fail": 1})

    assert run_attempt(run.id).result == "completed"
    assert Run.objects.get(id=run.id).output == {"async": "ok"}
    assert executions(run.id) == ["flaky-async:1", "flaky-async:1"]
