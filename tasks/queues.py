"""Queues of an environment: pause, resume and concurrency limits, effective at the next claim."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q

from runs.dispatch import dispatch_run, queue_dispatch_on_commit
from runs.engine.errors import StepwiseError
from runs.models import Run
from runs.statuses import RunStatus
from tasks.models import Environment, Queue

MAX_LIMIT = 10_000


class QueueNotFound(StepwiseError):
    """No queue has this name in this environment."""


class QueueChangeRefused(StepwiseError):
    """A queue of a paused environment cannot be resumed on its own; the environment is resumed instead."""


class InvalidQueueLimit(StepwiseError):
    """A concurrency limit must be a positive integer, or null for no limit."""


@dataclass(frozen=True)
class QueueStats:
    """A queue with how many of its runs execute and wait right now."""

    name: str
    concurrency_limit: int | None
    paused: bool
    executing: int
    queued: int


def _update(environment: str, name: str, **fields) -> Queue:
    with transaction.atomic():
        # The environment's row first, then the queue's: the order pausing the environment takes.
        env = Environment.objects.select_for_update().filter(slug=environment).first()
        queue = Queue.objects.select_for_update().filter(environment_id=environment, name=name).first()
        if env is None or queue is None:
            raise QueueNotFound(f"no queue named '{name}' in environment '{environment}'")
        if "paused" in fields and env.paused_at is not None:
            # The environment holds every queue paused; this changes what its resume restores.
            _paused_environment_queue_change(env, name, fields.pop("paused"))
        for attr, value in fields.items():
            setattr(queue, attr, value)
        queue.save(update_fields=[*fields, "updated_at"])
        queues_released_on_commit(environment, [name], limited=queue.concurrency_limit is not None)
    return queue


def queues_released_on_commit(environment: str, names: list[str], *, limited: bool | None = None) -> None:
    """After commit, hint the queued runs of queues that were resumed or given room (refused hints get new ones)."""
    for name in names:
        has_limit = limited if limited is not None else Queue.objects.filter(
            environment_id=environment, name=name, concurrency_limit__isnull=False).exists()
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
    for run_id, attempts in queued.values_list("id", "attempt_count")[:1000]:
        dispatch_run(run_id, resume=attempts > 0)


def queue_pause(*, environment: str, name: str) -> Queue:
    """Stop starting runs of a queue; executing runs finish normally."""
    return _update(environment, name, paused=True)


def queue_resume(*, environment: str, name: str) -> Queue:
    """Start runs of a paused queue again, best priority first."""
    return _update(environment, name, paused=False)


def queue_limit_set(*, environment: str, name: str, limit: int | None) -> Queue:
    """Set a queue's concurrency limit (per concurrency key when runs carry one); None removes it."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT):
        raise InvalidQueueLimit(f"a concurrency limit must be an integer from 1 to {MAX_LIMIT}, or null")
    return _update(environment, name, concurrency_limit=limit)


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
