"""Reads on tasks: the tasks page with versions, settings and recent run stats; environments."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Prefetch
from django.utils import timezone

from stepwise.runs.models import Run
from stepwise.runs.statuses import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus, VersionPolicy
from stepwise.tasks.models import Environment, Queue, Task, TaskVersion, WorkerVersion
from stepwise.tasks.services import DEFAULT_ENVIRONMENTS

STATS_WINDOW = timedelta(hours=24)
STATS_SAMPLE = 5000


@dataclass
class TaskStats:
    """Outcomes and durations of a task's runs that finished in the stats window."""

    finished: int = 0
    completed: int = 0
    durations: list[float] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        return None if not self.finished else self.completed / self.finished

    def percentile(self, q: float) -> float | None:
        """Return the q-th quantile of durations in seconds (nearest rank)."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    @property
    def p50(self) -> float | None:
        return self.percentile(0.5)

    @property
    def p95(self) -> float | None:
        return self.percentile(0.95)


@dataclass(frozen=True)
class VersionOverview:
    """A version of a task's code as the tasks page shows it, with what a deploy needs to know of it."""

    version: TaskVersion
    workers: int  # running workers that hold it
    pinned_runs: int  # unfinished runs pinned to it: they need one of those workers


@dataclass
class TaskOverview:
    """A task as the tasks page shows it."""

    task: Task
    queue: Queue | None
    versions: list[VersionOverview]
    stats: TaskStats


def task_stats(*, since=None) -> dict[str, TaskStats]:
    """Return stats per task over runs finished since ``since`` (default: the last 24 hours), in one query."""
    since = since or timezone.now() - STATS_WINDOW
    rows = (
        Run.objects.filter(finished_at__gte=since, status__in=FINAL_STATUSES)
        .order_by("-finished_at")
        .values_list("task_id", "status", "started_at", "finished_at")[:STATS_SAMPLE]
    )
    stats: dict[str, TaskStats] = {}
    for task_id, status, started_at, finished_at in rows:
        entry = stats.setdefault(task_id, TaskStats())
        entry.finished += 1
        if status == RunStatus.COMPLETED:
            entry.completed += 1
            if started_at is not None:
                entry.durations.append((finished_at - started_at).total_seconds())
    return stats


def task_overviews(*, environment: str | None = None) -> list[TaskOverview]:
    """Return every task with its queue in an environment (the default one unless given), newest versions first
    (with their workers and pinned runs), and recent stats, in six queries."""
    versions = Prefetch("versions", queryset=TaskVersion.objects.order_by("-created_at"))
    tasks = list(Task.objects.order_by("id").prefetch_related(versions))
    queues = {q.name: q for q in Queue.objects.filter(environment_id=environment or settings.STEPWISE_ENVIRONMENT,
                                                      name__in=[t.queue_name for t in tasks])}
    stats = task_stats()
    workers = versions_running(since=timezone.now() - timedelta(seconds=settings.STEPWISE_LEASE_SECONDS))
    pinned = dict(
        Run.objects.filter(status__in=ACTIVE_STATUSES, version_policy=VersionPolicy.PIN)
        .values("version_id").annotate(n=Count("id")).values_list("version_id", "n")
    )

    def overview(version: TaskVersion) -> VersionOverview:
        return VersionOverview(version, workers.get(version.content_hash, 0), pinned.get(version.id, 0))

    return [
        TaskOverview(task=t, queue=queues.get(t.queue_name), versions=[overview(v) for v in t.versions.all()],
                     stats=stats.get(t.id, TaskStats()))
        for t in tasks
    ]


def task_ids() -> list[str]:
    """Return the ids of every task the database knows, sorted."""
    return list(Task.objects.order_by("id").values_list("id", flat=True))


def environment_list() -> list[Environment]:
    """Return every environment: dev, staging and prod first, then the others by slug."""
    order = {slug: i for i, slug in enumerate(DEFAULT_ENVIRONMENTS)}
    return sorted(Environment.objects.all(), key=lambda e: (order.get(e.slug, len(order)), e.slug))


def versions_running(*, since) -> dict[str, int]:
    """Return, per content hash of task code, how many workers that announced themselves since ``since`` hold it."""
    return dict(
        WorkerVersion.objects.filter(seen_at__gte=since).values("content_hash")
        .annotate(n=Count("worker", distinct=True)).values_list("content_hash", "n")
    )
