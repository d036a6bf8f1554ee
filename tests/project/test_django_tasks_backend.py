"""Django's Tasks framework on the Stepwise backend: the contract Django documents, on real workers.

Modelled on Django's own tests of its task backends (enqueue, get_result, refresh, errors,
priority, run_after, queue_name, takes_context, async), with Stepwise's workers running the tasks.
"""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued
from django.utils import timezone

from stepwise.runs.engine.errors import AbortRun, RunInterrupted
from stepwise.runs.models import Run
from stepwise.runs.services import run_cancel
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.django_backend import StepwiseBackend
from stepwise.tasks.models import Queue
from stepwise.tasks.registry import UnknownTask, task_get
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import third_step_flaky
from tests.project import jobs
from tests.waiting import wait_finished


def finished(result):
    wait_finished(result.id)
    result.refresh()
    return result


def test_the_configured_backend_is_stepwise():
    assert isinstance(task_backends["default"], StepwiseBackend)
    assert isinstance(task_backends["retrying"], StepwiseBackend)
    backend = task_backends["default"]
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_an_enqueued_task_is_a_run_that_a_worker_completes(live):
    result = jobs.add.enqueue(1, 2)

    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert result.args == [1, 2] and result.kwargs == {} and result.backend == "default"
    run = Run.objects.get(id=result.id)
    assert run.task_id == "tests.project.jobs.add" and run.payload == {"args": [1, 2], "kwargs": {}}

    finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 3
    assert result.errors == [] and result.attempts == 1 and len(result.worker_ids) == 1
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
    assert Run.objects.get(id=result.id).status == RunStatus.COMPLETED


def test_keyword_arguments_and_return_values_come_back_as_json(live):
    result = finished(jobs.pair.enqueue(a=(1, 2), b={"k": "v"}))

    assert result.kwargs == {"a": [1, 2], "b": {"k": "v"}}
    assert result.return_value == [[1, 2], {"k": "v"}]


def test_get_result_from_the_task_and_the_backend_find_the_same_run(live):
    result = jobs.add.enqueue(2, 3)
    wait_finished(result.id)

    by_task = jobs.add.get_result(result.id)
    by_backend = default_task_backend.get_result(result.id)
    assert by_task.id == by_backend.id == result.id
    assert by_task.return_value == by_backend.return_value == 5
    assert by_task.task.func is jobs.add.func


def test_a_failing_task_is_failed_with_its_exception_class_and_traceback(live):
    result = finished(jobs.fail.enqueue("the order is gone"))

    assert result.status == TaskResultStatus.FAILED and result.is_finished
    assert len(result.errors) == 1
    assert result.errors[0].exception_class is ValueError
    assert "the order is gone" in result.errors[0].traceback and "raise ValueError" in result.errors[0].traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert result.attempts == 1  # Django's contract: no retry unless the backend's options ask for one


def test_the_retry_option_retries_and_replays_finished_steps(live):
    key = uuid.uuid4().hex
    result = finished(jobs.fail_once_after_a_step.enqueue(key))

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"step_ran": 1, "tries": 2}  # the step ran once, its result replayed
    assert result.attempts == 2 and result.backend == "retrying"
    assert [e.exception_class for e in result.errors] == [ConnectionError]


def test_takes_context_gives_the_task_its_result_and_attempt(live):
    result = finished(jobs.who_am_i.enqueue("me"))

    assert result.return_value == {"id": result.id, "attempt": 1, "label": "me"}


def test_priority_orders_runs_and_is_kept_on_the_result(db):
    result = jobs.add.using(priority=7).enqueue(1, 1)

    assert Run.objects.get(id=result.id).priority == 7
    assert jobs.add.get_result(result.id).task.priority == 7
    with pytest.raises(InvalidTask, match="priority"):
        jobs.add.using(priority=101)


def test_run_after_delays_the_run_until_then(db):
    later = timezone.now() + timedelta(hours=1)
    result = jobs.add.using(run_after=later).enqueue(1, 1)

    run = Run.objects.get(id=result.id)
    assert run.status == RunStatus.DELAYED and run.delay_until == later
    fetched = jobs.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY and fetched.task.run_after == later
    with pytest.raises(ValueError, match="not finished"):
        _ = fetched.return_value


def test_queue_name_sends_the_run_to_that_queue(db):
    result = jobs.add.using(queue_name="emails").enqueue(1, 1)

    assert Run.objects.get(id=result.id).queue == "emails"
    assert jobs.add.get_result(result.id).task.queue_name == "emails"
    with pytest.raises(InvalidTask, match="not valid"):
        jobs.add.using(queue_name="nowhere")


def test_arguments_that_are_not_json_are_refused_and_nothing_is_stored(db):
    with pytest.raises(TypeError, match="Unsupported type"):
        jobs.add.enqueue(object(), 1)
    assert not Run.objects.exists()


