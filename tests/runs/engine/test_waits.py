"""Waits on real workers and the real scheduler: events, timers, tokens, child runs."""
from __future__ import annotations

import time

import pytest
from django.utils import timezone

from stepwise.runs.engine.errors import InvalidEventName
from stepwise.runs.models import Attempt, Event, Run, Waitpoint, WaitpointKind
from stepwise.runs.services import run_cancel
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.runs.waits import WaitpointError, event_send, waitpoint_approve, waitpoint_complete, waitpoint_reject
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import executions
from tests.factories import waitpoint_build
from tests.waiting import wait_finished, wait_for


def trigger(task_id: str, payload=None, **options) -> str:
    return run_trigger(task_id=task_id, payload=payload or {}, options=TriggerOptions(**options))[0].id


def wait_status(run_id: str, status: str, timeout: float = 30) -> Run:
    return wait_for(lambda: Run.objects.filter(id=run_id, status=status).first(), timeout=timeout,
                    message=f"run {run_id} to be {status}")


def test_event_wait_resumes_without_rerunning_the_code_before_it(live):
    run_id = trigger("test-wait-event", {"filter": {"orderId": "o1"}})
    waiting = wait_status(run_id, RunStatus.WAITING)
    assert waiting.lease_token is None and waiting.worker_id  # holds no worker
    assert event_send(name="paid", payload={"orderId": "other"})[1] == 0
    assert event_send(name="paid", payload={"orderId": "o1", "amount": 5})[1] == 1

    run = wait_finished(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"ok": True, "timed_out": False, "event": {"orderId": "o1", "amount": 5}}
    assert executions(run_id) == ["before:1", "after:2"]
    assert list(run.attempts.values_list("status", flat=True)) == ["SUSPENDED", "COMPLETED"]


def test_event_sent_before_the_run_reaches_its_wait_is_not_lost(live):
    run_id = trigger("test-wait-event", {"before_sleep": 1.5, "filter": {"k": 1}})
    wait_for(lambda: "before:1" in executions(run_id), message="the first step to start")
    event_send(name="paid", payload={"k": 1, "early": True})

    run = wait_finished(run_id)
    assert run.output["event"] == {"k": 1, "early": True}
    assert run.attempt_count == 1  # the stored event matched at once: no suspension


def test_event_sent_before_the_run_was_triggered_does_not_match(live):
    event_send(name="paid", payload={"k": 2})
    run_id = trigger("test-wait-event", {"filter": {"k": 2}})
    wait_status(run_id, RunStatus.WAITING)
    event_send(name="paid", payload={"k": 2, "second": True})
    assert wait_finished(run_id).output["event"] == {"k": 2, "second": True}


def test_each_event_resumes_a_runs_waits_once(live):
    run_id = trigger("test-wait-twice", {"n": 7})
    event_send(name="tick", payload={"run": 7, "i": 1})
    event_send(name="tick", payload={"run": 7, "i": 2})
    assert wait_finished(run_id).output == [1, 2]


def test_wait_timeout_resumes_with_a_timed_out_result(live):
    run_id = trigger("test-wait-event", {"timeout": "2s"})
    waiting = wait_status(run_id, RunStatus.WAITING)
    deadline = Waitpoint.objects.get(run_id=run_id).resume_at

    run = wait_finished(run_id, timeout=20)
    assert run.output == {"ok": False, "timed_out": True, "event": None}
    resumed = Attempt.objects.get(run_id=run_id, number=2).started_at
    assert 0 <= (resumed - deadline).total_seconds() < 5
    assert waiting.attempt_count == 1


