"""The hot path's cost in SQL statements on PostgreSQL: a count, not a timing.

Django counts BEGIN and COMMIT as queries too, so a count of 2 also says: two statements, each
committed on its own (no transaction block around them).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from stepwise.runs.models import Run, RunEvent, Span, Step, Waitpoint
from stepwise.runs.selectors import run_spans
from stepwise.runs.statuses import RunStatus
from stepwise.runs.store import OrmRunStore
from stepwise.runs.sweeper import next_timer_in
from stepwise.runs.triggers import run_trigger
from stepwise.runs.waits import waitpoints_fire_due
from stepwise.runs.worker import execute_run, run_attempt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone claims and sweeps."""


def _queued(task_id: str) -> str:
    run, _ = run_trigger(task_id=task_id, payload={})
    return run.id


def test_a_trigger_is_one_statement_once_the_task_is_known(django_assert_num_queries):
    _queued("test-noop")  # the first trigger in a process registers the task, its version and queue
    with django_assert_num_queries(1):
        run, created = run_trigger(task_id="test-noop", payload={"n": 1})
    assert created
    assert Run.objects.get(id=run.id).status == RunStatus.QUEUED
    assert list(RunEvent.objects.filter(run_id=run.id).values_list("seq", "type")) == [(1, "run.created")]
    # The run's root span is its own row: no span row is written, and it reads back open.
    assert not Span.objects.filter(run_id=run.id).exists()
    [root] = run_spans(run_id=run.id)
    assert (root.kind, root.span_id, root.ended_at) == ("run", Run.objects.get(id=run.id).span_id, None)


def test_a_noop_run_is_claimed_and_finished_in_two_statements(django_assert_num_queries):
    run_id = _queued("test-noop")
    with django_assert_num_queries(2):
        outcome = run_attempt(run_id)
    assert outcome.result == "completed"
    run = Run.objects.get(id=run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.attempts.get().status == "COMPLETED"
    # The run's span ended with the run; it and the plain attempt's span are held by their rows.
    assert not Span.objects.filter(run_id=run_id).exists()
    [root] = [s for s in run_spans(run_id=run_id) if s.kind == "run"]
    assert (root.ended_at, root.status) == (run.finished_at, "OK")
    [attempt] = [s for s in run_spans(run_id=run_id) if s.kind == "attempt"]
    assert (attempt.parent_span_id, attempt.span_id) == (run.span_id, run.attempts.get().span_id)
    assert attempt.span_id and attempt.attributes["stepwise.attempt.result"] == "completed"
    seqs = list(RunEvent.objects.filter(run_id=run_id).values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_event_seq + 1))


def test_the_workers_task_adds_no_statement_for_a_run_of_an_unlimited_queue(django_assert_num_queries):
    run_id = _queued("test-noop")
    with django_assert_num_queries(2):
        execute_run(run_id)  # the Celery task's body, called here
    assert Run.objects.get(id=run_id).status == RunStatus.COMPLETED


