"""REST endpoints of waits: send an event; list, get, complete, approve and reject waitpoints."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, ModelSchema, Query, Router, Schema, Status

from stepwise.console.api_auth import OPERATE, READ, TRIGGER, api_audit
from stepwise.runs.engine.waits import EVENT_NAME_MAX_LENGTH, EVENT_NAME_PATTERN
from stepwise.runs.models import Waitpoint, WaitpointKind, WaitpointStatus
from stepwise.runs.selectors import waitpoint_detail_get, waitpoint_list
from stepwise.runs.waits import (
    WaitpointNotFound,
    event_send,
    waitpoint_approve,
    waitpoint_complete,
    waitpoint_reject,
    waitpoint_skip,
    waitpoint_time_out,
)
from stepwise.tasks.redaction import run_display

router = Router(tags=["waits"])


class EventIn(Schema):
    """An event: waits for this name whose filter the payload holds resume with the payload."""

    name: str = Field(..., min_length=1, max_length=EVENT_NAME_MAX_LENGTH, pattern=EVENT_NAME_PATTERN,
                      examples=["invoice.paid"])
    payload: Any = None


class EventSentOut(Schema):
    id: str
    name: str
    created_at: datetime
    resumed_runs: int = Field(..., description="How many waiting runs this event resumed.")


class WaitpointOut(ModelSchema):
    run_id: str
    task_id: str

    @staticmethod
    def resolve_task_id(obj: Waitpoint) -> str:
        return obj.run.task_id

    @staticmethod
    def resolve_output(obj: Waitpoint, context: dict[str, Any]) -> Any:
        # The run resumes with this value as a step result: shown redacted, or hidden, as its other results are.
        return run_display(obj.run, viewer=context["request"].auth.holder).value(obj.output)

    class Meta:
        model = Waitpoint
        fields = ["id", "kind", "status", "key", "description", "event_name", "event_filter", "resume_at",
                  "output", "completed_by", "created_at", "completed_at"]


class WaitpointPageOut(Schema):
    items: list[WaitpointOut]
    next_cursor: str | None


class WaitpointFilters(Schema):
    status: WaitpointStatus = WaitpointStatus.PENDING
    kind: WaitpointKind | None = None
    run_id: str | None = Field(None, max_length=40)
    cursor: str | None = Field(None, max_length=40)
    limit: int = Field(50, ge=1, le=200)


class CompleteIn(Schema):
    """Complete a token: its run resumes with ``output`` (any JSON)."""

    output: Any = None


class DecisionIn(Schema):
    """Approve or reject a token: its run resumes with ``{"approved": true|false, **data}``."""

    data: dict[str, Any] | None = None


def _detail(environment: str, waitpoint_id: str) -> Waitpoint:
    wp = waitpoint_detail_get(waitpoint_id=waitpoint_id, environment=environment)
    if wp is None:
        raise WaitpointNotFound(f"no waitpoint with id '{waitpoint_id}' in environment '{environment}'")
    return wp


def _audited(request: HttpRequest, verb: str, waitpoint: Waitpoint) -> Waitpoint:
    api_audit(request, f"waitpoint.{verb}", target=waitpoint.id, data={"run_id": waitpoint.run_id})
    return waitpoint


@router.post("/events", response={201: EventSentOut}, tags=["events"], auth=TRIGGER)
def send_event(request: HttpRequest, body: EventIn):
    """Send an event; every pending wait of this environment it matches resumes."""
    event, resumed = event_send(name=body.name, payload=body.payload, environment=request.auth.environment)
    return Status(201, EventSentOut(id=event.id, name=event.name, created_at=event.created_at, resumed_runs=resumed))


@router.get("/waitpoints", response=WaitpointPageOut, auth=READ)
def list_waitpoints(request: HttpRequest, filters: Query[WaitpointFilters]):
    """List waitpoints oldest first (pending ones by default); pass ``next_cursor`` back as ``cursor``."""
    rows = waitpoint_list(
        status=filters.status,
        kind=filters.kind,
        environment=request.auth.environment,
        run_id=filters.run_id,
        after=filters.cursor,
        limit=filters.limit + 1,
    )
    items = rows[: filters.limit]
    return {"items": items, "next_cursor": items[-1].id if len(rows) > filters.limit else None}


@router.get("/waitpoints/{waitpoint_id}", response=WaitpointOut, auth=READ)
def get_waitpoint(request: HttpRequest, waitpoint_id: str):
    """Return one waitpoint: what it waits for, its status, and its output once resolved."""
    return _detail(request.auth.environment, waitpoint_id)


@router.post("/waitpoints/{waitpoint_id}/complete", response=WaitpointOut, auth=OPERATE)
def complete_waitpoint(request: HttpRequest, waitpoint_id: str, body: CompleteIn | None = None):
    """Complete a pending token with an output; its run resumes with it."""
    return _audited(request, "complete", waitpoint_complete(
        waitpoint_id=waitpoint_id, output=body.output if body else None, by=request.auth.actor,
        environment=request.auth.environment,
    ))


@router.post("/waitpoints/{waitpoint_id}/approve", response=WaitpointOut, auth=OPERATE)
def approve_waitpoint(request: HttpRequest, waitpoint_id: str, body: DecisionIn | None = None):
    """Approve a pending token; its run resumes with ``{"approved": true, **data}``."""
    return _audited(request, "approve", waitpoint_approve(
        waitpoint_id=waitpoint_id, data=body.data if body else None, by=request.auth.actor,
        environment=request.auth.environment,
    ))


@router.post("/waitpoints/{waitpoint_id}/reject", response=WaitpointOut, auth=OPERATE)
def reject_waitpoint(request: HttpRequest, waitpoint_id: str, body: DecisionIn | None = None):
    """Reject a pending token; its run resumes with ``{"approved": false, **data}``."""
    return _audited(request, "reject", waitpoint_reject(
        waitpoint_id=waitpoint_id, data=body.data if body else None, by=request.auth.actor,
        environment=request.auth.environment,
    ))


@router.post("/waitpoints/{waitpoint_id}/timeout", response=WaitpointOut, auth=OPERATE)
def time_out_waitpoint(request: HttpRequest, waitpoint_id: str):
    """Time a pending token or event wait out now; its run resumes with ``ok`` false."""
    return _audited(request, "time_out", waitpoint_time_out(
        waitpoint_id=waitpoint_id, by=request.auth.actor, environment=request.auth.environment,
    ))


@router.post("/waitpoints/{waitpoint_id}/skip", response=WaitpointOut, auth=OPERATE)
def skip_waitpoint(request: HttpRequest, waitpoint_id: str):
    """Resolve a pending wait now: a timer resumes early, a token or event wait with ``{"skipped": true}``."""
    return _audited(request, "skip", waitpoint_skip(
        waitpoint_id=waitpoint_id, by=request.auth.actor, environment=request.auth.environment,
    ))