@pytest.mark.xdist_group("crash")
def test_wait_timeout_fires_after_every_process_restarted(transactional_db, processes):
    first = [processes.worker(concurrency=1), processes.scheduler(interval=0.2)]
    run_id = trigger("test-wait-event", {"timeout": "3s"})
    wait_status(run_id, RunStatus.WAITING)
    for proc in first:
        processes.kill(proc)
    time.sleep(3.5)  # the deadline passes while nothing runs
    assert Run.objects.get(id=run_id).status == RunStatus.WAITING
    processes.worker(concurrency=1)
    processes.scheduler(interval=0.2)

    run = wait_finished(run_id, timeout=40)
    assert run.status == RunStatus.COMPLETED and run.output["timed_out"] is True


def test_duration_wait_resumes_after_the_duration(live):
    run_id = trigger("test-wait-duration", {"seconds": 2})
    wait_status(run_id, RunStatus.WAITING)
    started = timezone.now()

    run = wait_finished(run_id, timeout=20)
    assert run.output == {"ok": True}
    assert (run.finished_at - started).total_seconds() >= 1
    assert executions(run_id) == ["before:1", "after:2"]


def test_token_approve_resumes_with_the_answer_and_twice_is_refused(live):
    run_id = trigger("test-wait-token")
    wait_status(run_id, RunStatus.WAITING)
    token = Waitpoint.objects.get(run_id=run_id).id
    assert executions(run_id) == [f"token={token}:1"]

    waitpoint_approve(waitpoint_id=token, data={"note": "fine"}, by="alice")
    with pytest.raises(WaitpointError, match="already completed"):
        waitpoint_reject(waitpoint_id=token, by="bob")
    run = wait_finished(run_id)
    assert run.output == {"ok": True, "output": {"note": "fine", "approved": True}}
    assert Waitpoint.objects.get(id=token).completed_by == "alice"


def test_expired_token_cannot_be_completed(live):
    run_id = trigger("test-wait-token", {"timeout": "1s"})
    run = wait_finished(run_id, timeout=20)
    token = Waitpoint.objects.get(run_id=run_id)
    assert run.output == {"ok": False, "output": None}
    with pytest.raises(WaitpointError, match="timed out at"):
        waitpoint_complete(waitpoint_id=token.id, output={"late": True})
    assert Waitpoint.objects.get(id=token.id).output is None


def test_token_of_a_canceled_run_cannot_be_completed(live):
    run_id = trigger("test-wait-token")
    wait_status(run_id, RunStatus.WAITING)
    token = Waitpoint.objects.get(run_id=run_id).id
    run_cancel(run_id=run_id)
    with pytest.raises(WaitpointError, match="already canceled"):
        waitpoint_approve(waitpoint_id=token)
    with pytest.raises(WaitpointError, match="no waitpoint with id 'wp_nope'"):
        waitpoint_approve(waitpoint_id="wp_nope")
    assert Run.objects.get(id=run_id).status == RunStatus.CANCELED


def test_child_runs_return_their_outputs_and_failures_to_the_parent(live):
    run_id = trigger("test-parent")
    run = wait_finished(run_id, timeout=60)

    assert run.status == RunStatus.COMPLETED
    assert run.output == {
        "one": {"double": 2},
        "many": [[True, {"double": 4}, None], [False, None, "child 3 refuses"], [True, {"double": 8}, None]],
    }
    children = Run.objects.filter(parent_run_id=run_id)
    assert children.count() == 4
    assert set(children.values_list("root_run_id", flat=True)) == {run_id}
    assert executions(run_id) == ["parent-before:1"]


def test_cancelling_a_parent_cancels_its_waiting_children(live):
    run_id = trigger("test-parent-waiting-child")
    wait_status(run_id, RunStatus.WAITING)
    child = wait_for(lambda: Run.objects.filter(parent_run_id=run_id).first(), message="the child run")
    wait_status(child.id, RunStatus.WAITING)
    run_cancel(run_id=run_id)
    assert Run.objects.get(id=child.id).status == RunStatus.CANCELED
    assert "parent run" in Run.objects.get(id=child.id).error["message"]


