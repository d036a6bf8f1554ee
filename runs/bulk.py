"""Bulk actions by filter: cancel or replay every run a runs-list filter matches, in batches, in the background.

Confirming records a ``BulkAction`` with the filter, how many runs matched, and a cursor just
above the newest of them; runs triggered afterwards are not part of it. The scheduler then
takes the matching runs newest first, ``BULK_BATCH`` per pass and action, each batch in its own
short transactions, so a million runs never hold a lock for long. Progress is on the record.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.models import Run
from stepwise.runs.selectors import RunFilters, runs_filtered
from stepwise.runs.services import run_cancel, run_replay
from stepwise.runs.statuses import ACTIVE_STATUSES, FINAL_STATUSES
from stepwise.tasks.audit import Actor, audit_record
from stepwise.tasks.models import BulkAction

logger = logging.getLogger(__name__)
ACTIONS = ("cancel", "replay")
BULK_BATCH = 100
PROBLEMS_KEPT = 5
_DATES = ("created_after", "created_before")


class InvalidBulkAction(StepwiseError):
    """A bulk action names an unknown action or an environment it cannot run in; nothing was started."""


class BulkActionNotFound(StepwiseError):
    """No bulk action has this id in this environment."""


def _matching(filters: RunFilters, action: str) -> QuerySet[Run]:
    """Return the runs an action would touch: every match to replay, only unfinished ones to cancel."""
    if action not in ACTIONS:
        raise InvalidBulkAction(f"unknown bulk action '{action}' (actions: {', '.join(ACTIONS)})")
    qs = runs_filtered(filters)
    if action == "cancel":
        if filters.status and filters.status in FINAL_STATUSES:
            return qs.none()
        qs = qs.filter(status__in=ACTIVE_STATUSES)
    return qs


def bulk_action_count(*, filters: RunFilters, action: str) -> int:
    """Return how many runs the action would touch right now: what is shown before confirming."""
    return _matching(filters, action).count()


def filters_stored(filters: RunFilters) -> dict[str, Any]:
    """Return a filter as the JSON a BulkAction keeps."""
    values = {k: v for k, v in asdict(filters).items() if v not in ("", None) and k != "environments"}
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def filters_loaded(stored: dict[str, Any], environment: str) -> RunFilters:
    """Return the filter a BulkAction keeps, bound to its environment."""
    values = {k: datetime.fromisoformat(v) if k in _DATES else v for k, v in stored.items()}
    return replace(RunFilters(**values), environment=environment, environments=None)


def bulk_action_start(*, environment: str, action: str, filters: RunFilters, actor: Actor) -> BulkAction:
    """Record a bulk action over the runs of one environment matching ``filters``; the scheduler carries it out."""
    filters = replace(filters, environment=environment, environments=None)
    matching = _matching(filters, action)
    newest = matching.order_by("-id").values_list("id", flat=True).first()
    total = matching.count() if newest else 0
    with transaction.atomic():
        bulk = BulkAction.objects.create(
            environment_id=environment, action=action, filters=filters_stored(filters), actor=actor.name[:150],
            total=total, cursor=(newest or "") + "~",  # "~" sorts after every id character: the newest is included
            status="running" if total else "finished", finished_at=None if total else timezone.now(),
        )
        audit_record(actor=actor, action=f"runs.bulk_{action}", environment=environment, target=bulk.id,
                     data={"filters": bulk.filters, "matched": total})
    return bulk


def bulk_action_get(*, environment: str, bulk_id: int) -> BulkAction:
    """Return one bulk action of an environment, or raise BulkActionNotFound."""
    bulk = BulkAction.objects.filter(environment_id=environment, id=bulk_id).first()
    if bulk is None:
        raise BulkActionNotFound(f"no bulk action {bulk_id} in environment '{environment}'")
    return bulk


def _apply(bulk: BulkAction, run_id: str) -> None:
    if bulk.action == "cancel":
        run_cancel(run_id=run_id, reason=f"canceled by {bulk.actor} (bulk action {bulk.id})")
    else:
        run_replay(run_id=run_id)


def bulk_action_step(bulk_id: int) -> bool:
    """Carry out the next batch of one running bulk action; return whether it did anything."""
    with transaction.atomic():
        bulk = BulkAction.objects.select_for_update(skip_locked=True).filter(id=bulk_id, status="running").first()
        if bulk is None:
            return False  # finished, or another scheduler holds it
        run_ids = list(_matching(filters_loaded(bulk.filters, bulk.environment_id), bulk.action)
                       .filter(id__lt=bulk.cursor).order_by("-id").values_list("id", flat=True)[:BULK_BATCH])
        for run_id in run_ids:
            try:
                with transaction.atomic():
                    _apply(bulk, run_id)
                bulk.done += 1
            except (StepwiseError, IntegrityError) as exc:  # finished meanwhile, or refused: counted, reasons kept
                bulk.skipped += 1
                if len(bulk.problems) < PROBLEMS_KEPT:
                    bulk.problems = [*bulk.problems, f"{run_id}: {exc}"]
        if run_ids:
            bulk.cursor = run_ids[-1]
        if len(run_ids) < BULK_BATCH:
            bulk.status, bulk.finished_at = "finished", timezone.now()
        bulk.save(update_fields=["done", "skipped", "problems", "cursor", "status", "finished_at"])
    return True


def bulk_actions_advance() -> int:
    """Carry out one batch of every running bulk action (the scheduler's pass); return how many ran."""
    return sum(bulk_action_step(bulk_id)
               for bulk_id in BulkAction.objects.filter(status="running").order_by("id").values_list("id", flat=True))
