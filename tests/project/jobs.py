"""Django tasks (Django's own ``@task``) run by the Stepwise backend in the backend's tests."""
from __future__ import annotations

from django.tasks import task

from tasks.sdk import step
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
