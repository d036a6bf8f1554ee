"""Celery tasks of the engine: thin wrappers that load by id and call the engine."""
from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid

from billiard.process import current_process
from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone

from stepwise.runs.broker import broker_waiting
from stepwise.runs.dispatch import (
    EXECUTE_RUN,
    EXECUTE_RUNS,
    RESUME_PRIORITY,
    hints_resend,
    hints_resend_group,
    version_queue,
)
from stepwise.runs.engine.deadlines import Deadlines
from stepwise.runs.engine.errors import StoreUnavailable
from stepwise.runs.engine.executor import AttemptOutcome, attempt_execute
from stepwise.runs.engine.logs import run_logging_install
from stepwise.runs.engine.per_process import PerProcess
from stepwise.runs.engine.store import Claim
from stepwise.runs.models import Run
from stepwise.runs.statements import ClaimRefused
from stepwise.runs.store import ClaimAhead, OrmRunStore
from stepwise.runs.tracing.setup import database_processor
from stepwise.tasks.models import LIMITED_QUEUE, Queue
from stepwise.tasks.registry import UnknownTask, task_get, versions_held
from stepwise.tasks.secrets import secrets_for_environment
from stepwise.tasks.services import worker_versions_announce, worker_versions_forget

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


def run_attempt(run_id: str, *, claimed: Claim | None = None, ahead: ClaimAhead | None = None) -> AttemptOutcome | None:
    """Claim and execute one attempt of a run in this process.

    ``claimed``: the run's claim, made already; ``ahead``: the group hint whose next run the
    attempt's outcome claims in the same statement.
    """
    close_old_connections()
    # Whatever reconfigured logging since the process started (Celery's worker taking over the
    # root logger under manage.py up, a second django.setup()), the run's log lines are captured.
    if settings.STEPWISE_TRACING:
        run_logging_install()
    try:
        return attempt_execute(
            store=OrmRunStore(span_source=database_processor.take, versions=versions_held(), ahead=ahead),
            run_id=run_id,
            claimed=claimed,
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


# How long a worker keeps a hint it could not act on because the database was unreachable,
# trying again with these pauses (the last repeats): dropped, the run would wait for the
# scheduler's redispatch delay after the database is back.
HINT_KEEP_SECONDS = 60.0
HINT_RETRY_PAUSES = (0.25, 0.5, 1.0)


@shared_task(name=EXECUTE_RUN, ignore_result=True)
def execute_run(run_id: str) -> None:
    """Execute one attempt of a run; the message is a hint, the claim decides."""
    _hint_take(run_id)


# How long the runs of a group hint may wait in the process that took it: past this, those not
# started yet go back to the broker, one hint each, for any free worker (a slow run at the head
# of a group would otherwise hold up the runs behind it), or as one group when a more urgent hint
# waits, unless the broker holds hints as urgent as theirs and none more urgent: then every
# process is busy, and they stay (_hand_back).
GROUP_HANDBACK_SECONDS = 0.1


@shared_task(name=EXECUTE_RUNS, ignore_result=True)
def execute_runs(run_ids: list[str], band: int, version: str | None) -> None:
    """Execute the runs of a group hint one after another; hand back those still waiting after a moment.

    ``band`` and ``version`` are the broker priority and version queue the group came with.
    A group that finds a more urgent hint waiting as it starts (a resume sent while this worker
    held the group reserved) goes back to the broker whole, and this process takes that hint next.
    """
    if band > RESUME_PRIORITY and _better_waiting(band, version):
        logger.info("%d runs of a group hint go back behind a more urgent hint", len(run_ids))
        hints_resend_group(run_ids, band=band, version=version)
        return
    group = _Group(run_ids, band=band, version=version)
    handbacks = _handbacks()
    handbacks.add(group, group, time.monotonic() + GROUP_HANDBACK_SECONDS)
    # Each attempt's outcome claims the group's next run in the same statement (ClaimAhead).
    ahead = ClaimAhead(group.take)
    try:
        while (next_run := _group_next(group, ahead)) is not None:
            _hint_take(*next_run, ahead=ahead)
    finally:
        handbacks.discard(group)
        # Left by an error that ends this task: another worker takes them (a run claimed ahead
        # and never started is recovered when its lease expires).
        held = _startable(ahead.pop())
        rest = group.hand_back() + ([held[0]] if held is not None and held[1] is None else [])
        if rest:
            hints_resend(rest, band=band, version=version)


def _group_next(group: _Group, ahead: ClaimAhead) -> tuple[str, Claim | None] | None:
    """Return the next run of a group hint to start here, with its claim if the last outcome made it; None when done."""
    held = _startable(ahead.pop())
    if held is not None:
        return held
    run_id = group.take()
    return None if run_id is None else (run_id, None)


def _startable(held: tuple[str, Claim | ClaimRefused | None] | None) -> tuple[str, Claim | None] | None:
    """Return a run an outcome took from its group with the claim to start it on (None: it claims on its own).

    None when there is nothing to start: no run was taken, or its claim was refused because it runs,
    waits or ended already (a duplicate hint got there first).
    """
    if held is None:
        return None
    run_id, claim = held
    if isinstance(claim, Claim):
        return run_id, claim
    if claim is None or claim.queued:  # not claimed, or QUEUED but left to the locked claim
        return run_id, None
    return None


class _Group:
    """The runs of a group hint that its process has not started yet."""

    def __init__(self, run_ids: list[str], *, band: int, version: str | None) -> None:
        self.band = band
        self.version = version
        self._rest = list(reversed(run_ids))
        self._lock = threading.Lock()

    def take(self) -> str | None:
        """Return the next run to start here, None once there is none (or the rest was handed back)."""
        with self._lock:
            return self._rest.pop() if self._rest else None

    def waiting(self) -> bool:
        """Tell whether runs of the group wait to start here."""
        with self._lock:
            return bool(self._rest)

    def hand_back(self) -> list[str]:
        """Return the runs not started yet, in order; none of them starts here any more."""
        with self._lock:
            rest, self._rest = self._rest, []
        return rest[::-1]


def _hand_back(groups: list[_Group]) -> None:
    """Send the runs of overstaying group hints that have not started back to the broker.

    Behind a slow run they go one hint each, for any free worker; behind a more urgent hint
    waiting in the broker, as one group (this process takes that hint next).

    While the broker holds hints of the group's priority and none of a better one, every process
    is busy with work as urgent: handed back, the runs would wait behind those hints all the
    same, at the cost of a message and a delivery each. Such a group stays, and is looked at
    again a moment later. (A quarter of a burst's runs went back and forth before.) A better
    hint waiting (a resume behind new runs) is a reason to hand back: this process takes it next.
    """
    waiting: dict[str | None, dict[int, int] | None] = {}
    for group in groups:
        if not group.waiting():
            continue
        if group.version not in waiting:
            waiting[group.version] = broker_waiting(None if group.version is None else version_queue(group.version))
        if _busy_alike(waiting[group.version], group.band):
            _handbacks().add(group, group, time.monotonic() + GROUP_HANDBACK_SECONDS)
            continue
        rest = group.hand_back()
        if not rest:
            continue
        if _more_urgent(waiting[group.version], group.band):
            # This process takes the more urgent hint next; the rest wait behind it as one group.
            logger.info("%d runs of a group hint go back behind a more urgent hint", len(rest))
            hints_resend_group(rest, band=group.band, version=group.version)
        else:
            logger.info("%d runs of a group hint wait behind a slow run here: handed back to the broker", len(rest))
            hints_resend(rest, band=group.band, version=group.version)


def _better_waiting(band: int, version: str | None) -> bool:
    """Tell whether the broker holds a hint more urgent than priority ``band`` for this version's queue."""
    return _more_urgent(broker_waiting(None if version is None else version_queue(version)), band)


def _more_urgent(waiting: dict[int, int] | None, band: int) -> bool:
    """Tell whether ``waiting`` (hints per broker priority) holds one more urgent than priority ``band``."""
    return bool(waiting) and any(count for priority, count in waiting.items() if priority < band)


def _busy_alike(waiting: dict[int, int] | None, band: int) -> bool:
    """Tell whether the broker holds hints of priority ``band`` or a worse one, and none of a better one."""
    if not waiting:
        return False
    return any(waiting.values()) and not _more_urgent(waiting, band)


# This process's hand-back thread, started on first use.
_handbacks: PerProcess[Deadlines[_Group]] = PerProcess(lambda: Deadlines("stepwise-handbacks", _hand_back))


def _hint_take(run_id: str, claimed: Claim | None = None, *, ahead: ClaimAhead | None = None) -> None:
    """Act on one run's hint; keep it for a while when the database is unreachable.

    ``claimed``: the run's claim, made already; ``ahead``: the group hint it belongs to.
    """
    deadline = time.monotonic() + HINT_KEEP_SECONDS
    for tries in itertools.count():
        try:
            _execute_and_drain(run_id, claimed, ahead)
            return
        except (StoreUnavailable, OperationalError, InterfaceError) as exc:
            # A second claim of a run this hint already started is refused: trying again is safe.
            pause = HINT_RETRY_PAUSES[min(tries, len(HINT_RETRY_PAUSES) - 1)]
            claimed = None  # used: a second try claims again (and is refused if the first one took the run)
            close_old_connections()
            if time.monotonic() + pause > deadline:
                logger.warning("run %s: the database is unavailable (%s); the scheduler will resume it", run_id, exc)
                return
            if tries == 0:
                logger.warning("run %s: the database is unavailable (%s); keeping the hint", run_id, exc)
            time.sleep(pause)
        except DatabaseError as exc:
            # Runs stay as the database last saw them; the scheduler re-sends or recovers them.
            logger.warning("run %s: database error (%s); the scheduler will resume it", run_id, exc)
            close_old_connections()
            return


def _execute_and_drain(run_id: str, claimed: Claim | None = None, ahead: ClaimAhead | None = None) -> None:
    outcome = run_attempt(run_id, claimed=claimed, ahead=ahead)
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
    run = Run.objects.filter(id=run_id).values("queue", "concurrency_key", "environment_id").first()
    if run is None or not Queue.objects.filter(
        LIMITED_QUEUE, environment_id=run["environment_id"], name=run["queue"], paused=False
    ).exists():
        return []
    environment = run["environment_id"]
    same = []
    if run["concurrency_key"]:
        # The freed slot belongs to this key: its runs come first.
        same = list(Run.objects.queued_in(run["queue"], run["concurrency_key"], environment=environment)
                    .values_list("id", flat=True)[:count])
    rest = Run.objects.queued_in(run["queue"], environment=environment).values_list("id", flat=True)[:count]
    return same + [i for i in rest if i not in same]


class VersionAnnouncer:
    """Tells the database, every heartbeat, which versions of task code this worker holds.

    The scheduler reads it to tell a pinned run that waits for a busy worker of its version
    from one that waits for a version no worker is running any more.
    """

    def __init__(self, *, worker: str, hashes: tuple[str, ...], interval: float) -> None:
        self._worker = worker
        self._hashes = hashes
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stepwise-versions", daemon=True)

    def start(self) -> None:
        self._announce(first=True)  # before the worker takes its first hint
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # a worker stopped while starting (Ctrl-C) never started it
            self._thread.join(timeout=5)
        try:
            worker_versions_forget(worker=self._worker)
        except DatabaseError as exc:  # its rows age out instead
            logger.warning("could not say this worker stopped (%s)", exc)
        finally:
            connection.close()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._announce()

    def _announce(self, *, first: bool = False) -> None:
        try:
            worker_versions_announce(worker=self._worker, hashes=self._hashes, now=timezone.now(), first=first)
        except DatabaseError as exc:  # the database may be restarting: the next beat tries again
            logger.warning("could not announce this worker's versions (%s)", exc)
        finally:
            connection.close()  # this thread writes every few seconds: no connection held in between


_announcer: VersionAnnouncer | None = None


def worker_versions_serve(app) -> list[str]:
    """Consume the hint queue of each version of task code this worker holds, and announce them; return the queues.

    Hints of runs pinned to a version go to that version's queue, so only a worker that can
    execute them reads them.
    """
    global _announcer
    hashes = versions_held()
    names = [version_queue(content_hash) for content_hash in hashes]
    for name in names:
        app.amqp.queues.select_add(name)
    _announcer = VersionAnnouncer(worker=worker_id(), hashes=hashes, interval=settings.STEPWISE_HEARTBEAT_SECONDS)
    _announcer.start()
    return names


def worker_versions_leave() -> None:
    """Say that this worker stopped: its versions are no longer held here."""
    global _announcer
    if _announcer is not None:
        _announcer.stop()
        _announcer = None


# Worker signals: whichever Celery app runs the worker (this project's or a user's own).
@worker_ready.connect
def _wake_thread_pool(sender=None, **kwargs) -> None:
    """Tick the threads pool's event loop often, so a freed thread takes the next message at once.

    The threads pool otherwise notices a finished task only on the next network event,
    seconds later (celery/celery#6941); the embedded default runs that pool.
    """
    from celery.concurrency.thread import TaskPool as ThreadTaskPool

    if sender is not None and isinstance(getattr(sender, "pool", None), ThreadTaskPool):
        sender.timer.call_repeatedly(0.05, _noop)


def _noop() -> None:
    """Do nothing: the timer entry itself is what wakes the loop."""


@celeryd_after_setup.connect
def _serve_own_versions(sender=None, instance=None, **kwargs) -> None:
    """Before the first hint: consume the queues of the versions of task code this worker holds, and announce them."""
    worker_versions_serve(instance.app)


@worker_shutdown.connect
def _leave(sender=None, **kwargs) -> None:
    """Say that this worker's versions are no longer running here."""
    worker_versions_leave()
