"""Send "run this now" hints to workers after commit; the database stays the source of truth."""
from __future__ import annotations

import atexit
import logging
from typing import Any

from celery import Celery
from django.conf import settings
from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone
from kombu import Queue as BrokerQueue

from stepwise.runs.batches import BatchThread
from stepwise.runs.celery_app import CeleryAppMissing, celery_app
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.models import Queue

logger = logging.getLogger(__name__)


# Redis keeps one list per message priority (0-9: "priority_steps" in CELERY_BROKER_TRANSPORT_OPTIONS) and a
# worker takes from the lowest number that holds a message: a run that resumes (its wait resolved,
# its retry due) goes ahead of every new run, and new runs go by bands of their own priority.
RESUME_PRIORITY = 0
# (lowest run priority of the band, broker priority), best band first; run priority 0 is band 5.
NEW_WORK_BANDS = ((1000, 1), (100, 2), (10, 3), (1, 4), (0, 5), (-9, 6), (-99, 7), (-999, 8))
LOWEST_PRIORITY = 9


def hint_priority(priority: int, *, resume: bool) -> int:
    """Return the broker priority of a run's hint: resumes first, then new runs by their priority's band.

    A limited queue orders its runs exactly in the database at claim time; an unlimited one
    takes whatever its hints bring, so the bands decide which of the hints waiting in the broker
    a free worker takes first (10, 100 and 1,000 are each a band above the last).
    """
    if resume:
        return RESUME_PRIORITY
    for lowest, band in NEW_WORK_BANDS:
        if priority >= lowest:
            return band
    return LOWEST_PRIORITY


def dispatch_run_on_commit(run_id: str, *, resume: bool = False, version: str | None = None, priority: int = 0) -> None:
    """Hint a QUEUED run to the workers once the transaction commits, from the hint thread.

    ``version`` (a content hash) sends the hint to the workers holding that version of the code
    only; ``priority`` is the run's, which places its hint among the waiting ones.
    """
    transaction.on_commit(lambda: _hints.submit((run_id, resume, version, priority)))


EXECUTE_RUN = "stepwise.execute_run"  # the Celery tasks in stepwise.runs.worker, named so no import points up
EXECUTE_RUNS = "stepwise.execute_runs"


def version_queue(content_hash: str) -> str:
    """Return the name of the Celery queue that only workers holding this version of task code consume."""
    return f"{celery_app().conf.task_default_queue}@{content_hash[:16]}"


def dispatch_run(
    run_id: str, *, resume: bool = False, producer: Any = None, version: str | None = None, priority: int = 0
) -> None:
    """Enqueue a Celery message for a run; a lost message is re-sent by the sweeper.

    In a limited queue a run's priority is decided in the database at claim time
    (stepwise.runs.store.queue_room_at); the broker puts resumes ahead of new work, and new work by
    ``hint_priority``. A hint with a ``version`` goes to that version's queue, straight onto its
    list: no worker without the version ever reads it.
    """
    band = hint_priority(priority, resume=resume)
    if not _hint_send(celery_app(), [run_id], band=band, producer=producer, version=version):
        logger.warning("broker unavailable; run %s will be re-dispatched by the sweeper", run_id)
        _hints_lost([run_id])


def _hint_send(app: Celery, run_ids: list[str], *, band: int, producer: Any = None,
               version: str | None = None) -> bool:
    """Publish one hint of one or more runs through the project's Celery ``app``; tell whether the broker took it.

    One run goes as ``execute_run``, several as one ``execute_runs`` message: a worker process
    takes them one after another for a single broker delivery (stepwise.runs.worker).
    """
    route = {} if version is None else {"queue": BrokerQueue(version_queue(version))}
    # A group carries its broker priority and queue along: the rest it hands back goes out the same way.
    name, args = (EXECUTE_RUN, [run_ids[0]]) if len(run_ids) == 1 else (EXECUTE_RUNS, [run_ids, band, version])
    try:
        # The arguments' repr (shown by Celery's tools) given as it is: Celery's own safe repr of
        # them took about a tenth of a hint's CPU.
        app.send_task(name, args=args, argsrepr=repr(args), kwargsrepr="{}", priority=band, producer=producer,
                      **route)
    except Exception:
        return False
    return True


