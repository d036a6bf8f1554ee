"""Send "run this now" hints to workers after commit; the database stays the source of truth."""
from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from django.utils import timezone

from runs.models import Run
from runs.statuses import RunStatus
from tasks.models import Queue

logger = logging.getLogger(__name__)


def dispatch_run_on_commit(run_id: str, *, priority: int = 0) -> None:
    """Enqueue a Celery message for a QUEUED run once the transaction commits."""
    transaction.on_commit(lambda: dispatch_run(run_id, priority=priority))


EXECUTE_RUN = "stepwise.execute_run"  # the Celery task in runs.worker, named so no import points up


def dispatch_run(run_id: str, *, priority: int = 0) -> None:
    """Enqueue a Celery message for a run; a lost message is re-sent by the sweeper."""
    try:
        # No broker priority: on Redis 0 is the *highest* and high numbers starve behind a busy
        # list. Priority is decided in the database at claim time (see runs.store.queue_has_room).
        current_app.send_task(EXECUTE_RUN, args=[run_id])
    except Exception:
        logger.warning("broker unavailable; run %s will be re-dispatched by the sweeper", run_id)


def queue_dispatch_on_commit(queue_name: str) -> None:
    """After commit, hint the next QUEUED runs of a limited queue that a slot is free."""
    transaction.on_commit(lambda: queue_dispatch(queue_name))


def queue_dispatch(queue_name: str) -> int:
    """Hint as many QUEUED runs of a queue as it has free slots, best priority first."""
    queue = Queue.objects.filter(name=queue_name).first()
    if queue is None or queue.paused or queue.concurrency_limit is None:
        return 0
    limit = queue.concurrency_limit
    # Limits hold per concurrency key: count the free slots of each key separately.
    executing: dict[str, int] = {}
    for key in Run.objects.executing_in(queue_name).values_list("concurrency_key", flat=True):
        executing[key] = executing.get(key, 0) + 1
    candidates = (
        Run.objects.filter(queue=queue_name, status=RunStatus.QUEUED)
        .order_by("-priority", "id")
        .values_list("id", "priority", "concurrency_key")[: limit * 20]
    )
    picked: list[tuple[str, int]] = []
    hinted: dict[str, int] = {}
    for run_id, priority, key in candidates:
        busy = executing.get(key, 0) if key else sum(executing.values())
        # Twice the free slots: a hint may lose its claim to a concurrent one.
        if hinted.get(key, 0) < (limit - busy) * 2:
            hinted[key] = hinted.get(key, 0) + 1
            picked.append((run_id, priority))
    Run.objects.filter(id__in=[i for i, _ in picked]).update(dispatched_at=timezone.now())
    for run_id, priority in picked:
        dispatch_run(run_id, priority=priority)
    return len(picked)