def test_an_unknown_id_or_a_run_of_another_kind_has_no_result(db):
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("run_does_not_exist")
    native = third_step_flaky.trigger({})  # a Stepwise task, not a Django one
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(native.id)
    other = jobs.pair.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        jobs.add.get_result(other.id)


def test_only_tasks_of_installed_apps_are_found_by_name(db):
    assert task_get("tests.project.jobs.add").id == "tests.project.jobs.add"
    with pytest.raises(UnknownTask):
        task_get("os.system")
    with pytest.raises(UnknownTask):
        task_get("tests.engine_tasks.executions")  # not an installed app's module


async def test_async_tasks_enqueue_and_results_load_asynchronously(live):
    from asgiref.sync import sync_to_async

    result = await jobs.double_later.aenqueue(21)
    await sync_to_async(wait_finished)(result.id)

    fetched = await jobs.double_later.aget_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL and fetched.return_value == 42
    await result.arefresh()
    assert result.return_value == 42


@pytest.mark.parametrize(("options", "message"), [
    ({"retries": 3}, "unknown option 'retries'"),
    ({"retry": 3}, r"\['retry'\] must be a dict"),
    ({"retry": {"max_attempts": 0}}, "max_attempts must be from 1"),
    ({"retry": {"attempts": 2}}, "unexpected keyword argument 'attempts'"),
    ({"environment": ""}, r"\['environment'\] must be an environment's name"),
    ("retry", "must be a dict, not str"),
])
def test_bad_options_are_an_invalid_backend_naming_the_problem(settings, options, message):
    settings.TASKS = {**settings.TASKS, "broken": {"BACKEND": "stepwise.tasks.django_backend.StepwiseBackend",
                                                  "OPTIONS": options}}
    with pytest.raises(InvalidTaskBackend, match=message) as raised:
        task_backends["broken"]
    assert str(raised.value).startswith("TASKS['broken']['OPTIONS']")


def test_enqueue_sends_djangos_task_enqueued_signal(db):
    received = []

    def receive(sender, task_result, **kwargs):
        received.append((sender, task_result))

    task_enqueued.connect(receive)
    try:
        result = jobs.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receive)
    assert received == [(StepwiseBackend, result)]


def signals_sent(result_id):
    return [json.loads(item) for item in jobs._redis.lrange(jobs.signals_key(result_id), 0, -1)]


def test_a_worker_sends_task_started_and_task_finished_once_with_the_outcome(live):
    done = finished(jobs.add.enqueue(4, 5))
    failed = finished(jobs.fail.enqueue("no stock"))
    retried = finished(jobs.fail_once_after_a_step.enqueue(f"signals-{uuid.uuid4().hex}"))

    assert signals_sent(done.id) == [["started", "RUNNING", None, []], ["finished", "SUCCESSFUL", 9, []]]
    assert signals_sent(failed.id) == [["started", "RUNNING", None, []], ["finished", "FAILED", None, ["ValueError"]]]
    # Two attempts, one run: started once, finished once, with the first attempt's error kept.
    assert signals_sent(retried.id) == [["started", "RUNNING", None, []],
                                        ["finished", "SUCCESSFUL", retried.return_value, ["ConnectionError"]]]


def test_a_run_of_a_limited_queue_sends_task_finished_once_too(live):
    # Such a run's outcome is stored by the ORM path that also ends runs without a worker.
    environments_ensure()
    Queue.objects.update_or_create(environment_id="dev", name="emails", defaults={"concurrency_limit": 1})
    done = finished(jobs.add.using(queue_name="emails").enqueue(2, 3))
    assert Run.objects.get(id=done.id).queue == "emails"
    assert signals_sent(done.id) == [["started", "RUNNING", None, []], ["finished", "SUCCESSFUL", 5, []]]


def test_a_run_ended_with_no_worker_sends_task_finished_once_it_is_stored(transactional_db):
    later = jobs.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    assert signals_sent(later.id) == []

    run_cancel(run_id=later.id)
    # Canceled before any worker took it: no task_started, and task_finished with the run's end.
    assert signals_sent(later.id) == [["finished", "FAILED", None, ["RunInterrupted"]]]


@pytest.mark.parametrize(("kind", "exception_class"), [
    ("TimedOut", TimeoutError), ("Canceled", RunInterrupted), ("Crashed", RunInterrupted),
    ("ValueError", ValueError), ("stepwise.runs.engine.errors.AbortRun", AbortRun),
    ("runs.engine.errors.AbortRun", AbortRun),  # as Stepwise 0.1 stored it, before its packages moved
])
def test_errors_name_an_exception_class_django_can_import(db, kind, exception_class):
    result = jobs.add.enqueue(1, 2)
    Run.objects.filter(id=result.id).update(status=RunStatus.FAILED, error={"type": kind, "message": "it ended"})

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is exception_class
    assert f"{kind}: it ended" in result.errors[0].traceback
