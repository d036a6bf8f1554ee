"""The sweeper: fires timers stored in the database and recovers runs whose worker died.

Every pass is idempotent and safe to run from two processes at once: rows are picked
with SKIP LOCKED and every change is a compare-and-set transition.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from stepwise.runs.alerts import AlertPass, alert_sender_loop
from stepwise.runs.broker import broker_backlog, broker_lost_messages
from stepwise.runs.bulk import bulk_actions_advance
from stepwise.runs.dispatch import dispatch_run, dispatch_run_on_commit, queue_dispatch
from stepwise.runs.health import SchedulerHeartbeat
from stepwise.runs.lifecycle import run_settle
from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.pinning import (
    held_by_running_workers,
    pinned_queued,
    version_wait_end,
    version_wait_give_up,
    version_wait_start,
    versions_running_now,
)
from stepwise.runs.planner_stats import planner_stats_refresh
from stepwise.runs.retention import retention_pass
from stepwise.runs.states import TransitionRefused, run_transition
from stepwise.runs.statuses import AttemptStatus, RunStatus, WaitpointStatus
from stepwise.runs.timers import TimerListener
from stepwise.runs.waits import children_waits_settle, waitpoints_fire_due
from stepwise.tasks.models import LIMITED_QUEUE, Queue
from stepwise.tasks.schedules import schedules_declared_sync, schedules_fire_due

logger = logging.getLogger(__name__)
BATCH = 200
LOST_HINT_BATCHES = 25  # at most 5,000 lost hints re-sent per pass


@dataclass
class SweepReport:
    """How many runs each part of a pass moved."""

    queued: int = 0
    waits_fired: int = 0
    expired: int = 0
    recovered: int = 0
    crashed: int = 0
    redispatched: int = 0
    scheduled: int = 0
    version_waits: int = 0
    version_found: int = 0
    version_failed: int = 0
    pruned: int = 0
    alerts: int = 0
    bulk: int = 0
    analyzed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (self.queued + self.waits_fired + self.expired + self.recovered + self.crashed + self.redispatched
                + self.scheduled + self.version_waits + self.version_found + self.version_failed + self.pruned
                + self.alerts + self.bulk + self.analyzed)


def _pick(qs) -> list[Run]:
    return list(qs.select_for_update(skip_locked=True, no_key=True).order_by("id")[:BATCH])


def _each(qs, move) -> int:
    """Apply ``move`` to each picked run in its own transaction; count those that moved.

    Most passes find nothing to do: that is one read, without the transaction the locking pick
    needs (on SQLite, each one takes the database's write lock).
    """
    if not qs.exists():
        return 0
    moved = 0
    with transaction.atomic():
        runs = _pick(qs)
    for run in runs:
        try:
            with transaction.atomic():
                move(run)
            moved += 1
        except TransitionRefused:
            pass  # another sweeper or a worker got there first
    return moved


def _queue(run: Run, expected: RunStatus) -> None:
    run_transition(
        run_id=run.id,
        to=RunStatus.QUEUED,
        expected_from=[expected],
        next_attempt_at=None,
        dispatched_at=timezone.now(),
    )
    dispatch_run_on_commit(run.id, resume=expected == RunStatus.RETRYING)


def fire_due_timers(now) -> int:
    """Queue delayed runs whose date came and retrying runs whose backoff passed."""
    delayed = Run.objects.filter(status=RunStatus.DELAYED, delay_until__lte=now)
    retrying = Run.objects.filter(status=RunStatus.RETRYING, next_attempt_at__lte=now)
    return _each(delayed, lambda r: _queue(r, RunStatus.DELAYED)) + _each(
        retrying, lambda r: _queue(r, RunStatus.RETRYING)
    )


def expire_ttls(now) -> int:
    """Expire runs that did not start before their TTL."""
    qs = Run.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.DELAYED], ttl_expires_at__lte=now)

    def move(run: Run) -> None:
        run_settle(
            run_id=run.id,
            to=RunStatus.EXPIRED,
            expected_from=[RunStatus.QUEUED, RunStatus.DELAYED],
            error={"type": "Expired", "message": "the run's TTL passed before it started", "traceback": ""},
        )

    return _each(qs, move)


def recover_lost_leases(now) -> tuple[int, int]:
    """Retry runs whose worker stopped renewing its lease; crash those that keep dying."""
    qs = Run.objects.filter(status=RunStatus.EXECUTING, lease_expires_at__lt=now)
    crashed = 0

    def move(run: Run) -> None:
        nonlocal crashed
        reason = f"worker {run.worker_id} stopped renewing its lease (attempt {run.attempt_count})"
        lost = {"number": run.attempt_count, "status": AttemptStatus.CRASHED,
                "error": {"type": "WorkerLost", "message": reason, "traceback": ""}}
        crashes = run.crash_count + 1
        if crashes >= settings.STEPWISE_MAX_CRASHES:
            run_settle(
                run_id=run.id,
                to=RunStatus.CRASHED,
                expected_from=[RunStatus.EXECUTING],
                expected_token=run.lease_token,
                queue=run.queue,
                attempt=lost,
                crash_count=crashes,
                error={"type": "Crashed", "message": f"{reason}; gave up after {crashes} crashes", "traceback": ""},
                event_data={"reason": reason, "lease_lost": True},
            )
            crashed += 1
        else:
            run_settle(
                run_id=run.id,
                to=RunStatus.RETRYING,
                expected_from=[RunStatus.EXECUTING],
                expected_token=run.lease_token,
                queue=run.queue,
                attempt=lost,
                event_data={"reason": reason, "retry_delay": 0, "lease_lost": True},
                crash_count=crashes,
                lease_token=None,
                lease_expires_at=None,
                next_attempt_at=now,
            )

    recovered = _each(qs, move)
    return recovered - crashed, crashed


def redispatch_stale(now, *, worker_lost: bool = False) -> int:
    """Re-send hints for QUEUED runs whose message was lost or whose queue was full.

    A hint that could not be sent (the broker was down) is re-sent at once, and so is every
    QUEUED run's when the broker lost what it held (it restarted empty). Hints older than
    the redispatch delay are re-sent unless the broker may hold hints of as many runs as there
    are such runs (a message may hint a group of them): then workers are behind, not short of
    hints, and duplicates would only slow them down. When this pass found a dead worker
    (``worker_lost``), the hints it had taken from the broker died with it: each was sent
    before it died, at most a heartbeat after its last renewal, so the delay is then the lease
    less a heartbeat instead of the redispatch delay. A re-sent hint goes ahead of new work: its run has waited longest.
    """
    if broker_lost_messages():
        lost = Run.objects.filter(status=RunStatus.QUEUED, dispatched_at__isnull=False).update(dispatched_at=None)
        if lost:
            logger.warning("sweeper: the broker lost its messages; re-sending the hints of %d queued runs", lost)
    delay = settings.STEPWISE_REDISPATCH_SECONDS
    if worker_lost:
        delay = min(delay, settings.STEPWISE_LEASE_SECONDS - settings.STEPWISE_HEARTBEAT_SECONDS)
    cutoff = now - timedelta(seconds=delay)
    stale = Run.objects.filter(Q(dispatched_at__lt=cutoff) | Q(dispatched_at__isnull=True), status=RunStatus.QUEUED)
    # A run waiting for its version has no worker to hint: a hint would only pile up unread.
    stale = stale.filter(version_wait_since__isnull=True)
    backlog = broker_backlog()
    # A message may hint up to STEPWISE_HINT_GROUP runs: the broker may hold that many hints a message.
    if backlog and backlog * settings.STEPWISE_HINT_GROUP >= stale.count():
        stale = stale.filter(dispatched_at__isnull=True)
    # Runs of a limited or paused queue get hints only for free slots: re-sending one per
    # waiting run would flood the broker with claims that are refused anyway.
    held = set(Queue.objects.filter(LIMITED_QUEUE | Q(paused=True))
               .values_list("environment_id", "name"))
    held_queues = {
        pair for pair in stale.filter(queue__in={name for _, name in held})
        .values_list("environment_id", "queue").distinct() if pair in held
    }
    hinted = sum(queue_dispatch(name, environment=environment) for environment, name in held_queues)
    for environment, name in held_queues:
        stale = stale.exclude(environment_id=environment, queue=name)
    qs = stale

    def move(run: Run) -> None:
        if not Run.objects.filter(id=run.id, status=RunStatus.QUEUED).update(dispatched_at=now):
            raise TransitionRefused(run.id, RunStatus.QUEUED, None)
        dispatch_run_on_commit(run.id, resume=True, priority=run.priority)

    # Lost hints first and all of them (a broker back from an outage gets every one within a
    # pass), then a batch of the stale ones.
    lost = qs.filter(dispatched_at__isnull=True)
    for _ in range(LOST_HINT_BATCHES):
        moved = _each(lost, move)
        hinted += moved
        if moved < BATCH:
            break
    return _each(qs, move) + hinted


def _rate_limited_with_queued_runs():
    queued = Run.objects.filter(environment_id=OuterRef("environment_id"), queue=OuterRef("name"),
                                status=RunStatus.QUEUED)
    return Queue.objects.filter(Exists(queued), rate_limit__isnull=False, paused=False)


def rate_limited_dispatch(now) -> int:
    """Hint rate-limited queues whose next start is due and that have runs waiting for it.

    A claim refused by the rate wakes the scheduler for the queue's next start; this pass then
    hints the queue's best runs (as many as may start: one per interval).
    """
    due = _rate_limited_with_queued_runs().filter(Q(rate_next_at__isnull=True) | Q(rate_next_at__lte=now))
    return sum(queue_dispatch(name, environment=environment)
               for environment, name in due.values_list("environment_id", "name")[:BATCH])


def pinned_runs_sweep(now) -> tuple[int, int, int]:
    """Mark pinned runs whose version no running worker holds, hint those whose version came back, fail the overdue.

    Returns how many runs started waiting for their version, found it, and failed.
    """
    running = versions_running_now(now)
    held = held_by_running_workers(running)
    unheld = pinned_queued().exclude(version_id__in=held)
    overdue = unheld.filter(version_wait_since__lte=now - timedelta(seconds=settings.STEPWISE_VERSION_GRACE_SECONDS))
    started = _each(unheld.filter(version_wait_since__isnull=True), lambda run: version_wait_start(run, now))
    found = _each(pinned_queued().filter(version_wait_since__isnull=False, version_id__in=held),
                  lambda run: version_wait_end(run, now))
    failed = _each(overdue, lambda run: version_wait_give_up(run, now))
    return started, found, failed


_alert_pass = AlertPass()


def sweep_once() -> SweepReport:
    """Run one pass of every sweeper duty."""
    now = timezone.now()
    report = SweepReport()
    report.redispatched = rate_limited_dispatch(now)  # first: a rate-limited queue's start is due now
    report.queued = fire_due_timers(now)
    report.waits_fired = waitpoints_fire_due(now) + children_waits_settle()
    report.expired = expire_ttls(now)
    report.recovered, report.crashed = recover_lost_leases(now)
    report.queued += fire_due_timers(timezone.now())  # crash-recovered runs retry at once
    report.version_waits, report.version_found, report.version_failed = pinned_runs_sweep(now)
    report.redispatched += redispatch_stale(now, worker_lost=bool(report.recovered or report.crashed))
    report.scheduled = schedules_fire_due(now)
    report.pruned = retention_pass(now)
    report.alerts = _alert_pass(timezone.now())
    report.bulk = bulk_actions_advance()
    report.analyzed = len(planner_stats_refresh())
    return report


def next_timer_in(now) -> float | None:
    """Return the seconds until the earliest stored timer (a wait's deadline, a retry, a delay,
    a rate-limited queue's next start), or None."""
    due = [
        Waitpoint.objects.filter(status=WaitpointStatus.PENDING).aggregate(at=Min("resume_at"))["at"],
        Run.objects.filter(status=RunStatus.RETRYING).aggregate(at=Min("next_attempt_at"))["at"],
        Run.objects.filter(status=RunStatus.DELAYED).aggregate(at=Min("delay_until"))["at"],
        # Only starts still ahead: a queue whose start is due but whose slots are full is hinted
        # when a slot frees, not by a scheduler spinning on a time already past.
        _rate_limited_with_queued_runs().filter(rate_next_at__gt=now).aggregate(at=Min("rate_next_at"))["at"],
    ]
    known = [at for at in due if at is not None]
    return max(0.0, (min(known) - now).total_seconds()) if known else None


def timers_fire(now) -> int:
    """Fire only what a deadline waits for: delays, retries, waits whose time or timeout came, rate-limited starts."""
    return rate_limited_dispatch(now) + fire_due_timers(now) + waitpoints_fire_due(now)


# After a database error the scheduler tries again after the first pause, doubling up to the
# last: a database back from an outage (or a failover) is used within a second, at the cost of
# one failed connection attempt a second while it is away.
OUTAGE_PAUSES = (0.25, 1.0)
# A stop (SIGTERM) is seen within this many seconds, whatever the sleep.
STOP_SLICE_SECONDS = 0.25


class _Backoff:
    """The pause after a database error: doubling from the first of OUTAGE_PAUSES to the last, reset by a success."""

    def __init__(self) -> None:
        self.pause = OUTAGE_PAUSES[0]

    def failed(self, exc: DatabaseError, what: str) -> float:
        logger.warning("%s: database unavailable (%s); retrying in %.2fs", what, exc, self.pause)
        connection.close()
        pause, self.pause = self.pause, min(self.pause * 2, OUTAGE_PAUSES[-1])
        return pause

    def succeeded(self) -> None:
        self.pause = OUTAGE_PAUSES[0]


def sweeper_loop(*, interval: float, stop: threading.Event | None = None, max_passes: int | None = None) -> None:
    """Sweep every ``interval`` seconds until stopped, while a thread of its own fires timers as they fall due.

    A full pass has many duties (lost leases, lost hints, schedules, retention, alerts...), and
    one of them may take a while under load: re-sending a thousand hints, waiting for a lock.
    Deadlines do not wait for it: the timers thread sleeps until the next stored deadline (or a
    notification of a new one) and fires only what fell due, on its own database connection.
    Both are safe beside each other, as two schedulers are. Outages are waited out by both.
    """
    stop = stop or threading.Event()
    halt = threading.Event()  # ends the timers thread with this loop, however the loop ends
    failure: list[BaseException] = []
    timers = threading.Thread(target=_timers_thread, kwargs={"interval": interval, "stop": halt, "failure": failure},
                              name="scheduler-timers", daemon=True)
    # Notifications go out from a thread of their own: a receiver that is slow to answer never delays a pass.
    sender = threading.Thread(target=alert_sender_loop, kwargs={"stop": halt}, name="alert-sender", daemon=True)
    heartbeat = SchedulerHeartbeat()
    backoff = _Backoff()
    passes = 0
    declared_synced = False
    timers.start()
    sender.start()
    try:
        while not stop.is_set() and timers.is_alive():
            try:
                close_old_connections()
                if not declared_synced:
                    schedules_declared_sync()
                    declared_synced = True
                report = sweep_once()
                if report.total:
                    logger.debug("sweeper: %s", report)
                heartbeat.beat(timezone.now(), time.monotonic())
                backoff.succeeded()
                pause = interval
            except DatabaseError as exc:
                pause = backoff.failed(exc, "sweeper")
            passes += 1
            if max_passes is not None and passes >= max_passes:
                break
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and timers.is_alive():
                if stop.wait(min(STOP_SLICE_SECONDS, max(0.0, deadline - time.monotonic()))):
                    break
    finally:
        halt.set()
        timers.join(timeout=5)
        heartbeat.leave()  # a stopped scheduler is gone at once, not after its beats age out
    if failure:
        raise RuntimeError("scheduler: the timers thread stopped") from failure[0]


def _timers_thread(*, interval: float, stop: threading.Event, failure: list[BaseException]) -> None:
    try:
        timers_loop(interval=interval, stop=stop)
    except BaseException as exc:  # the scheduler ends with it: a supervisor restarts a whole one
        logger.exception("scheduler: the timers thread stopped")
        failure.append(exc)
    finally:
        connection.close()  # this thread's own connection


def timers_loop(*, interval: float, stop: threading.Event) -> None:
    """Fire timers as they fall due until stopped: sleep until the earliest stored deadline, or
    a notification of an earlier one, at most ``interval`` seconds; then fire only the timers
    (two statements when nothing else is due)."""
    listener = TimerListener()
    backoff = _Backoff()
    try:
        while not stop.is_set():
            try:
                close_old_connections()
                timers_fire(timezone.now())
                due_in = next_timer_in(timezone.now())
                pause = interval if due_in is None else min(interval, max(0.01, due_in))
                backoff.succeeded()
            except DatabaseError as exc:
                pause = backoff.failed(exc, "scheduler timers")
            _sleep(pause, stop, listener)
    finally:
        listener.close()


def _sleep(pause: float, stop: threading.Event, listener: TimerListener) -> None:
    """Sleep ``pause`` seconds, less when a timer set meanwhile falls due sooner; wake when stopped."""
    deadline = time.monotonic() + pause
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        at = listener.wait(min(left, STOP_SLICE_SECONDS))  # short slices: a stop is seen quickly
        if at is not None:
            deadline = min(deadline, time.monotonic() + max(0.0, (at - timezone.now()).total_seconds()))


def local_hints_loop(*, interval: float = 0.1, stop: threading.Event) -> None:
    """Hint this process's worker of runs queued by other processes (the embedded default).

    The embedded broker lives in memory, so a run triggered by the CLI or another process
    sends its hint nowhere; this loop notices it in the database within ``interval`` seconds.
    """
    seen: dict[str, float] = {}
    since = timezone.now() - timedelta(seconds=5)
    while not stop.wait(interval):
        try:
            now = timezone.now()
            fresh = Run.objects.filter(status=RunStatus.QUEUED, dispatched_at__gte=since)
            for run_id, attempts, priority in fresh.values_list("id", "attempt_count", "priority")[:BATCH]:
                if run_id not in seen:
                    seen[run_id] = time.monotonic()
                    dispatch_run(run_id, resume=attempts > 0, priority=priority)
            since = now - timedelta(seconds=1)  # a commit may land a little after its dispatched_at
            horizon = time.monotonic() - 10
            seen = {k: v for k, v in seen.items() if v > horizon}
        except DatabaseError as exc:
            logger.warning("local hints: database unavailable (%s)", exc)
            connection.close()
