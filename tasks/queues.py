"""Queues of an environment: pause, resume, concurrency and rate limits, effective at the next claim."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q

from stepwise.runs.dispatch import dispatch_run, queue_dispatch_on_commit
from stepwise.runs.engine.durations import InvalidDuration, duration_seconds
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.models import Environment, Queue

MAX_LIMIT = 10_000


class QueueNotFound(StepwiseError):
    """No queue has this name in this environment."""


class QueueChangeRefused(StepwiseError):
    """A queue of a paused environment cannot be resumed on its own; the environment is resumed instead."""


class InvalidQueueLimit(StepwiseError):
    """A concurrency limit must be a positive integer, or null for no limit."""


UNCHANGED = object()  # a limit left as it is

MAX_RATE_PERIOD = 7 * 24 * 3600.0
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")


def rate_parse(value: Any) -> tuple[int, float] | None:
    """Read a rate limit: ``"10/s"``, ``"1000/1h"``, ``"5/30s"`` (runs per period), or None for none.

    Returns (runs, period in seconds); raises InvalidQueueLimit naming what is wrong.
    """
    if value is None:
        return None
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidQueueLimit(
            f"not a rate limit: {str(value)[:40]!r} (give runs per period, e.g. '10/s' or '1000/1h')"
        )
    runs, period_text = int(match.group(1)), match.group(2)
    if not 0 < runs <= MAX_LIMIT:
        raise InvalidQueueLimit(f"a rate limit's runs must be an integer from 1 to {MAX_LIMIT}")
    try:
        period = duration_seconds(period_text if period_text[0].isdigit() else f"1{period_text}")
    except InvalidDuration as exc:
        raise InvalidQueueLimit(f"a rate limit's period: {exc}") from None
    if not 0.001 <= period <= MAX_RATE_PERIOD:
        raise InvalidQueueLimit("a rate limit's period must be from 1ms to 7 days")
    return runs, period


def rate_text(runs: int | None, period: float | None) -> str | None:
    """Say a rate limit the way rate_parse reads it back: '10/s', '1000/h', '5/30s'; None without one."""
    if runs is None or period is None:
        return None
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count = period / seconds
        if count >= 1 and count == int(count):
            return f"{runs}/{unit}" if count == 1 else f"{runs}/{int(count)}{unit}"
    return f"{runs}/{period:g}s"


@dataclass(frozen=True)
class QueueStats:
    """A queue with how many of its runs execute and wait right now."""

    name: str
    concurrency_limit: int | None
    paused: bool
    executing: int
    queued: int
    total_limit: int | None = None
    rate_limit: str | None = None


def _update(environment: str, name: str, **fields) -> Queue:
    with transaction.atomic():
        # The environment's row first, then the queue's: the order pausing the environment takes.
        # NO KEY: runs and queues referencing the environment (foreign-key checks) are not blocked by it.
        env = Environment.objects.select_for_update(no_key=True).filter(slug=environment).first()
        queue = Queue.objects.select_for_update().filter(environment_id=environment, name=name).first()
        if env is None or queue is None:
            raise QueueNotFound(f"no queue named '{name}' in environment '{environment}'")
        if "paused" in fields and env.paused_at is not None:
            # The environment holds every queue paused; this changes what its resume restores.
            _paused_environment_queue_change(env, name, fields.pop("paused"))
        for attr, value in fields.items():
            setattr(queue, attr, value)
        queue.save(update_fields=[*fields, "updated_at"])
        queues_released_on_commit(environment, [name], limited=queue.limited)
    return queue


def queues_released_on_commit(environment: str, names: list[str], *, limited: bool | None = None) -> None:
    """After commit, hint the queued runs of queues that were resumed or given room (refused hints get new ones)."""
    for name in names:
        has_limit = limited if limited is not None else any(
            q.limited for q in Queue.objects.filter(environment_id=environment, name=name))
        if has_limit:
            queue_dispatch_on_commit(name, environment=environment)
        else:
            transaction.on_commit(lambda name=name: _hint_all_queued(environment, name))


def _paused_environment_queue_change(env: Environment, name: str, paused: bool) -> None:
    """Record a pause of one queue of a paused environment as the state its resume restores; refuse a resume."""
    if not paused:
        raise QueueChangeRefused(f"environment '{env.slug}' is paused: resume the environment first "
                                 f"(queue '{name}' then resumes unless it was paused before)")
    if name not in env.queues_paused_before:
        env.queues_paused_before = sorted([*env.queues_paused_before, name])
        env.save(update_fields=["queues_paused_before"])


def _hint_all_queued(environment: str, name: str) -> None:
    # An unlimited queue takes every queued run; the sweeper re-sends hints beyond this batch.
    queued = Run.objects.queued_in(name, environment=environment)
    for run_id, attempts, priority in queued.values_list("id", "attempt_count", "priority")[:1000]:
        dispatch_run(run_id, resume=attempts > 0, priority=priority)


def queue_pause(*, environment: str, name: str) -> Queue:
    """Stop starting runs of a queue; executing runs finish normally."""
    return _update(environment, name, paused=True)


def queue_resume(*, environment: str, name: str) -> Queue:
    """Start runs of a paused queue again, best priority first."""
    return _update(environment, name, paused=False)


def queue_limit_set(*, environment: str, name: str, limit: int | None | object = UNCHANGED,
                    total: int | None | object = UNCHANGED) -> Queue:
    """Set a queue's concurrency limit (per concurrency key when runs carry one) and its total across keys.

    None removes a limit; a limit not given stays as it is. Both hold from the next claim.
    """
    fields = {}
    for field_name, value, what in (("concurrency_limit", limit, "a concurrency limit"),
                                    ("total_limit", total, "a total limit")):
        if value is UNCHANGED:
            continue
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LIMIT):
            raise InvalidQueueLimit(f"{what} must be an integer from 1 to {MAX_LIMIT}, or null")
        fields[field_name] = value
    if not fields:
        raise InvalidQueueLimit("give a concurrency limit, a total limit or both")
    return _update(environment, name, **fields)


def queue_rate_set(*, environment: str, name: str, rate: Any) -> Queue:
    """Set a queue's rate limit (``"10/s"``: at most 10 starts in any second, evenly spaced); None removes it.

    It holds from the next claim: the next start may come at once.
    """
    parsed = rate_parse(rate)
    runs, period = parsed if parsed is not None else (None, None)
    return _update(environment, name, rate_limit=runs, rate_period=period, rate_next_at=None)


def queue_list(*, environment: str) -> list[QueueStats]:
    """Return every queue of an environment with its executing and queued counts, in two queries."""
    runs = Run.objects.filter(status__in=[RunStatus.EXECUTING, RunStatus.QUEUED], environment_id=environment)
    counts = {
        row["queue"]: row
        for row in runs.values("queue").annotate(
            executing=Count("id", filter=Q(status=RunStatus.EXECUTING)),
            queued=Count("id", filter=Q(status=RunStatus.QUEUED)),
        )
    }
    return [
        QueueStats(
            name=q.name,
            concurrency_limit=q.concurrency_limit,
            total_limit=q.total_limit,
            rate_limit=rate_text(q.rate_limit, q.rate_period),
            paused=q.paused,
            executing=counts.get(q.name, {}).get("executing", 0),
            queued=counts.get(q.name, {}).get("queued", 0),
        )
        for q in Queue.objects.filter(environment_id=environment).order_by("name")
    ]


def queue_get(*, environment: str, name: str) -> QueueStats:
    """Return one queue of an environment with its counts, or raise QueueNotFound."""
    for stats in queue_list(environment=environment):
        if stats.name == name:
            return stats
    raise QueueNotFound(f"no queue named '{name}' in environment '{environment}'")
