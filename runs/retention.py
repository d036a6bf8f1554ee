"""Retention: finished runs (with their steps, attempts, events and spans) are deleted after a while.

STEPWISE_RETENTION sets, per environment (``"*"`` for the rest), how many days finished runs are
kept (``runs_days``) and how many days their spans and log events are kept (``details_days``,
the bulk of what a run stores). Deletes go in small batches, each its own short transaction,
found through the run id's time prefix, so no pass holds long locks or scans the whole table.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q

from stepwise.runs.ids import encode_millis
from stepwise.runs.models import Attempt, Event, Run, RunEvent, Span, Step, TriggerGate, Waitpoint, WaitpointChild
from stepwise.runs.statuses import FINAL_STATUSES
from stepwise.tasks.models import Environment

DETAIL_EVENTS = ("log", "spans.ended", "step.started", "metadata.updated")


@dataclass(frozen=True)
class Retention:
    """How long one environment keeps finished runs and their details; None keeps them forever."""

    runs_days: float | None
    details_days: float | None


@dataclass
class PruneReport:
    runs: int = 0
    spans: int = 0
    events: int = 0
    sent_events: int = 0

    def __str__(self) -> str:
        return (f"{self.runs} runs, {self.spans} spans, {self.events} run events, "
                f"{self.sent_events} sent events")


def _days(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 36500:
        raise ImproperlyConfigured(f"{where} must be a number of days above 0 (or None to keep forever), "
                                   f"not {value!r}")
    return float(value)


def retention_for(environment: str) -> Retention:
    """Return the retention of an environment from STEPWISE_RETENTION; raise ImproperlyConfigured if it is wrong."""
    configured = getattr(settings, "STEPWISE_RETENTION", {}) or {}
    if not isinstance(configured, dict):
        raise ImproperlyConfigured("STEPWISE_RETENTION must be a dict of environment name to "
                                   '{"runs_days": N, "details_days": M}')
    entry = configured.get(environment, configured.get("*", {}))
    unknown = set(entry) - {"runs_days", "details_days"}
    if unknown:
        raise ImproperlyConfigured(f"STEPWISE_RETENTION[{environment!r}]: unknown key(s) {', '.join(sorted(unknown))}")
    runs_days = _days(entry.get("runs_days"), f"STEPWISE_RETENTION[{environment!r}]['runs_days']")
    details_days = _days(entry.get("details_days"), f"STEPWISE_RETENTION[{environment!r}]['details_days']")
    return Retention(runs_days=runs_days, details_days=details_days)


def _id_before(moment: datetime) -> str:
    """Return the smallest run id made at ``moment``: every run created earlier sorts below it."""
    return f"run_{encode_millis(int(moment.timestamp() * 1000))}"


def _finished_before(environment: str, cutoff: datetime):
    return Run.objects.filter(
        environment_id=environment, id__lt=_id_before(cutoff), status__in=FINAL_STATUSES, finished_at__lt=cutoff,
    )


def _batches(ids_of: Callable[[], list[str]], delete: Callable[[list[str]], None], *, limit: int | None,
             progress: Callable[[int], None] | None) -> int:
    done = 0
    while limit is None or done < limit:
        ids = ids_of()
        if not ids:
            break
        with transaction.atomic():
            delete(ids)
        done += len(ids)
        if progress is not None:
            progress(done)
    return done


def _raw_delete(model: type[Any], column: str, ids: list[str]) -> None:
    """DELETE rows by a column, in one statement: the ORM would first read every row it deletes."""
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)} "
                       f"WHERE {connection.ops.quote_name(column)} IN ({marks})", ids)


def _runs_delete(ids: list[str]) -> None:
    """Delete runs and everything that belongs to them; links to them from other runs become NULL."""
    Run.objects.filter(parent_run_id__in=ids).update(parent_run=None)
    Run.objects.filter(root_run_id__in=ids).update(root_run=None)
    Run.objects.filter(replayed_from_id__in=ids).update(replayed_from=None)
    Run.objects.filter(parent_waitpoint__run_id__in=ids).update(parent_waitpoint=None)
    TriggerGate.objects.filter(run_id__in=ids).update(run=None)
    WaitpointChild.objects.filter(Q(run_id__in=ids) | Q(waitpoint__run_id__in=ids)).delete()
    for model in (Waitpoint, Attempt, Step, RunEvent, Span):
        _raw_delete(model, "run_id", ids)
    _raw_delete(Run, "id", ids)


def prune_environment(
    environment: str, *, now: datetime, batch: int = 500, limit: int | None = None, dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> PruneReport:
    """Delete what an environment's retention no longer keeps; with ``dry_run``, only count it.

    ``limit`` bounds how many runs one call deletes (the scheduler's passes stay short).
    """
    retention = retention_for(environment)
    report = PruneReport()
    if retention.runs_days is not None:
        expired = _finished_before(environment, now - timedelta(days=retention.runs_days))
        # A run another run still waits for stays until its waiter is gone.
        expired = expired.exclude(Exists(Waitpoint.objects.filter(
            child_links__run_id=OuterRef("pk"), status="PENDING")))
        if dry_run:
            report.runs = expired.count()
        else:
            report.runs = _batches(
                lambda: list(expired.order_by("id").values_list("id", flat=True)[:batch]),
                _runs_delete,
                limit=limit, progress=(lambda n: progress("runs", n)) if progress else None,
            )
        sent = Event.objects.filter(environment_id=environment,
                                    created_at__lt=now - timedelta(days=retention.runs_days))
        if dry_run:
            report.sent_events = sent.count()
        else:
            report.sent_events = _batches(
                lambda: list(sent.order_by("created_at").values_list("id", flat=True)[:batch]),
                lambda ids: Event.objects.filter(id__in=ids).delete(), limit=limit, progress=None,
            )
    if retention.details_days is not None:
        older = _finished_before(environment, now - timedelta(days=retention.details_days))
        with_spans = older.filter(Exists(Span.objects.filter(run_id=OuterRef("pk"))))
        with_details = older.filter(Exists(RunEvent.objects.filter(run_id=OuterRef("pk"), type__in=DETAIL_EVENTS)))
        if dry_run:
            report.spans = Span.objects.filter(run__in=older).count()
            report.events = RunEvent.objects.filter(run__in=older, type__in=DETAIL_EVENTS).count()
        else:
            def drop_spans(ids: list[str]) -> None:
                report.spans += Span.objects.filter(run_id__in=ids).delete()[0]

            def drop_events(ids: list[str]) -> None:
                report.events += RunEvent.objects.filter(run_id__in=ids, type__in=DETAIL_EVENTS).delete()[0]

            _batches(lambda: list(with_spans.order_by("id").values_list("id", flat=True)[:batch]), drop_spans,
                     limit=limit, progress=None)
            _batches(lambda: list(with_details.order_by("id").values_list("id", flat=True)[:batch]), drop_events,
                     limit=limit, progress=None)
    return report


def prune(*, now: datetime, environment: str | None = None, batch: int = 500, limit: int | None = None,
          dry_run: bool = False, progress: Callable[[str, int], None] | None = None) -> dict[str, PruneReport]:
    """Prune every environment (or one): {environment: what was deleted}."""
    names = [environment] if environment else list(Environment.objects.order_by("slug").values_list("slug",
                                                                                                    flat=True))
    return {name: prune_environment(name, now=now, batch=batch, limit=limit, dry_run=dry_run, progress=progress)
            for name in names}


_last_pass: float | None = None


def retention_pass(now: datetime) -> int:
    """The scheduler's share: every STEPWISE_PRUNE_INTERVAL_SECONDS, prune up to 1,000 runs per environment.

    Returns the runs deleted (0 between passes, or without STEPWISE_RETENTION).
    """
    global _last_pass
    if not getattr(settings, "STEPWISE_RETENTION", None):
        return 0
    moment = time.monotonic()
    if _last_pass is not None and moment - _last_pass < settings.STEPWISE_PRUNE_INTERVAL_SECONDS:
        return 0
    _last_pass = moment
    return sum(report.runs for report in prune(now=now, limit=1000).values())
