"""Prometheus metrics, computed from the database when scraped.

Nothing is counted in the engine: every run, attempt and step already leaves a row in the
append-only ``RunEvent`` table, so a scrape reads the events stored since the previous one
(an index range on their id) and adds them to counters and histograms kept in this process;
gauges (queue depth, executing runs, the scheduler's lag) are read fresh. Workers of any
pool, on any machine, are thus counted without a metrics file or port of their own, and the
hot path pays nothing. Counters start at zero when the serving process starts, as any
Prometheus counter does after a restart.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, OuterRef, Subquery
from django.db.models.fields.json import KT
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from stepwise.runs.broker import broker_backlog
from stepwise.runs.health import scheduler_beat_age
from stepwise.runs.models import Run, RunEvent, SchedulerBeat, Waitpoint
from stepwise.runs.statuses import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus, WaitpointStatus
from stepwise.tasks.models import Queue, WorkerVersion

# An event is counted once it is this old: one committed a little after a younger one (ids are
# taken before commit) is then still found by the next scrape.
SETTLE_SECONDS = 2.0
# At most this many events are read per scrape; a backlog is worked off over the next scrapes.
MAX_EVENTS_PER_SCRAPE = 200_000
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CLAIM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
_TRACKED = ("run.created", "run.status", "step.completed", "step.failed")


class Histogram:
    """Bucket counts and sums per label values, exported as one Prometheus histogram."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.labels, self.buckets = name, documentation, labels, buckets
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = defaultdict(float)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                counts[index] += 1
                break
        else:
            counts[-1] += 1
        self._sums[labels] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, counts in sorted(self._counts.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            family.add_metric(list(labels), buckets, self._sums[labels])
        return family


class Counter:
    """Counts per label values, exported as one Prometheus counter."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._values: dict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, labels: tuple[str, ...]) -> None:
        self._values[labels] += 1

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(self._values.items()):
            family.add_metric(list(labels), value)
        return family


class StepwiseCollector:
    """Reads the events stored since the last scrape into counters and histograms, and the gauges afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: int | None = None
        self.triggered = Counter("stepwise_runs_triggered", "Runs triggered.", ("task", "queue"))
        self.finished = Counter("stepwise_runs_finished", "Runs that reached a final status (COMPLETED, FAILED, "
                                "CANCELED, TIMED_OUT, CRASHED, EXPIRED).", ("task", "queue", "status"))
        self.attempts_failed = Counter("stepwise_attempts_failed", "Attempts that failed and will be retried.",
                                       ("task", "queue"))
        self.lost_leases = Counter("stepwise_lost_leases", "Attempts whose worker stopped renewing its lease, "
                                   "recovered by the scheduler.", ("task", "queue"))
        self.step_duration = Histogram("stepwise_step_duration_seconds", "Duration of executed steps.",
                                       ("task", "status"), STEP_BUCKETS)
        self.run_duration = Histogram("stepwise_run_duration_seconds", "From trigger to final status.",
                                      ("task", "status"), RUN_BUCKETS)
        self.claim_latency = Histogram("stepwise_claim_latency_seconds",
                                       "From a run becoming QUEUED to a worker claiming it.", ("queue",), CLAIM_BUCKETS)

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = timezone.now()
            self._read_events(now)
            yield from (self.triggered.family(), self.finished.family(), self.attempts_failed.family(),
                        self.lost_leases.family(), self.step_duration.family(), self.run_duration.family(),
                        self.claim_latency.family())
            yield from gauges(now)

    def _read_events(self, now: datetime) -> None:
        """Add the events stored since the last scrape (those at least ``SETTLE_SECONDS`` old)."""
        if self._cursor is None:
            self._cursor = RunEvent.objects.aggregate(last=Max("id"))["last"] or 0
            return
        settled = RunEvent.objects.filter(id__gt=self._cursor, type__in=_TRACKED,
                                          created_at__lte=now - timedelta(seconds=SETTLE_SECONDS))
        nth = settled.order_by("id").values_list("id", flat=True)[MAX_EVENTS_PER_SCRAPE - 1:MAX_EVENTS_PER_SCRAPE]
        upper = next(iter(nth), None) or settled.aggregate(last=Max("id"))["last"]
        if upper is None:
            return
        fresh = RunEvent.objects.filter(id__gt=self._cursor, type__in=_TRACKED)
        window = fresh.filter(id__lte=upper).order_by()
        rows = window.values_list("type", "created_at", "run__task_id", "run__queue", "run__created_at",
                                  KT("data__to"), KT("data__kind"), KT("data__duration_ms"), KT("data__lease_lost"))
        for row in rows.iterator(chunk_size=5000):
            self._count(*row)
        previous = RunEvent.objects.filter(run_id=OuterRef("run_id"), seq__lt=OuterRef("seq"),
                                           type__in=("run.created", "run.status")).order_by("-seq")
        claims = window.filter(type="run.status", data__to=RunStatus.EXECUTING).annotate(
            queued_at=Subquery(previous.values("created_at")[:1]))
        for at, queue, queued_at in claims.values_list("created_at", "run__queue", "queued_at").iterator():
            if queued_at is not None:
                self.claim_latency.observe((queue,), max(0.0, (at - queued_at).total_seconds()))
        self._cursor = upper

    def _count(self, kind, at, task, queue, created_at, to, step_kind, duration_ms, lease_lost) -> None:
        if kind == "run.created":
            self.triggered.inc((task, queue))
        elif kind.startswith("step."):
            # Steps proper: the SDK's recorded calls (a trigger, an event, a token) are rows of their own kinds.
            if step_kind in (None, "step") and duration_ms is not None:
                self.step_duration.observe((task, kind.removeprefix("step.")), float(duration_ms) / 1000)
        elif to in FINAL_STATUSES:
            self.finished.inc((task, queue, to))
            self.run_duration.observe((task, to), max(0.0, (at - created_at).total_seconds()))
        if kind == "run.status" and to == RunStatus.RETRYING:
            self.attempts_failed.inc((task, queue))
        if kind == "run.status" and lease_lost in ("true", True, 1):
            self.lost_leases.inc((task, queue))


def gauges(now: datetime) -> Iterator[Metric]:
    """Yield the gauges read afresh at each scrape: runs by status and queue, the scheduler, the workers."""
    by_status = GaugeMetricFamily("stepwise_runs", "Unfinished runs by status and queue.", labels=("status", "queue"))
    depth = GaugeMetricFamily("stepwise_queue_depth", "QUEUED runs waiting for a worker.", labels=("queue",))
    executing = GaugeMetricFamily("stepwise_runs_executing", "Runs a worker is executing.", labels=("queue",))
    counts = {(row["status"], row["queue"]): row["n"] for row in
              Run.objects.filter(status__in=ACTIVE_STATUSES).order_by().values("status", "queue")
              .annotate(n=Count("id"))}
    queues = sorted(set(Queue.objects.values_list("name", flat=True)) | {queue for _, queue in counts})
    for (status, queue), n in sorted(counts.items()):
        by_status.add_metric([status, queue], n)
    for queue in queues:
        depth.add_metric([queue], counts.get((RunStatus.QUEUED, queue), 0))
        executing.add_metric([queue], counts.get((RunStatus.EXECUTING, queue), 0))
    yield from (by_status, depth, executing)
    lag = GaugeMetricFamily("stepwise_scheduler_lag_seconds",
                            "How long the most overdue timer (a retry, a delay, a wait's deadline) has been due.")
    lag.add_metric([], scheduler_lag(now))
    yield lag
    age = scheduler_beat_age(now=now)
    if age is not None:
        yield GaugeMetricFamily("stepwise_scheduler_last_pass_age_seconds",
                                "Seconds since the freshest scheduler pass.", value=age)
    stale = now - timedelta(seconds=settings.STEPWISE_SCHEDULER_STALE_SECONDS)
    yield GaugeMetricFamily("stepwise_schedulers", "Schedulers that finished a pass recently.",
                            value=SchedulerBeat.objects.filter(beat_at__gte=stale).count())
    seen = now - timedelta(seconds=settings.STEPWISE_LEASE_SECONDS)
    yield GaugeMetricFamily("stepwise_workers", "Worker processes that announced themselves within a lease.",
                            value=WorkerVersion.objects.filter(seen_at__gte=seen).values("worker").distinct().count())
    backlog = broker_backlog()
    if backlog is not None:
        yield GaugeMetricFamily("stepwise_broker_messages",
                                "Hint messages (one run or a group each) waiting in the broker's default queue.",
                                value=backlog)


def scheduler_lag(now: datetime) -> float:
    """Return how long the most overdue timer has been due (0 when none is), in seconds."""
    due = [
        Run.objects.filter(status=RunStatus.RETRYING, next_attempt_at__lte=now).aggregate(at=Min("next_attempt_at")),
        Run.objects.filter(status=RunStatus.DELAYED, delay_until__lte=now).aggregate(at=Min("delay_until")),
        Waitpoint.objects.filter(status=WaitpointStatus.PENDING, resume_at__lte=now).aggregate(at=Min("resume_at")),
    ]
    overdue = [row["at"] for row in due if row["at"] is not None]
    return max(0.0, (now - min(overdue)).total_seconds()) if overdue else 0.0


registry = CollectorRegistry(auto_describe=False)
collector = StepwiseCollector()
registry.register(collector)