# Resumes travel in smaller groups: someone waits for each of them, and a group runs in one
# process, one run after another, while the processes busy with new work take the next resume
# only from the broker. 100 timers firing at once went to 4 processes in groups of 32, and the
# last of them started a fifth of a second later than in groups of 8.
RESUME_GROUP_MAX = 8


def hint_groups(hints: list[tuple[str, bool, str | None, int]], size: int) -> list[tuple[list[str], int, str | None]]:
    """Group hints that go to the same queue at the same broker priority, at most ``size`` runs a group.

    Resumes go at most ``RESUME_GROUP_MAX`` to a group. Returns (run ids, broker priority,
    version) per message, in the order of each group's first hint; the runs of a group keep their order.
    """
    groups: list[tuple[list[str], int, str | None]] = []
    open_groups: dict[tuple[int, str | None], list[str]] = {}
    for run_id, resume, version, priority in hints:
        key = (hint_priority(priority, resume=resume), version)
        run_ids = open_groups.get(key)
        if run_ids is None or len(run_ids) >= (min(size, RESUME_GROUP_MAX) if resume else size):
            run_ids = open_groups[key] = []
            groups.append((run_ids, *key))
        run_ids.append(run_id)
    return groups


def _hints_send(batch: list[tuple[str, bool, str | None, int]]) -> None:
    """Send a batch of hints; those that queued up together travel in groups of ``STEPWISE_HINT_GROUP`` at most.

    A burst of triggers then costs the broker and the workers a message per group, not per run.
    """
    _groups_send(hint_groups(batch, settings.STEPWISE_HINT_GROUP))


def hints_resend(run_ids: list[str], *, band: int, version: str | None) -> None:
    """Send each of these runs a hint of its own (a worker hands back the rest of a group it cannot take soon)."""
    _groups_send([([run_id], band, version) for run_id in run_ids])


def hints_resend_group(run_ids: list[str], *, band: int, version: str | None) -> None:
    """Send these runs back as the one group hint they came in (a worker gives way to a more urgent hint)."""
    _groups_send([(run_ids, band, version)])


def _groups_send(groups: list[tuple[list[str], int, str | None]]) -> None:
    """Send hints over one broker connection; once one fails, the rest are marked lost at once.

    Each failed send costs the publish retries (about half a second): trying every hint of a
    backlog against a broker that is down would keep the re-sends of the scheduler waiting
    behind minutes of failures.
    """
    from django.db import connection

    sent = 0
    try:
        app = celery_app()
        with app.producer_or_acquire() as producer:
            for run_ids, band, version in groups:
                if not _hint_send(app, run_ids, band=band, producer=producer, version=version):
                    break
                sent += 1
    except CeleryAppMissing as exc:  # said on every batch: the scheduler's re-sends find no app either
        logger.error("%s", exc)
    except Exception:  # no connection to the broker at all
        pass
    try:
        lost = [run_id for run_ids, _, _ in groups[sent:] for run_id in run_ids]
        if lost:
            logger.warning("broker unavailable; %d hints will be re-sent by the scheduler", len(lost))
            _hints_lost(lost)
    finally:
        connection.close()  # lost hints were marked in the database from this thread


