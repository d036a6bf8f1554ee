"""A backend of Django's Tasks framework: ``@task`` functions enqueued with ``.enqueue()`` become Stepwise runs.

Example (settings.py)::

    TASKS = {"default": {"BACKEND": "stepwise.tasks.django_backend.StepwiseBackend"}}

A Django task is a Stepwise task whose id is its module path (``shop.tasks.send_receipt``): it is
claimed by a worker, retried per ``OPTIONS["retry"]`` (one attempt by default, as Django's own
backends do), checkpoints the steps it calls, and shows in the console like any other run.
"""
from __future__ import annotations

import inspect
from importlib.util import find_spec
from typing import Any

from django.apps import apps
from django.db import transaction
from django.tasks import DEFAULT_TASK_QUEUE_NAME, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from stepwise.runs.engine.context import current_context
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.engine.hooks import Hooks, RunResult
from stepwise.runs.engine.retry import RetryPolicy
from stepwise.runs.lifecycle import run_ended_without_worker_listen
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.models import Queue
from stepwise.tasks.registry import task_get, task_register, task_resolver_add
from stepwise.tasks.sdk import TaskDefinition
from stepwise.tasks.services import environments_ensure

# What each run status is called in Django's terms.
STATUS_FOR_DJANGO = {
    RunStatus.DELAYED: TaskResultStatus.READY,
    RunStatus.QUEUED: TaskResultStatus.READY,
    RunStatus.RETRYING: TaskResultStatus.READY,  # "ready to be executed again"
    RunStatus.EXECUTING: TaskResultStatus.RUNNING,
    RunStatus.WAITING: TaskResultStatus.RUNNING,  # started, paused on a wait, not finished
    RunStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    RunStatus.FAILED: TaskResultStatus.FAILED,
    RunStatus.CANCELED: TaskResultStatus.FAILED,
    RunStatus.TIMED_OUT: TaskResultStatus.FAILED,
    RunStatus.CRASHED: TaskResultStatus.FAILED,
    RunStatus.EXPIRED: TaskResultStatus.FAILED,  # "unable to start"
}


# The exception class Django shows for an error Stepwise recorded itself (no exception was raised).
ENDED_BY_STEPWISE = {
    "TimedOut": "builtins.TimeoutError",  # max_duration passed
    "Canceled": "stepwise.runs.engine.errors.RunInterrupted",
    "Expired": "stepwise.runs.engine.errors.RunInterrupted",  # the TTL passed before it started
    "WorkerLost": "stepwise.runs.engine.errors.RunInterrupted",  # its worker's lease expired
    "Crashed": "stepwise.runs.engine.errors.RunInterrupted",  # its workers kept dying
}

# What a backend's OPTIONS may hold.
OPTIONS = ("retry", "environment")


