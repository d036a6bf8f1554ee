"""Queues of an environment: pause, resume and concurrency limits, effective at the next claim."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q

from runs.dispatch import dispatch_run, queue_dispatch_on_commit
from runs.engine.errors import StepwiseError
from runs.models import Run
from runs.statuses import RunStatus
from tasks.models import Queue

MAX_LIMIT = 10_000


class QueueNotFound(StepwiseError):
    """No queue has this name in this environment."""


class InvalidQueueLimit(StepwiseError):
    """A concurrency limit must be a positive integer, or null for no limit."""


UNCHANGED = object()  # a limit left as it is


@dataclass(frozen=True)
class QueueStats:
    """A queue with how many of its runs execute and wait right now."""

    name: str
    concurrency_limit: int | None
    paused: bool
    executing: int
    queued: int
    total_limit: int | None = None


def _update(environment: str, name: str, **fields) -> Queue:
    with transaction.atomic():
        queue = Queue.objects.select_for_update().filter(environment_id=environment, name=name).first()
        if queue is None:
            raise QueueNotFound(f"no queue named '{name}' in environment '{environment}'")
        for attr, value in fields.items():
            setattr(queue, attr, value)
        queue.save(update_fields=[*fields, "updated_at"])
        # Queued runs whose hints were refused while the queue was full or paused get new ones.
        if not queue.limited:
            transaction.on_commit(lambda: _hint_all_queued(environment, name))
        else:
            queue_dispatch_on_commit(name, environment=environment)
    return queue


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
