"""Writes on tasks: make sure a registered task, its version and its queue exist in the database."""
from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction

from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.models import Environment, Queue, Task, TaskVersion, WorkerVersion

_ensured: dict[tuple[str, str, str], TaskVersion] = {}
_known_environments: set[str] = set()
_lock = threading.Lock()


def environments_ensure() -> None:
    """Create the default environments if they are missing."""
    for slug, name in DEFAULT_ENVIRONMENTS.items():
        Environment.objects.get_or_create(slug=slug, defaults={"name": name})


class UnknownEnvironment(StepwiseError, LookupError):
    """No environment has this slug."""


DEFAULT_ENVIRONMENTS = {"dev": "Development", "staging": "Staging", "prod": "Production"}


def environment_exists(slug: str) -> bool:
    """Tell whether an environment exists, creating a default one (dev, staging, prod) on first use.

    Environments are never deleted, so a "yes" is kept for the process: a trigger checks its
    environment without a query.
    """
    with _lock:
        if slug in _known_environments:
            return True
    if slug in DEFAULT_ENVIRONMENTS:
        Environment.objects.get_or_create(slug=slug, defaults={"name": DEFAULT_ENVIRONMENTS[slug]})
    elif not isinstance(slug, str) or not Environment.objects.filter(slug=slug).exists():
        return False
    with _lock:
        _known_environments.add(slug)
    return True


def environment_require(slug: str) -> str:
    """Return an environment's slug if it exists, or raise UnknownEnvironment naming the known ones."""
    if not environment_exists(slug):
        known = ", ".join(Environment.objects.order_by("slug").values_list("slug", flat=True))
        raise UnknownEnvironment(f"unknown environment '{slug}' (known: {known})")
    return slug


def _rate_fields(rate: tuple[int, float] | None) -> dict[str, int | float | None]:
    runs, period = rate if rate is not None else (None, None)
    return {"rate_limit": runs, "rate_period": period}


def task_version_ensure(definition) -> TaskVersion:
    """Return the TaskVersion row of a task's current code, creating task, queue and version rows."""
    cache_key = (definition.id, definition.version_hash, definition.deploy_label)
    with _lock:
        cached = _ensured.get(cache_key)
    if cached is not None:
        return cached
    environments_ensure()
    Task.objects.update_or_create(
        id=definition.id,
        defaults={
            "queue_name": definition.queue_name,
            "retry_policy": definition.retry.as_dict(),
            "max_duration": definition.max_duration,
            "module": definition.fn.__module__,
        },
    )
    # The task's queue in every environment; a row that exists keeps its limit and pause (changes there win).
    # A queue made in a paused environment starts paused (README: Pausing an environment).
    Queue.objects.bulk_create(
        [Queue(environment_id=slug, name=definition.queue_name, concurrency_limit=definition.concurrency_limit,
               total_limit=definition.total_limit, paused=paused_at is not None,
               **_rate_fields(definition.rate_limit))
         for slug, paused_at in Environment.objects.values_list("slug", "paused_at")],
        ignore_conflicts=True,
    )
    version, _ = TaskVersion.objects.get_or_create(
        task_id=definition.id, content_hash=definition.version_hash, deploy_label=definition.deploy_label
    )
    with _lock:
        _ensured[cache_key] = version
    return version


def task_cache_clear() -> None:
    """Forget which versions exist (tests flush the database between cases)."""
    with _lock:
        _ensured.clear()
        _known_environments.clear()


# Rows of workers that died without saying goodbye (killed, lost their machine) go after this.
WORKER_VERSION_RETENTION = timedelta(hours=1)


def worker_versions_announce(*, worker: str, hashes: Iterable[str], now: datetime, first: bool = False) -> None:
    """Say that ``worker`` holds these versions of task code as of ``now``; the first time, drop long-gone workers."""
    rows = [WorkerVersion(worker=worker, content_hash=h, seen_at=now) for h in hashes]
    with transaction.atomic():
        if first:
            WorkerVersion.objects.filter(seen_at__lt=now - WORKER_VERSION_RETENTION).delete()
        WorkerVersion.objects.bulk_create(rows, update_conflicts=True, unique_fields=["worker", "content_hash"],
                                          update_fields=["seen_at"])


def worker_versions_forget(*, worker: str) -> None:
    """Say that ``worker`` stopped: the versions it held are no longer running there."""
    WorkerVersion.objects.filter(worker=worker).delete()