class StepwiseBackend(BaseTaskBackend):
    """Run Django tasks as durable Stepwise runs, stored in the database and executed by Stepwise's workers.

    ``OPTIONS``: ``retry`` (a retry policy, e.g. ``{"max_attempts": 3}``; default one attempt) and
    ``environment`` (where runs start outside a run; default ``STEPWISE_ENVIRONMENT``).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.retry = _options_check(alias, self.options)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Start a run of ``task`` with these arguments and return its result, READY."""
        self.validate_task(task)
        # As Django's own backends do: arguments that are not JSON raise TypeError, and nothing is stored.
        payload = {"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))}
        definition = task_definition(task)
        environment = self._environment()
        queue = None
        if task.queue_name != DEFAULT_TASK_QUEUE_NAME:
            queue = task.queue_name
            if task.queue_name in self.queues:  # named in settings: the lane exists, to pause or limit it
                _queue_declare(environment or current_context.get().environment, queue)
        try:
            handle = definition.trigger(
                payload,
                priority=task.priority,
                delay_until=task.run_after,
                queue=queue,
                environment=environment,
            )
        except StepwiseError as exc:
            raise InvalidTask(str(exc)) from exc
        result = self.get_result(handle.id)
        task_enqueued.send(type(self), task_result=result)
        return result

    def _environment(self) -> str | None:
        if current_context.get() is not None:
            return self.options.get("environment")  # a child starts in its parent's environment
        from django.conf import settings

        return self.options.get("environment") or settings.STEPWISE_ENVIRONMENT

    def get_result(self, result_id: str) -> TaskResult:
        """Return the result of the run ``result_id``, or raise TaskResultDoesNotExist."""
        run = Run.objects.filter(id=result_id).prefetch_related("attempts").first()
        task = _django_task(run.task_id) if run is not None else None
        if task is None:
            raise TaskResultDoesNotExist(result_id)
        queue_name = DEFAULT_TASK_QUEUE_NAME if run.queue == task_definition(task).queue_name else run.queue
        return result_from_run(run, task.using(
            priority=run.priority, queue_name=queue_name, run_after=run.delay_until, backend=self.alias,
        ))


def _options_check(alias: str, options: Any) -> RetryPolicy:
    """Return the retry policy of a backend's OPTIONS, or raise InvalidTaskBackend naming what is wrong."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(options, dict):
        raise InvalidTaskBackend(f"{where} must be a dict, not {type(options).__name__}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidTaskBackend(f"{where}: unknown option {', '.join(map(repr, unknown))}; "
                                 f"StepwiseBackend takes {' and '.join(map(repr, OPTIONS))}")
    environment = options.get("environment")
    if environment is not None and (not isinstance(environment, str) or not environment):
        raise InvalidTaskBackend(f"{where}['environment'] must be an environment's name, not {environment!r}")
    retry = options.get("retry", {})
    if not isinstance(retry, dict):
        raise InvalidTaskBackend(f"{where}['retry'] must be a dict such as {{'max_attempts': 3}}, "
                                 f"not {type(retry).__name__}")
    try:
        return RetryPolicy(**{"max_attempts": 1, **retry})
    except (TypeError, ValueError) as exc:
        raise InvalidTaskBackend(f"{where}['retry']: {exc}") from None


def _queue_declare(environment: str, name: str) -> None:
    environments_ensure()
    Queue.objects.bulk_create([Queue(environment_id=environment, name=name)], ignore_conflicts=True)


def result_from_run(run: Run, task: Task) -> TaskResult:
    """Return Django's view of a run: its status, times, arguments, errors and workers."""
    attempts = sorted(run.attempts.all(), key=lambda a: a.number)
    errors = [_task_error(a.error) for a in attempts if a.error]
    if run.status != RunStatus.COMPLETED and run.error and not errors:
        errors.append(_task_error(run.error))  # it failed before any attempt did (crashed, timed out)
    payload = run.payload if isinstance(run.payload, dict) else {}
    result = TaskResult(
        task=task,
        id=run.id,
        status=STATUS_FOR_DJANGO[RunStatus(run.status)],
        enqueued_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        last_attempted_at=attempts[-1].started_at if attempts else None,
        args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}),
        backend=task.backend,
        errors=errors,
        worker_ids=[a.worker_id for a in attempts],
    )
    if run.status == RunStatus.COMPLETED:
        object.__setattr__(result, "_return_value", run.output)
    return result


def _task_error(error: dict[str, Any]) -> TaskError:
    kind = str(error.get("type") or "Exception")
    # Stored errors name built-in exceptions without their module, and the ends Stepwise records itself
    # by a word; Django imports the path.
    path = kind if "." in kind else ENDED_BY_STEPWISE.get(kind, f"builtins.{kind}")
    if path.startswith(("runs.", "tasks.")) and _module_exists(f"stepwise.{path}"):
        path = f"stepwise.{path}"  # stored by Stepwise 0.1, whose packages were the top-level runs and tasks
    return TaskError(exception_class_path=path, traceback=error.get("traceback") or f"{kind}: {error.get('message')}")


def _module_exists(path: str) -> bool:
    """Tell whether the module of a class path (``package.module.Class``) is there to import."""
    try:
        return find_spec(path.rpartition(".")[0]) is not None
    except ImportError:
        return False


def _in_installed_app(module: str) -> bool:
    return any(module == app.name or module.startswith(f"{app.name}.") for app in apps.get_app_configs())