# A trigger returns once its run is committed: the database is the truth, and the hint only
# says "look now". A hint that never leaves (the process died, the broker is down) is re-sent
# by the scheduler; at exit the thread is given a moment to send what is left. While hints
# keep coming (a burst of triggers), each batch waits a moment for company, so that they
# travel in groups; a hint after a quiet spell leaves at once. A trigger from one thread takes
# 1-2 ms: a 3 ms wait sent groups of about 2 runs, and each send costs about as much CPU as the
# trigger's own statement. Each message also costs the worker's main process about as much as a
# run, and each group one claim statement (the outcomes claim the rest): 20 ms gathers 10-12 runs
# of a burst from one thread where 10 ms gathered 6, and is a burst's only delay.
HINT_LINGER_SECONDS = 0.02
_hints: BatchThread[tuple[str, bool, str | None, int]] = BatchThread(
    name="stepwise-hints", start=lambda: _hints_send, max_batch=500, busy_linger=HINT_LINGER_SECONDS
)
atexit.register(_hints.flush, 2.0)


def _hints_lost(run_ids: list[str]) -> None:
    """Mark runs' hints as never sent, so the sweeper re-sends them as soon as the broker is back."""
    try:
        for start in range(0, len(run_ids), 500):
            Run.objects.filter(id__in=run_ids[start:start + 500], status=RunStatus.QUEUED).update(dispatched_at=None)
    except Exception:  # the database may be gone too; the sweeper's age rule still finds the runs
        logger.warning("could not mark %d runs for re-dispatch", len(run_ids))


def queue_dispatch_on_commit(queue_name: str, *, environment: str | None = None, run_id: str | None = None) -> None:
    """After commit, hint the next QUEUED runs of a limited queue that a slot is free.

    The queue is the one of ``environment``, or of the environment of run ``run_id``.
    """
    transaction.on_commit(lambda: queue_dispatch(queue_name, environment=environment, run_id=run_id))


def queue_dispatch(queue_name: str, *, environment: str | None = None, run_id: str | None = None) -> int:
    """Hint as many QUEUED runs of an environment's queue as it has free slots, best priority first."""
    queues = Queue.objects.filter(name=queue_name)
    if environment is None:
        # Still one query: the run names the environment inside it.
        queues = queues.filter(environment_id=Subquery(Run.objects.filter(id=run_id).values("environment_id")[:1]))
    else:
        queues = queues.filter(environment_id=environment)
    queue = queues.first()
    if queue is None or queue.paused or not queue.limited:
        return 0
    if queue.rate_next_at is not None and queue.rate_limit is not None and queue.rate_next_at > timezone.now():
        return 0  # the claim that moved the next start there woke the scheduler for it
    environment = queue.environment_id
    # The per-key limit holds per concurrency key, the total across keys: count free slots of both.
    executing: dict[str, int] = {}
    for key in Run.objects.executing_in(queue_name, environment=environment).values_list("concurrency_key", flat=True):
        executing[key] = executing.get(key, 0) + 1
    total_free = (queue.total_limit - sum(executing.values())) if queue.total_limit is not None else None
    if queue.rate_limit is not None:  # one start is due now; the next comes an interval later
        total_free = 1 if total_free is None else min(total_free, 1)
    widest = max([limit for limit in (queue.concurrency_limit, queue.total_limit) if limit is not None] or [1])
    candidates = (
        Run.objects.queued_in(queue_name, environment=environment)
        .values_list("id", "attempt_count", "concurrency_key", "priority")[: widest * 20]
    )
    picked: list[tuple[str, bool, int]] = []
    hinted: dict[str, int] = {}
    for run_id, attempts, key, priority in candidates:
        # Twice the free slots: a hint may lose its claim to a concurrent one.
        if total_free is not None and len(picked) >= total_free * 2:
            break
        if queue.concurrency_limit is not None:
            busy = executing.get(key, 0) if key else sum(executing.values())
            if hinted.get(key, 0) >= (queue.concurrency_limit - busy) * 2:
                continue
        hinted[key] = hinted.get(key, 0) + 1
        picked.append((run_id, attempts > 0, priority))
    Run.objects.filter(id__in=[i for i, _, _ in picked]).update(dispatched_at=timezone.now())
    for run_id, resume, priority in picked:
        dispatch_run(run_id, resume=resume, priority=priority)
    return len(picked)
