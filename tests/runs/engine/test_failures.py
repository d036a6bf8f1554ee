"""Retry policy, permanent errors, serialisation errors and non-determinism on real workers."""
from __future__ import annotations

import random

import pytest

from stepwise.runs.engine.retry import RetryPolicy
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from tests.engine_tasks import executions
from tests.waiting import wait_finished


def trigger(task_id: str, payload=None) -> str:
    run, _ = run_trigger(task_id=task_id, payload=payload or {})
    return run.id


def test_backoff_grows_by_factor_and_is_capped():
    policy = RetryPolicy(max_attempts=6, factor=2, min_timeout=1, max_timeout=5, jitter=False)
    assert [policy.delay_after(n) for n in range(1, 7)] == [1, 2, 4, 5, 5, None]


def test_jitter_draws_from_the_upper_half_of_the_delay():
    policy = RetryPolicy(max_attempts=5, factor=3, min_timeout=2, max_timeout=100, jitter=True)
    delays = [policy.delay_after(3, random.Random(seed)) for seed in range(200)]
    assert min(delays) >= 9 and max(delays) <= 18 and len(set(delays)) > 100


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"factor": 0.5}, {"min_timeout": 5, "max_timeout": 1}])
def test_invalid_retry_policy_is_refused(bad):
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


def test_abort_fails_at_once_without_retry(live):
    run = wait_finished(trigger("test-abort"))
    assert run.status == RunStatus.FAILED
    assert run.attempt_count == 1 and executions(run.id) == ["abort:1"]
    assert run.error["type"] == "stepwise.runs.engine.errors.AbortRun"
    assert run.error["message"] == "the order has no items"


def test_client_error_fails_at_once_but_server_error_is_retried(live):
    client = wait_finished(trigger("test-http-4xx", {"status": 404}))
    server = wait_finished(trigger("test-http-4xx", {"status": 503}))
    assert (client.status, client.attempt_count) == (RunStatus.FAILED, 1)
    assert (server.status, server.attempt_count) == (RunStatus.FAILED, 3)


def test_retryable_error_fails_after_max_attempts_with_each_attempt_recorded(live):
    run = wait_finished(trigger("test-always-fails"))
    assert run.status == RunStatus.FAILED and run.attempt_count == 3
    assert executions(run.id) == ["fail:1", "fail:2", "fail:3"]
    assert list(run.attempts.values_list("status", flat=True)) == ["FAILED"] * 3
    assert run.error["message"] == "still down"


def test_unserialisable_step_result_fails_naming_step_and_type(live):
    run = wait_finished(trigger("test-bad-step-result"))
    assert run.status == RunStatus.FAILED and run.attempt_count == 1
    assert run.error["message"] == (
        "the result of step 'clock' is not JSON-serialisable: it contains a value of type 'datetime'"
    )
    assert not run.steps.exists()


def test_unserialisable_output_fails_naming_the_return_value(live):
    run = wait_finished(trigger("test-bad-output"))
    assert run.status == RunStatus.FAILED
    assert "the task's return value is not JSON-serialisable" in run.error["message"]
    assert "'set'" in run.error["message"]


def test_steps_called_in_another_order_fail_with_a_non_determinism_error(live):
    run = wait_finished(trigger("test-reorder"))
    assert run.status == RunStatus.FAILED and run.attempt_count == 2
    assert run.error["type"] == "stepwise.runs.engine.errors.NonDeterminismError"
    assert run.error["message"] == (
        "non-deterministic step order at position 2: the run recorded step 'b' but the code now calls 'c'"
    )
