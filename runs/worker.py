"""Celery tasks of the engine: thin wrappers that load by id and call the engine."""
from __future__ import annotations

import logging
import os
import socket
import uuid

from billiard.process import current_process
from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from runs.dispatch import EXECUTE_RUN
from runs.engine.errors import StoreUnavailable
from runs.engine.executor import AttemptOutcome, attempt_execute
from runs.models import Run
from runs.store import OrmRunStore
from runs.tracing.setup import database_processor
from tasks.models import Queue
from tasks.registry import UnknownTask, task_get
from tasks.secrets import secrets_for_environment

logger = logging.getLogger(__name__)
_worker_ids: dict[int, str] = {}


def worker_id() -> str:
    """Return this process's worker id: unique per process, never reused after a restart."""
    pid = os.getpid()
    if pid not in _worker_ids:
        _worker_ids[pid] = f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
    return _worker_ids[pid]


def _lookup(task_id: str):
    try:
        return task_get(task_id).executable()
    except UnknownTask:
        return None


def _close_thread_connection() -> None:
    # Called from the heartbeat thread: closes that thread's own connection.
    connection.close()


def _hard_stop() -> None:
    """Exit this pool child: its only attempt is stuck in code that does not return; the pool starts another.

    Only a prefork child runs one attempt at a time; a threads pool or the embedded worker runs
    several (and the console), so there the stuck attempt's thread is left to finish on its own.
    """
    if current_process().name.startswith("ForkPoolWorker"):
        logger.warning("a run's code did not return after it was interrupted; this pool child exits")
        os._exit(75)


def run_attempt(run_id: str) -> AttemptOutcome | None:
    """Claim and execute one attempt of a run in this process."""
    close_old_connections()
    try:
        return attempt_execute(
            store=OrmRunStore(span_source=database_processor.take),
            run_id=run_id,
            worker_id=worker_id(),
            lookup=_lookup,
            heartbeat_interval=settings.STEPWISE_HEARTBEAT_SECONDS,
            max_output_bytes=settings.STEPWISE_MAX_PAYLOAD_BYTES,
            on_thread_exit=_close_thread_connection,
            env_loader=secrets_for_environment,
            hard_stop=_hard_stop,
            max_metadata_bytes=settings.STEPWISE_MAX_METADATA_BYTES,
            metadata_flush_seconds=settings.STEPWISE_METADATA_FLUSH_SECONDS,
        )
    finally:
        close_old_connections()


@shared_task(name=EXECUTE_RUN, ignore_result=True)
def execute_run(run_id: str) -> None:
    """Execute one attempt of a run; the message is a hint, the claim decides."""
    try:
        _execute_and_drain(run_id)
    except (StoreUnavailable, DatabaseError) as exc:
        # Runs stay as the database last saw them; the scheduler re-sends or recovers them.
        logger.warning("run %s: the database is unavailable (%s); the scheduler will resume it", run_id, exc)
        close_old_connections()


def _execute_and_drain(run_id: str) -> None:
    outcome = run_attempt(run_id)
    drained = 0
    while outcome is not None:
        logger.info("run %s attempt %s: %s", outcome.run_id, outcome.attempt, outcome.result)
        # A run of a limited queue just freed its slot: take the queue's next run here, without
        # a broker round trip. The claim still checks the limit in the database.
        free_slot = outcome.queue_limited and drained < DRAIN_MAX
        candidates = next_queued_in_limited_queue(outcome.run_id) if free_slot else []
        outcome = None
        for candidate in candidates:  # concurrent drainers race for the same runs: try a few
            outcome = run_attempt(candidate)
            if outcome is not None:
                drained += 1
                break


DRAIN_MAX = 100


def next_queued_in_limited_queue(run_id: str, count: int = 5) -> list[str]:
    """Return the best queued runs of the same limited, unpaused queue, same concurrency key first."""
    close_old_connections()
    run = Run.objects.filter(id=run_id).values("queue", "concurrency_key").first()
    if run is None or not Queue.objects.filter(
        name=run["queue"], paused=False, concurrency_limit__isnull=False
    ).exists():
        return []
    same = []
    if run["concurrency_key"]:
        # The freed slot belongs to this key: its runs come first.
        same = list(Run.objects.queued_in(run["queue"], run["concurrency_key"]).values_list("id", flat=True)[:count])
    rest = Run.objects.queued_in(run["queue"]).values_list("id", flat=True)[:count]
    return same + [i for i in rest if i not in same]
