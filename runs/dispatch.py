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


# Redis keeps one list per message priority and workers empty the lower numbers first: a run
# that resumes (its wait resolved, its retry due) goes ahead of every new run in the queue.
RESUME_PRIORITY = 0
NEW_WORK_PRIORITY = 9


def dispatch_run_on_commit(run_id: str, *, resume: bool = False) -> None:
    """Enqueue a Celery message for a QUEUED run once the transaction commits."""
    transaction.on_commit(lambda: dispatch_run(run_id, resume=resume))


EXECUTE_RUN = "stepwise.execute_run"  # the Celery task in runs.worker, named so no import points up


def dispatch_run(run_id: str, *, resume: bool = False) -> None:
    """Enqueue a Celery message for a run; a lost message is re-sent by the sweeper.

    A run's own priority is decided in the database at claim time (runs.store.queue_has_room);
    the broker only puts resumes ahead of new work.
    """
    try:
        current_app.send_task(EXECUTE_RUN, args=[run_id], priority=RESUME_PRIORITY if resume else NEW_WORK_PRIORITY)
    except Exception:
        logger.warning("broker unavailable; run %s will be re-dispatched by the sweeper", run_id)
        _hint_lost(run_id)


def _hint_lost(run_id: str) -> None:
    """Mark a run's hint as never sent, so the sweeper re-sends it as soon as the broker is back."""
    try:
        Run.objects.filter(id=run_id, status=RunStatus.QUEUED).update(dispatched_at=None)
    except Exception:  # the database may be gone too; the sweeper's age rule still finds the run
        logger.warning("could not mark run %s for re-dispatch", run_id)


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
        Run.objects.queued_in(queue_name)
        .values_list("id", "attempt_count", "concurrency_key")[: limit * 20]
    )
    picked: list[tuple[str, int]] = []
    hinted: dict[str, int] = {}
    for run_id, attempts, key in candidates:
        busy = executing.get(key, 0) if key else sum(executing.values())
        # Twice the free slots: a hint may lose its claim to a concurrent one.
        if hinted.get(key, 0) < (limit - busy) * 2:
            hinted[key] = hinted.get(key, 0) + 1
            picked.append((run_id, attempts > 0))
    Run.objects.filter(id__in=[i for i, _ in picked]).update(dispatched_at=timezone.now())
    for run_id, resume in picked:
        dispatch_run(run_id, resume=resume)
    return len(picked)