def test_a_stale_hint_costs_one_statement_and_changes_nothing(django_assert_num_queries):
    """A second hint of a run (a re-send, a drain that got there first) is turned away by the claim itself."""
    run_id = _queued("test-noop")
    execute_run(run_id)
    before = list(RunEvent.objects.filter(run_id=run_id).values_list("seq", "type"))
    for _ in range(2):
        with django_assert_num_queries(1):
            execute_run(run_id)
    run = Run.objects.get(id=run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.attempts.count() == 1
    assert list(RunEvent.objects.filter(run_id=run_id).values_list("seq", "type")) == before
    with django_assert_num_queries(1):
        assert run_attempt("run_no-such-run") is None


def test_a_hint_of_a_run_in_a_limited_queue_still_takes_the_locked_claim(django_assert_num_queries):
    """The claim statement leaves a QUEUED run of a limited queue alone; the locked claim counts its slots."""
    from stepwise.tasks.models import Queue

    run_id = _queued("test-noop")
    run = Run.objects.get(id=run_id)
    Queue.objects.filter(environment_id=run.environment_id, name=run.queue).update(concurrency_limit=3)
    try:
        outcome = run_attempt(run_id)
    finally:
        Queue.objects.filter(environment_id=run.environment_id, name=run.queue).update(concurrency_limit=None)
    assert outcome is not None and outcome.result == "completed"
    assert outcome.queue_limited


def test_each_step_costs_one_statement(django_assert_num_queries):
    run_id = _queued("test-three-steps")
    with django_assert_num_queries(2 + 3):
        outcome = run_attempt(run_id)
    assert outcome.result == "completed"
    assert Run.objects.get(id=run_id).output == {"total": 6}
    assert Step.objects.filter(run_id=run_id).count() == 3
    # Plain step spans are stored in their steps' rows, by the same statement: none is lost.
    steps = [s for s in run_spans(run_id=run_id) if s.kind == "step"]
    assert [(s.name, s.status) for s in steps] == [("step add", "OK"), ("step add#2", "OK"), ("step add#3", "OK")]
    assert not Span.objects.filter(run_id=run_id, kind="step").exists()


def test_a_replayed_run_reads_its_steps_with_the_claim(django_assert_num_queries):
    run_id = _queued("test-three-steps")
    run_attempt(run_id)
    # Queue the finished run again by hand, as a resume would, and replay every recorded step.
    Run.objects.filter(id=run_id).update(status=RunStatus.QUEUED, finished_at=None)
    with django_assert_num_queries(2):
        outcome = run_attempt(run_id)
    assert outcome.result == "completed"
    assert Step.objects.filter(run_id=run_id).count() == 3


def test_due_timers_of_many_runs_are_fired_in_one_statement(django_assert_num_queries):
    run_ids = [run_trigger(task_id="test-wait-duration", payload={"seconds": 3600})[0].id for _ in range(3)]
    for run_id in run_ids:
        assert run_attempt(run_id).result == "suspended"
    Waitpoint.objects.filter(run_id__in=run_ids).update(resume_at=timezone.now() - timedelta(seconds=1))

    with django_assert_num_queries(1):
        fired = waitpoints_fire_due(timezone.now())

    assert fired == 3
    for run in Run.objects.filter(id__in=run_ids):
        assert run.status == RunStatus.QUEUED
        events = list(RunEvent.objects.filter(run_id=run.id).order_by("seq").values_list("seq", "type", "data"))
        assert [seq for seq, _, _ in events] == list(range(1, run.last_event_seq + 1))
        (_, wait_type, wait_data), (_, status_type, status_data) = events[-2:]
        assert (wait_type, wait_data["kind"]) == ("wait.completed", "DURATION")
        assert (status_type, status_data) == ("run.status", {"from": "WAITING", "to": "QUEUED"})
    assert Waitpoint.objects.filter(run_id__in=run_ids, status="COMPLETED").count() == 3
    # The next attempt replays the wait as resolved and finishes.
    assert run_attempt(run_ids[0]).result == "completed"


def test_a_resumed_wait_reads_its_result_with_the_claim_and_records_it_with_the_next_write(
    django_assert_num_queries,
):
    run_id = _queued("test-wait-duration")  # a step, a wait, a step
    assert run_attempt(run_id).result == "suspended"
    Waitpoint.objects.filter(run_id=run_id).update(resume_at=timezone.now() - timedelta(seconds=1))
    waitpoints_fire_due(timezone.now())

    with django_assert_num_queries(3):  # the claim, the step after the wait, the outcome
        outcome = run_attempt(run_id)

    assert outcome.result == "completed"
    steps = list(Step.objects.filter(run_id=run_id).order_by("position").values_list("key", "kind", "output"))
    assert [(key, kind) for key, kind, _ in steps] == [("before", "step"), ("wait.for", "wait"), ("after", "step")]
    assert steps[1][2]["ok"] is True and steps[1][2]["status"] == "COMPLETED"
    run = Run.objects.get(id=run_id)
    events = list(RunEvent.objects.filter(run_id=run_id).order_by("seq").values_list("seq", "type", "data"))
    assert [seq for seq, _, _ in events] == list(range(1, run.last_event_seq + 1))
    recorded = [data["key"] for _, type_, data in events if type_ == "step.completed"]
    assert recorded == ["before", "wait.for", "after"]


def test_a_wait_resolved_just_before_the_run_returns_is_recorded_with_the_outcome(django_assert_num_queries):
    run_id = _queued("test-wait-then-return")
    assert run_attempt(run_id).result == "suspended"
    Waitpoint.objects.filter(run_id=run_id).update(resume_at=timezone.now() - timedelta(seconds=1))
    waitpoints_fire_due(timezone.now())

    with django_assert_num_queries(2):  # a resume costs what a no-op run costs
        assert run_attempt(run_id).result == "completed"

    assert list(Step.objects.filter(run_id=run_id).values_list("key", "kind")) == [("wait.for", "wait")]
    last = RunEvent.objects.filter(run_id=run_id).order_by("-seq")[:2]
    assert [e.type for e in reversed(last)] == ["step.completed", "run.status"]


def test_the_scheduler_sleeps_until_the_earliest_stored_timer():
    now = timezone.now()
    assert next_timer_in(now) is None
    run_id = run_trigger(task_id="test-wait-duration", payload={"seconds": 30})[0].id
    assert run_attempt(run_id).result == "suspended"
    assert 25 < next_timer_in(timezone.now()) <= 30
    retrying = _queued("test-noop")
    Run.objects.filter(id=retrying).update(status=RunStatus.RETRYING, next_attempt_at=now + timedelta(seconds=4))
    assert next_timer_in(now) == pytest.approx(4, abs=0.01)
    Run.objects.filter(id=retrying).update(next_attempt_at=now - timedelta(seconds=4))
    assert next_timer_in(now) == 0  # overdue: sweep at once


@pytest.mark.parametrize("durability, expected", [("strict", "on"), ("relaxed", "off")])
def test_relaxed_durability_commits_the_engines_writes_asynchronously(durability, expected, settings):
    settings.STEPWISE_DURABILITY = durability
    run_id = _queued("test-noop")
    with transaction.atomic(), connection.cursor() as cursor:
        # Inside one transaction the setting the statement made is still visible after it.
        claim = OrmRunStore().claim(run_id, "worker-under-test")
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == expected
    assert claim is not None
    with connection.cursor() as cursor:  # and it ended with that transaction
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_a_scheduler_pass_with_nothing_to_do_reads_without_a_transaction(django_assert_max_num_queries):
    from django.test.utils import CaptureQueriesContext

    from stepwise.runs.sweeper import sweep_once

    sweep_once()  # a first pass in a process sets what later ones compare against (the broker's marker)
    with django_assert_max_num_queries(20), CaptureQueriesContext(connection) as captured:
        report = sweep_once()
    assert report.total == 0
    # No write transaction: on SQLite each one would take the database's write lock, every second.
    assert not [q["sql"] for q in captured.captured_queries if q["sql"] in ("BEGIN", "COMMIT")]
