"""Lifecycle hooks, catch_error and a trigger's retry override: how often each hook runs, and what it decides."""
from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from stepwise.runs.engine.hooks import InvalidHook
from stepwise.runs.models import Run, RunEvent
from stepwise.runs.services import run_cancel
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import InvalidTrigger, TriggerOptions, run_trigger
from stepwise.runs.worker import run_attempt
from stepwise.tasks.hooks import global_hooks
from stepwise.tasks.sdk import task
from tests.waiting import run_requeue, wait_finished, wait_for, waits_resume_now

pytestmark = pytest.mark.django_db(transaction=True)


def _executions(run_id: str) -> list[str]:
    from tests.engine_tasks import executions

    return executions(run_id)




def test_each_hook_runs_as_documented_across_a_resume_and_a_retry(processes):
    run, _ = run_trigger(task_id="test-hooks", payload={"tenant": "acme", "fail_until": 2})

    assert run_attempt(run.id).result == "suspended"
    waits_resume_now(run.id)
    assert run_attempt(run.id).result == "retrying"
    run_requeue(run.id)
    assert run_attempt(run.id).result == "completed"

    # Middleware, init and cleanup wrap every attempt; on_start runs once, the end hooks once.
    assert _executions(run.id) == [
        "middleware:1", "init:1", "on_start:1", "run:init-value:1", "cleanup:1",
        "middleware:2", "init:2", "run:init-value:2", "cleanup:2",
        "middleware:3", "init:3", "run:init-value:3", "cleanup:3", "on_success:acme:3", "on_complete:COMPLETED:3",
    ]
    finished = Run.objects.get(id=run.id)
    assert finished.output == {"tenant": "acme"}, "the middleware's tenant was set while the task ran"
    assert finished.hooks_done == ["on_start", "on_success", "on_complete"]


def test_a_final_failure_runs_on_failure_and_on_complete_once(processes):
    run, _ = run_trigger(task_id="test-hooks", payload={"wait": False, "abort": True})

    assert run_attempt(run.id).result == "failed"

    assert _executions(run.id)[-2:] == ["on_failure:AbortRun:1", "on_complete:FAILED:1"]
    assert "on_success" not in " ".join(_executions(run.id))
    assert Run.objects.get(id=run.id).hooks_done == ["on_start", "on_failure", "on_complete"]


def test_a_failing_end_hook_is_logged_on_the_run_and_changes_nothing(processes):
    run, _ = run_trigger(task_id="test-hooks", payload={"wait": False, "hook_fails": "cleanup"})

    assert run_attempt(run.id).result == "completed"

    logs = [e.data["message"] for e in RunEvent.objects.filter(run_id=run.id, type="log")]
    assert any("hook cleanup" in m and "RuntimeError: cleanup hook broke" in m for m in logs), logs


def test_on_start_that_fails_fails_the_attempt_and_runs_again_on_the_retry(processes):
    run, _ = run_trigger(task_id="test-hooks", payload={"wait": False, "hook_fails": "on_start"})

    assert run_attempt(run.id).result == "retrying"
    assert Run.objects.get(id=run.id).hooks_done == []
    assert not any(e.startswith("run:") for e in _executions(run.id)), "the task did not start"


def test_on_start_does_not_repeat_after_the_worker_is_killed(transactional_db, processes):
    from tests.engine_tasks import hooked

    processes.scheduler(interval=0.2)
    first = processes.worker(concurrency=1)
    run_id = hooked.trigger({"wait": False, "sleep": 4}).id
    wait_for(lambda: "run:init-value:1" in _executions(run_id), timeout=30, message="the task to start")
    processes.kill(first)
    processes.worker(concurrency=1)

    finished = wait_finished(run_id, timeout=90)
    assert finished.status == RunStatus.COMPLETED and finished.attempt_count == 2
    assert [e for e in _executions(run_id) if e.startswith("on_start")] == ["on_start:1"]
    assert finished.hooks_done == ["on_start", "on_success", "on_complete"]


def test_catch_error_can_retry_at_a_delay_an_error_the_policy_would_not_retry(processes):
    run, _ = run_trigger(task_id="test-catch-error",
                         payload={"error": "rate", "fail_until": 2, "decide": "retry", "delay": 0.25})
    for _ in range(2):
        assert run_attempt(run.id).result == "retrying"
        run_requeue(run.id)
    assert run_attempt(run.id).result == "completed"

    delays = list(Run.objects.get(id=run.id).attempts.values_list("retry_delay", flat=True))
    assert delays == [0.25, 0.25, None]
    assert _executions(run.id) == ["catch_error:RateLimited:1", "catch_error:RateLimited:2"]


def test_catch_error_can_treat_an_error_as_success_or_fail_now(processes):
    succeeded, _ = run_trigger(task_id="test-catch-error", payload={"decide": "succeed"})
    failed, _ = run_trigger(task_id="test-catch-error", payload={"decide": "fail"})

    assert run_attempt(succeeded.id).result == "completed"
    assert run_attempt(failed.id).result == "failed"  # the policy would have retried a Flaky error

    assert Run.objects.get(id=succeeded.id).output == {"handled": "attempt 1"}
    assert Run.objects.get(id=failed.id).error["message"] == "attempt 1"


