"""Django tasks (Django's own ``@task``) run by the Stepwise backend in the backend's tests."""
from __future__ import annotations

import json

from django.dispatch import receiver
from django.tasks import task
from django.tasks.signals import task_finished, task_started

from stepwise.tasks.django_backend import StepwiseBackend
from stepwise.tasks.sdk import step
from tests.engine_tasks import _redis


@task()
def add(a, b):
    return a + b


@task()
def pair(a, b):
    return (a, b)  # returned as JSON gives it back: a list


@task(takes_context=True)
def who_am_i(context, label):
    return {"id": context.task_result.id, "attempt": context.attempt, "label": label}


@task()
def fail(message):
    raise ValueError(message)


@task()
async def double_later(x):
    return x * 2


@step()
def remember(key):
    return _redis.incr(f"stepwise-test:django-task:{key}")


@task(backend="retrying")
def fail_once_after_a_step(key):
    done = remember(key)  # a checkpoint: the retry replays it instead of counting again
    tries = _redis.incr(f"stepwise-test:django-task:{key}:tries")
    if tries == 1:
        raise ConnectionError("first try fails")
    return {"step_ran": done, "tries": tries}


def signals_key(result_id):
    return f"stepwise-test:django-signals:{result_id}"


@receiver(task_started, sender=StepwiseBackend)
@receiver(task_finished, sender=StepwiseBackend)
def _record_signal(sender, signal, task_result, **kwargs):
    # Sent in the worker that runs the task: recorded where the test process can read it.
    name = "started" if signal is task_started else "finished"
    errors = [e.exception_class.__name__ for e in task_result.errors]
    value = task_result.return_value if task_result.status == "SUCCESSFUL" else None
    _redis.rpush(signals_key(task_result.id), json.dumps([name, task_result.status, value, errors]))
    _redis.expire(signals_key(task_result.id), 3600)