def _django_task(task_id: str) -> Task | None:
    """Return the Django task whose module path is ``task_id`` if it runs on Stepwise, else None.

    Only modules of installed apps are imported: a task id comes from the database or a request.
    """
    module, _, name = task_id.rpartition(".")
    if not module or not _in_installed_app(module):
        return None
    try:
        task = import_string(task_id)
    except ImportError:
        return None
    if not isinstance(task, Task) or not isinstance(task.get_backend(), StepwiseBackend):
        return None
    return task


def task_definition(task: Task) -> TaskDefinition:
    """Return the Stepwise task that runs ``task``, registering it on first use."""
    try:
        return task_get(task.module_path)
    except StepwiseError:
        pass
    definition = _definition_for(task)
    task_register(definition)
    return definition


def _definition_for(task: Task) -> TaskDefinition:
    backend = task.get_backend()
    func = task.func
    if inspect.iscoroutinefunction(func):
        async def call(payload: dict[str, Any], ctx) -> Any:
            args, kwargs = payload.get("args", []), payload.get("kwargs", {})
            if task.takes_context:
                args = [TaskContext(task_result=await backend.aget_result(ctx.run_id)), *args]
            return await func(*args, **kwargs)
    else:
        def call(payload: dict[str, Any], ctx) -> Any:
            args, kwargs = payload.get("args", []), payload.get("kwargs", {})
            if task.takes_context:
                args = [TaskContext(task_result=backend.get_result(ctx.run_id)), *args]
            return func(*args, **kwargs)
    # Named after the user's function: the version is the hash of its module, and the console shows its place.
    call.__module__, call.__qualname__, call.__name__ = func.__module__, func.__qualname__, func.__name__
    return TaskDefinition(id=task.module_path, fn=call, retry=backend.retry, hooks=_signal_hooks(task))


def _signal_hooks(task: Task) -> Hooks:
    """Send Django's ``task_started`` and ``task_finished`` through the run's once-per-run hooks.

    ``task_started`` goes out before the first attempt's code (a replayed attempt does not send it
    again); ``task_finished`` once the run ends, with the final status, its return value or its
    errors, from the worker that ends it, as the outcome is being stored.
    """
    backend = task.get_backend()
    sender = type(backend)

    def started(payload: Any, ctx: Any) -> None:
        task_started.send(sender=sender, task_result=backend.get_result(ctx.run_id))

    def finished(payload: Any, result: RunResult, ctx: Any) -> None:
        task_finished.send(sender=sender, task_result=_result_as_ended(task, ctx, result))

    return Hooks(on_start=(started,), on_complete=(finished,))


def _result_as_ended(task: Task, ctx: Any, ended: RunResult) -> TaskResult:
    # The hook runs as the outcome is written: the run and its attempt are given their end in memory.
    run = Run.objects.prefetch_related("attempts").get(id=ctx.run_id)
    run.status, run.finished_at = ended.status, timezone.now()
    run.output, run.error = ended.output, ended.error
    for attempt in run.attempts.all():
        if attempt.number == ctx.attempt and ended.error and not attempt.error:
            attempt.error = ended.error
    return result_from_run(run, task)


def _finished_without_worker(run_id: str, status: str) -> None:
    """Send ``task_finished`` for a Django task's run that ended with no worker (canceled, expired, crashed)."""

    def send() -> None:
        # The task id first (most runs are not Django tasks'), the run and its attempts only for one.
        task_id = Run.objects.filter(id=run_id).values_list("task_id", flat=True).first()
        task = _django_task(task_id) if task_id is not None else None
        if task is not None:
            run = Run.objects.prefetch_related("attempts").get(id=run_id)
            task_finished.send(sender=type(task.get_backend()), task_result=result_from_run(run, task))

    transaction.on_commit(send, robust=True)


run_ended_without_worker_listen(_finished_without_worker)


def _resolve(task_id: str) -> TaskDefinition | None:
    """Find the Stepwise task of a Django task a worker or the API names before anything enqueued it here."""
    task = _django_task(task_id)
    return _definition_for(task) if task is not None else None


task_resolver_add(_resolve)

__all__ = ["STATUS_FOR_DJANGO", "StepwiseBackend", "result_from_run", "task_definition"]
