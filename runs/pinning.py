"""Runs pinned to their version of the code: waiting for a worker that holds it, failing after the grace period.

A worker announces the versions it holds (``stepwise.runs.worker.VersionAnnouncer``); the scheduler
compares them with the QUEUED pinned runs. A run whose version no running worker holds is
marked as waiting for it (and says so on its page); a worker of that version showing up ends
the wait; a wait longer than STEPWISE_VERSION_GRACE_SECONDS fails the run, naming the version.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from stepwise.runs.dispatch import dispatch_run_on_commit
from stepwise.runs.events import event_append
from stepwise.runs.lifecycle import run_settle
from stepwise.runs.models import Run
from stepwise.runs.states import TransitionRefused
from stepwise.runs.statuses import RunStatus, VersionPolicy
from stepwise.tasks.models import TaskVersion
from stepwise.tasks.selectors import versions_running

VERSION_UNAVAILABLE = "VersionUnavailable"


def pinned_queued() -> QuerySet[Run]:
    """QUEUED runs that may only execute on the version they were triggered on."""
    return Run.objects.filter(status=RunStatus.QUEUED, version_policy=VersionPolicy.PIN)


def versions_running_now(now: datetime) -> set[str]:
    """Return the content hashes held by workers that announced themselves within a lease."""
    return set(versions_running(since=now - timedelta(seconds=settings.STEPWISE_LEASE_SECONDS)))


def held_by_running_workers(running: set[str]) -> QuerySet[TaskVersion]:
    """The ids of the versions some running worker holds (a subquery: no version row is locked)."""
    return TaskVersion.objects.filter(content_hash__in=running).values("id")


def version_wait_deadline(run: Run) -> datetime | None:
    """Return when a run waiting for its version fails unless a worker holding it starts; None if it is not waiting."""
    if not run.waiting_for_version:
        return None
    return run.version_wait_since + timedelta(seconds=settings.STEPWISE_VERSION_GRACE_SECONDS)


def version_wait_start(run: Run, now: datetime) -> None:
    """Note that no running worker holds a pinned run's version: the run waits for one, for the grace period."""
    if not Run.objects.filter(id=run.id, status=RunStatus.QUEUED, version_wait_since__isnull=True).update(
        version_wait_since=now
    ):
        raise TransitionRefused(run.id, RunStatus.QUEUED, None)
    version = TaskVersion.objects.get(id=run.version_id)
    event_append(run_id=run.id, type="version.waiting", data={
        "version": version.label, "hash": version.content_hash,
        "grace_seconds": settings.STEPWISE_VERSION_GRACE_SECONDS,
    })


def version_wait_end(run: Run, now: datetime) -> None:
    """A worker holding the run's version is running again: hint the run to it."""
    if not Run.objects.filter(id=run.id, status=RunStatus.QUEUED, version_wait_since__isnull=False).update(
        version_wait_since=None, dispatched_at=now
    ):
        raise TransitionRefused(run.id, RunStatus.QUEUED, None)
    content_hash = TaskVersion.objects.filter(id=run.version_id).values_list("content_hash", flat=True).get()
    dispatch_run_on_commit(run.id, resume=run.attempt_count > 0, version=content_hash, priority=run.priority)


def version_unavailable_error(*, task_id: str, version: TaskVersion, waited: float) -> dict[str, str]:
    """Return the error of a pinned run that no worker of its version took within the grace period."""
    return {
        "type": VERSION_UNAVAILABLE,
        "message": (
            f"no worker of version {version.label} of task '{task_id}' is running: the run is pinned to that "
            f"version (version_policy 'pin') and no worker holding it came within {waited:g}s. Start a worker "
            "with that code, or replay the run on the current code."
        ),
        "traceback": "",
    }


def version_wait_give_up(run: Run, now: datetime) -> None:
    """Fail a pinned run whose version no running worker held for the whole grace period."""
    cutoff = now - timedelta(seconds=settings.STEPWISE_VERSION_GRACE_SECONDS)
    # Picked in an earlier transaction: a worker of the version may have taken the run since.
    current = Run.objects.select_for_update(no_key=True).filter(
        id=run.id, status=RunStatus.QUEUED, version_wait_since__lte=cutoff
    ).values_list("version_wait_since", flat=True).first()
    if current is None:
        raise TransitionRefused(run.id, RunStatus.FAILED, None)
    version = TaskVersion.objects.get(id=run.version_id)
    error = version_unavailable_error(task_id=run.task_id, version=version, waited=(now - current).total_seconds())
    run_settle(
        run_id=run.id, to=RunStatus.FAILED, expected_from=[RunStatus.QUEUED], error=error,
        event_data={"error": {"type": error["type"], "message": error["message"]}},
    )
