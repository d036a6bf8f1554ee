"""Checkpointed steps on real workers: finished steps replay, retries resume after them."""
from __future__ import annotations

from stepwise.runs.models import Attempt, Run
from stepwise.runs.statuses import RunStatus
from tests.engine_tasks import async_task, executions, third_step_flaky
from tests.waiting import wait_finished


def test_retry_resumes_after_last_completed_step(live):
    handle = third_step_flaky.trigger({})
    run = wait_finished(handle.id)

    assert run.status == RunStatus.COMPLETED
    assert run.output == {"results": ["first-done", "second-done", "third-done"]}
    assert run.attempt_count == 3
    ran = executions(run.id)
    assert ran.count("first:1") == 1 and ran.count("second:1") == 1
    assert [r for r in ran if r.startswith(("first", "second"))] == ["first:1", "second:1"]
    assert [r for r in ran if r.startswith("third")] == ["third:1", "third:2", "third:3"]
    steps = list(run.steps.values_list("key", "attempt_number"))
    assert steps == [("first", 1), ("second", 1), ("third", 3)]


def test_failed_attempts_store_error_type_and_traceback(live):
    run = wait_finished(third_step_flaky.trigger({}).id)

    failed = list(Attempt.objects.filter(run=run, status="FAILED").order_by("number"))
    assert [a.number for a in failed] == [1, 2]
    assert failed[0].error["type"] == "tests.engine_tasks.Flaky"
    assert failed[0].error["message"] == "third step fails on attempt 1"
    assert "Traceback" in failed[0].error["traceback"] and "raise Flaky" in failed[0].error["traceback"]
    assert failed[0].retry_delay is not None


def test_async_task_with_async_steps_replays_them(live):
    run = wait_finished(async_task.trigger({"x": 5}).id)

    assert run.status == RunStatus.COMPLETED
    assert run.output == {"value": 20}
    assert run.attempt_count == 2
    assert list(run.steps.values_list("key", flat=True)) == ["async_double", "async_double#2"]
    assert list(run.steps.values_list("attempt_number", flat=True)) == [1, 1]


def test_event_sequence_is_gap_free_and_ordered(live):
    run = wait_finished(third_step_flaky.trigger({}).id)

    seqs = list(run.events.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert Run.objects.get(id=run.id).last_event_seq == len(seqs)
    statuses = [e.data["to"] for e in run.events.filter(type="run.status")]
    assert statuses == [
        "EXECUTING", "RETRYING", "QUEUED", "EXECUTING", "RETRYING", "QUEUED", "EXECUTING", "COMPLETED",
    ]