def test_catch_error_returning_none_keeps_the_policy_and_retry_stops_when_attempts_run_out(processes):
    kept, _ = run_trigger(task_id="test-catch-error", payload={})
    exhausted, _ = run_trigger(task_id="test-catch-error", payload={"error": "rate", "decide": "retry"})

    assert run_attempt(kept.id).result == "retrying"
    results = []
    for _ in range(4):
        results.append(run_attempt(exhausted.id).result)
        run_requeue(exhausted.id)
    assert results == ["retrying", "retrying", "retrying", "failed"], "max_attempts 4 still bounds the run"


@pytest.mark.parametrize(("decide", "message"), [
    ("negative", "catch_error's retry delay must not be negative, got -5s"),
    ("wrong", "catch_error must return an ErrorDecision or None, not str"),
])
def test_a_wrong_decision_from_catch_error_fails_the_run_with_a_clear_error(processes, decide, message):
    run, _ = run_trigger(task_id="test-catch-error", payload={"decide": decide})

    assert run_attempt(run.id).result == "failed"

    error = Run.objects.get(id=run.id).error
    assert error["type"].endswith("InvalidErrorDecision") and error["message"] == message
    assert "Flaky: attempt 1" in error["traceback"], "the task's own error is kept as the cause"


def test_cancel_and_timeout_run_the_end_hooks_in_the_worker(transactional_db, processes):
    from tests.engine_tasks import cancel_hooks

    processes.worker(concurrency=2)
    canceled = cancel_hooks.trigger({}).id
    timed_out = cancel_hooks.trigger({}, max_duration=1).id
    wait_for(lambda: "s1" in "".join(Run.objects.get(id=canceled).steps.values_list("key", flat=True)),
             timeout=30, message="the run to be under way")
    run_cancel(run_id=canceled)

    assert wait_finished(timed_out).status == RunStatus.TIMED_OUT
    wait_for(lambda: "on_complete:CANCELED:1" in _executions(canceled), timeout=30, message="the cancel hooks")
    wait_for(lambda: "on_complete:TIMED_OUT:1" in _executions(timed_out), timeout=30, message="the timeout hooks")
    assert _executions(canceled) == ["on_cancel:1", "on_complete:CANCELED:1"]
    assert _executions(timed_out) == ["on_failure:1", "on_complete:TIMED_OUT:1"]


def test_global_hooks_from_settings_run_before_the_tasks_own(processes, settings):
    settings.STEPWISE_HOOKS = {"on_complete": ["tests.runs.engine.test_hooks.global_on_complete"]}
    run, _ = run_trigger(task_id="test-hooks", payload={"wait": False})

    assert run_attempt(run.id).result == "completed"

    assert _executions(run.id)[-2:] == ["global-on_complete:1", "on_complete:COMPLETED:1"]


def global_on_complete(payload, result, ctx):
    from tests.engine_tasks import log_execution

    log_execution(ctx, "global-on_complete")


def test_wrong_hooks_are_refused_with_a_clear_message(settings):
    with pytest.raises(InvalidHook, match="task 'test-bad-hooks': unknown hook name.*'on_sucess'"):
        task(id="test-bad-hooks", on_sucess=print)
    with pytest.raises(InvalidHook, match="hook on_start must be callable, not str"):
        task(id="test-bad-hooks", on_start="print")

    settings.STEPWISE_HOOKS = {"on_finish": ["builtins.print"]}
    with pytest.raises(ImproperlyConfigured, match="unknown hook name.*'on_finish'"):
        global_hooks()
    settings.STEPWISE_HOOKS = {"on_failure": ["myproject.nowhere.alert"]}
    with pytest.raises(ImproperlyConfigured, match=r"STEPWISE_HOOKS\['on_failure'\]: cannot import 'myproject"):
        global_hooks()


def test_a_trigger_can_override_the_tasks_retry_policy(processes):
    run, _ = run_trigger(task_id="test-always-fails", payload={},
                         options=TriggerOptions(retry={"max_attempts": 1}))

    assert run_attempt(run.id).result == "failed"  # the task's policy allows 3 attempts

    assert Run.objects.get(id=run.id).retry["max_attempts"] == 1


@pytest.mark.parametrize(("retry", "message"), [
    ({"max_attempts": 0}, "retry: max_attempts must be from 1 to 1000"),
    ({"tries": 3}, "retry: unknown field(s) tries"),
    ({"max_attempts": "3"}, "retry: max_attempts must be a number"),
    ([3], "retry must be an object"),
])
def test_a_wrong_retry_override_is_refused_and_stores_nothing(db, retry, message):
    before = Run.objects.count()
    with pytest.raises(InvalidTrigger, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_trigger(task_id="test-always-fails", payload={}, options=TriggerOptions(retry=retry))
    assert Run.objects.count() == before