def test_async_task_waits_with_async_twins(live):
    run_id = trigger("test-async-wait", {"n": 3})
    wait_status(run_id, RunStatus.WAITING)
    event_send(name="async-go", payload={"n": 3, "value": 21})
    assert wait_finished(run_id).output == {"value": 42}


def test_bad_event_names_are_refused_and_nothing_is_stored(db):
    with pytest.raises(InvalidEventName, match="event name must be a non-empty string"):
        event_send(name="", payload={})
    with pytest.raises(InvalidEventName, match="use letters, digits and"):
        event_send(name="paid now", payload={})
    assert not Event.objects.exists()


def test_an_event_resumes_exactly_the_waits_whose_filter_its_payload_holds(db):
    environments_ensure()
    filters = {"none": {}, "flat": {"n": 1}, "nested": {"order": {"id": "o1"}}, "list": {"tags": ["a"]},
               "other": {"n": 2}}
    waits = {k: waitpoint_build(kind=WaitpointKind.EVENT, event_name="paid", event_filter=f)
             for k, f in filters.items()}

    _, matched = event_send(name="paid", payload={"n": 1, "order": {"id": "o1", "total": 5}, "tags": ["a", "b"]})

    status = {k: Waitpoint.objects.get(id=wp.id).status for k, wp in waits.items()}
    # Lists match only when equal: ["a"] is not ["a", "b"].
    assert status == {"none": "COMPLETED", "flat": "COMPLETED", "nested": "COMPLETED", "list": "PENDING",
                      "other": "PENDING"}
    assert matched == 3
    _, matched = event_send(name="paid", payload=["a"])  # not an object: no filter can hold
    assert matched == 0
    _, matched = event_send(name="paid", payload={"tags": ["a"], "n": 2})
    assert matched == 2 and not Waitpoint.objects.filter(status="PENDING").exists()


@pytest.mark.timeout(900)
@pytest.mark.xdist_group("heavy")
def test_thousand_waiting_runs_hold_no_workers_and_all_complete(transactional_db, processes):
    from tests.engine_tasks import wait_event

    processes.worker(concurrency=2)
    processes.worker(concurrency=2)
    processes.scheduler(interval=0.5)
    handles = wait_event.batch_trigger([{"payload": {"event": "bulk", "filter": {"n": n}}} for n in range(1000)])
    ids = [h.id for h in handles]
    wait_for(lambda: Run.objects.filter(id__in=ids, status=RunStatus.WAITING).count() == 1000, timeout=240,
             interval=1, message="1,000 runs to be WAITING on 4 worker threads")
    for n in range(1000):
        event_send(name="bulk", payload={"n": n})
    wait_for(lambda: Run.objects.filter(id__in=ids, status=RunStatus.COMPLETED).count() == 1000, timeout=240,
             interval=1, message="all 1,000 runs to complete")
    assert Event.objects.filter(name="bulk").count() == 1000


def test_resolved_wait_is_a_span_under_the_run_covering_the_wait(live):
    from stepwise.runs.models import Span
    from stepwise.runs.selectors import run_spans

    run_id = trigger("test-wait-event", {"filter": {"span": 1}})
    wait_status(run_id, RunStatus.WAITING)
    time.sleep(1)
    event_send(name="paid", payload={"span": 1})
    run = wait_finished(run_id)
    wp = Waitpoint.objects.get(run_id=run_id)

    wait_for(lambda: Span.objects.filter(run_id=run_id, kind="wait").exists(), message="the wait span")
    span = Span.objects.get(run_id=run_id, kind="wait")
    [root] = [s for s in run_spans(run_id=run_id) if s.kind == "run"]
    assert span.parent_span_id == root.span_id and span.trace_id == run.trace_id
    assert span.attributes["stepwise.waitpoint"] == wp.id and span.status == "OK"
    assert abs((span.started_at - wp.created_at).total_seconds()) < 0.01
    assert (span.ended_at - span.started_at).total_seconds() >= 1
