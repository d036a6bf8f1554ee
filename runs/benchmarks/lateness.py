"""Wait lateness: how late waiting runs resume when a burst of new runs is queued as their deadline falls due."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Min
from django.utils import timezone

from stepwise.runs.benchmarks.measure import POLL_SECONDS, BenchFailed, Latencies, noop_runs_batch_trigger, runs_wait
from stepwise.runs.benchmarks.tasks import bench_wait
from stepwise.runs.models import Attempt, Run, RunStatus, Waitpoint

# The burst is triggered this long before the deadline, so it is in the queue when the deadline falls due.
BURST_AHEAD_SECONDS = 1.0


@dataclass(frozen=True)
class WaitLateness:
    """Lateness of the resumed runs, and how much of the burst was still queued at the deadline."""

    lateness: Latencies
    burst: int
    queued_at_deadline: int


def wait_lateness(*, waiters: int, burst: int, lead: float, created: list[str], timeout: float) -> WaitLateness:
    """Park ``waiters`` runs until one shared deadline ``lead`` seconds ahead, queue ``burst`` no-ops just before it."""
    deadline = timezone.now() + timedelta(seconds=lead)
    wait_ids = [bench_wait.trigger({"until": deadline.isoformat()}).id for _ in range(waiters)]
    created.extend(wait_ids)
    _until_all_waiting(wait_ids, by=deadline - timedelta(seconds=BURST_AHEAD_SECONDS), lead=lead)
    time.sleep(max(0.0, (deadline - timezone.now()).total_seconds() - BURST_AHEAD_SECONDS))
    burst_ids = noop_runs_batch_trigger(burst, created)
    runs_wait(wait_ids + burst_ids, timeout=timeout)
    queued = Attempt.objects.filter(run_id__in=burst_ids, number=1, started_at__gt=deadline).count()
    return WaitLateness(resume_lateness(wait_ids), burst, queued)


def _until_all_waiting(run_ids: list[str], *, by: datetime, lead: float) -> None:
    """Poll until every run is WAITING; raise BenchFailed if that takes past ``by``."""
    while True:
        waiting = Run.objects.filter(id__in=run_ids, status=RunStatus.WAITING).count()
        if waiting == len(run_ids):
            return
        if timezone.now() > by:
            raise BenchFailed(
                f"only {waiting} of {len(run_ids)} runs reached their wait within {lead:g}s of being "
                f"triggered; give --wait-lead more seconds"
            )
        time.sleep(POLL_SECONDS)


def resume_lateness(run_ids: list[str]) -> Latencies:
    """Return, per run, the start of its first attempt after the wait minus the waitpoint's resume_at."""
    due = dict(Waitpoint.objects.filter(run_id__in=run_ids).values_list("run_id", "resume_at"))
    resumed = dict(
        Attempt.objects.filter(run_id__in=run_ids, number__gte=2)
        .values("run_id")
        .annotate(first=Min("started_at"))
        .values_list("run_id", "first")
    )
    return Latencies(tuple(
        (resumed[run_id] - due[run_id]).total_seconds() * 1000
        for run_id in run_ids
        if run_id in resumed and due.get(run_id) is not None
    ))


def fired_lateness(run_ids: list[str]) -> Latencies:
    """Return, per waitpoint of these runs with a deadline, when it was resolved minus its deadline.

    This is how late the deadline itself fired (the run became QUEUED again); when the run then
    starts depends on the workers' throughput, which ``resume_lateness`` includes.
    """
    rows = Waitpoint.objects.filter(run_id__in=run_ids, resume_at__isnull=False, completed_at__isnull=False)
    return Latencies(tuple(
        (resolved - due).total_seconds() * 1000 for due, resolved in rows.values_list("resume_at", "completed_at")
    ))
