"""Tasks the benchmark runs: a no-op run, chains of steps, a wait, and a plain Celery no-op.

Workers load this module through STEPWISE_TASK_MODULES; the bench command imports it too.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from stepwise.tasks.sdk import Retry, step, task, wait

NOOP_TASK_ID = "bench-noop"
STEPS_TASK_ID = "bench-steps"
WAIT_TASK_ID = "bench-wait"
OBSERVABILITY_TASK_ID = "bench-observability-steps"
RAW_TASK_NAME = "stepwise.bench_raw_noop"


def bench_work(index: int, total: int) -> int:
    """Do the trivial work of one step: add the index to the running total."""
    return total + index


bench_work_step = step(name="work")(bench_work)


def step_chain(steps: int, work: Callable[[int, int], int]) -> int:
    """Call ``work`` ``steps`` times in a row; the durable and the plain variant share this body."""
    total = 0
    for index in range(steps):
        total = work(index, total)
    return total


@task(id=NOOP_TASK_ID, retry=Retry(max_attempts=1))
def bench_noop(payload: Any, ctx: Any) -> None:
    """Do nothing: measures the engine's own cost per run."""
    return None


@task(id=STEPS_TASK_ID, retry=Retry(max_attempts=1))
def bench_steps(payload: Any, ctx: Any) -> dict[str, int]:
    """Run ``payload["steps"]`` checkpointed steps of trivial work."""
    return {"total": step_chain(int(payload["steps"]), bench_work_step)}


@task(id=WAIT_TASK_ID, retry=Retry(max_attempts=1))
def bench_wait(payload: Any, ctx: Any) -> None:
    """Wait until ``payload["until"]`` (an ISO date shared by the batch), then finish."""
    wait.until(datetime.fromisoformat(payload["until"]))


@task(id=OBSERVABILITY_TASK_ID, retry=Retry(max_attempts=1))
def observability_steps(payload: dict[str, Any], ctx: Any) -> int:
    """Run ``payload["steps"]`` trivial steps, each logging nothing and returning its index."""
    total = 0
    for i in range(payload["steps"]):
        total += ctx.step("s", int, i)
    return total


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name=RAW_TASK_NAME, ignore_result=True, acks_late=True)
def bench_raw_noop(done_key: str, sent_at: float | None = None) -> None:
    """Do nothing but note when it started and when it was sent, so the bench can time the batch."""
    _redis().rpush(done_key, f"{time.time()!r} {sent_at!r}")


@worker_ready.connect
def _wake_event_loop_regularly(sender: Any = None, **kwargs: Any) -> None:
    """With --wake-interval, tick the worker's event loop so thread-pool acks are not held back.

    Works around celery/celery#6941: with ``--pool=threads`` and prefetch 1, a slot freed by a
    thread is noticed only at the event loop's next timer, seconds later.
    """
    interval = float(os.environ.get("STEPWISE_BENCH_WAKE_INTERVAL") or 0)
    if interval > 0 and sender is not None:
        sender.timer.call_repeatedly(interval, _tick)


def _tick() -> None:
    """Do nothing; being scheduled is the point."""
