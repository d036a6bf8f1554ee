"""REST endpoints of runs: trigger, batch trigger, get, list, cancel, replay, idempotency key reset."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, ModelSchema, Query, Router, Schema, Status

from stepwise.console.api_auth import OPERATE, READ, TRIGGER, api_audit
from stepwise.runs.bulk import ACTIONS, bulk_action_count, bulk_action_get, bulk_action_start
from stepwise.runs.exports import run_export_response
from stepwise.runs.idempotency import idempotency_key_reset
from stepwise.runs.models import Attempt, Run, Step
from stepwise.runs.realtime.tokens import public_token_create
from stepwise.runs.selectors import RunFilters, run_api_page, run_detail_get
from stepwise.runs.services import RunNotFound, run_cancel, run_replay
from stepwise.runs.statuses import IdempotencyKeyScope, RunStatus
from stepwise.runs.triggers import TriggerOptions, run_batch_trigger, run_trigger
from stepwise.tasks.models import BulkAction

router = Router(tags=["runs"])


class TriggerIn(Schema):
    """A trigger: the payload and optional run options."""

    payload: Any = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    # "run" and "attempt" need a parent run, so through the API they are refused with a 400 saying so.
    idempotency_key_scope: IdempotencyKeyScope | None = None
    idempotency_key_ttl: float | str | None = None
    tags: list[str] = Field(default_factory=list, max_length=10)
    metadata: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(None, min_length=1, max_length=128)
    concurrency_key: str | None = Field(None, max_length=255)
    priority: int = Field(0, ge=-1000, le=1000)
    delay: float | str | None = None
    delay_until: datetime | None = None
    ttl: float | str | None = None
    max_duration: float | None = Field(None, gt=0)
    retry: dict[str, Any] | None = Field(
        None, description="This run's retry policy instead of the task's: max_attempts, factor, min_timeout, "
        "max_timeout, jitter",
    )
    debounce: dict[str, Any] | None = Field(
        None, description='{"key", "delay", "max_delay", "mode": "leading"|"trailing"}: triggers with the key '
        "within the delay collapse into one run, started after the last (at the latest max_delay after the first)",
    )
    throttle: dict[str, Any] | None = Field(
        None, description='{"key", "period"}: at most one run per key per period; a trigger in between is '
        "refused with 429 and Retry-After",
    )

    def options(self, environment: str) -> TriggerOptions:
        return TriggerOptions(**self.model_dump(exclude={"payload"}), environment=environment)


class BatchTriggerIn(Schema):
    items: list[TriggerIn] = Field(..., min_length=1, max_length=1000)


class TriggeredOut(Schema):
    id: str
    task_id: str
    status: str
    created: bool


class BatchTriggeredOut(Schema):
    batch_id: str | None = Field(None, description="the batch's id: filter runs with ?batch=<id>")
    runs: list[TriggeredOut]


class ErrorCauseOut(Schema):
    """One cause of an error: what it was raised from, or raised while handling."""

    type: str = Field(..., description="The exception's class, with its module unless it is a builtin.")
    message: str
    where: str | None = Field(None, description="`file:line in function` of the frame that raised it.")


class ErrorOut(Schema):
    """Why a run, an attempt or a step failed, with the chain of causes behind it."""

    type: str = Field(..., description="The exception's class, with its module unless it is a builtin.")
    message: str
    where: str | None = Field(None, description="`file:line in function` of the frame that raised it.")
    causes: list[ErrorCauseOut] = Field(
        default_factory=list,
        description="What the error was raised from (`raise ... from ...`) or while handling, nearest first; "
        "at most 5, and none after `raise ... from None`.",
    )
    causes_left_off: int = Field(0, description="How many causes the chain has beyond `causes`.")
    traceback: str = Field("", description="The full traceback, every chained exception included.")


class AttemptOut(ModelSchema):
    error: ErrorOut | None
    version: str  # the version of the code that executed the attempt

    @staticmethod
    def resolve_version(obj: Attempt) -> str:
        return obj.version.label

    class Meta:
        model = Attempt
        fields = ["number", "status", "worker_id", "error", "retry_delay", "started_at", "finished_at"]


class StepOut(ModelSchema):
    error: ErrorOut | None

    class Meta:
        model = Step
        fields = ["position", "key", "name", "kind", "status", "output", "error", "attempt_number",
                  "started_at", "finished_at"]


class RunSummaryOut(ModelSchema):
    task_id: str
    environment: str
    version: str  # the version the run was triggered on (pinned to, under version_policy "pin")
    waiting_for_version: bool  # QUEUED, pinned, and no running worker holds its version

    @staticmethod
    def resolve_environment(obj: Run) -> str:
        return obj.environment_id

    @staticmethod
    def resolve_version(obj: Run) -> str:
        return obj.version.label

    class Meta:
        model = Run
        fields = ["id", "status", "version_policy", "idempotency_key", "tags", "queue", "concurrency_key", "priority",
                  "attempt_count", "created_at", "started_at", "finished_at"]


class RunOut(RunSummaryOut):
    payload: Any
    output: Any
    error: ErrorOut | None
    metadata: dict[str, Any]
    retry: dict[str, Any] | None = Field(None, description="the trigger's retry policy, if it overrode the task's")
    hooks_done: list[str] = Field(default_factory=list, description="once-per-run hooks that ran")
    parent_run_id: str | None
    replayed_from_id: str | None
    delay_until: datetime | None
    ttl_expires_at: datetime | None
    idempotency_key_scope: str | None
    idempotency_expires_at: datetime | None
    idempotency_key_reset_at: datetime | None
    idempotency_key_state: str | None = Field(None, description='"active", "expired", "reset"; null without a key')
    attempts: list[AttemptOut]
    steps: list[StepOut]


class RunPageOut(Schema):
    items: list[RunSummaryOut]
    next_cursor: str | None


class RunListQuery(Schema):
    task: str | None = None
    status: RunStatus | None = None
    tag: str | None = None
    idempotency_key: str | None = None
    queue: str | None = Field(None, max_length=128)
    batch: str | None = Field(None, max_length=64, description="a batch_trigger's batch_id")
    schedule: int | None = Field(None, ge=1, description="the id of the schedule that triggered the runs")
    cursor: str | None = Field(None, max_length=40)
    limit: int = Field(50, ge=1, le=200)


class RunFilterIn(Schema):
    """The runs-list filters, as GET /api/runs takes them (the environment is the caller's)."""

    task: str | None = Field(None, max_length=128)
    status: RunStatus | None = None
    tag: str | None = Field(None, max_length=128)
    version: str | None = Field(None, max_length=128)
    idempotency_key: str | None = Field(None, max_length=255)
    queue: str | None = Field(None, max_length=128)
    batch: str | None = Field(None, max_length=64)
    schedule: int | None = Field(None, ge=1)
    run_id: str | None = Field(None, max_length=40)
    created_after: datetime | None = None
    created_before: datetime | None = None

    def filters(self, environment: str) -> RunFilters:
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        if "schedule" in values:
            values["schedule"] = str(values["schedule"])
        return RunFilters(**values, environment=environment)


class BulkIn(Schema):
    """Cancel or replay every run of this environment matching ``filters`` (all runs when empty)."""

    action: Literal[ACTIONS]
    filters: RunFilterIn = Field(default_factory=RunFilterIn)


class BulkCountOut(Schema):
    action: str
    count: int = Field(..., description="how many runs the action would touch now (cancel: unfinished ones)")


class BulkActionOut(ModelSchema):
    environment: str

    @staticmethod
    def resolve_environment(obj) -> str:
        return obj.environment_id

    class Meta:
        model = BulkAction
        fields = ["id", "action", "filters", "actor", "total", "done", "skipped", "status", "problems", "created_at",
                  "finished_at"]


class IdempotencyKeyResetIn(Schema):
    """The key to free: as given to the trigger, with its scope (and the parent run for "run" and "attempt")."""

    key: str = Field(..., min_length=1, max_length=255)
    scope: IdempotencyKeyScope = IdempotencyKeyScope.GLOBAL
    parent_run_id: str | None = Field(None, min_length=1, max_length=40)
    parent_attempt: int | None = Field(None, ge=1)


class IdempotencyKeyResetOut(Schema):
    """The run that held the key: it keeps showing the key, marked reset."""

    run_id: str
    task_id: str
    key: str
    scope: str
    reset_at: datetime


class ReplayIn(Schema):
    """Replay a run; give ``payload`` to replay it with an edited payload."""

    payload: Any = None


def _detail(request: HttpRequest, run_id: str) -> Run:
    """Return a run of the caller's environment as the caller may see it (a viewer's payloads may be hidden)."""
    environment = request.auth.environment
    run = run_detail_get(run_id=run_id, environment=environment, viewer=request.auth.holder)
    if run is None:
        raise RunNotFound(f"no run with id '{run_id}' in environment '{environment}'")
    return run


def _triggered(run: Run, created: bool) -> TriggeredOut:
    return TriggeredOut(id=run.id, task_id=run.task_id, status=run.status, created=created)


@router.post("/tasks/{task_id}/trigger", response={201: TriggeredOut, 200: TriggeredOut}, auth=TRIGGER)
def trigger(request: HttpRequest, task_id: str, body: TriggerIn):
    """Trigger a run of a task; an idempotency key that matches returns the existing run (200)."""
    run, created = run_trigger(
        task_id=task_id, payload=body.payload, options=body.options(request.auth.environment)
    )
    return Status(201 if created else 200, _triggered(run, created))


@router.post("/tasks/{task_id}/batch", response={201: BatchTriggeredOut}, auth=TRIGGER)
def batch_trigger(request: HttpRequest, task_id: str, body: BatchTriggerIn):
    """Trigger many runs of one task at once: all or none."""
    environment = request.auth.environment
    items = [
        {**item.model_dump(exclude_defaults=True, exclude={"payload"}), "payload": item.payload,
         "environment": environment}
        for item in body.items
    ]
    results = run_batch_trigger(task_id=task_id, items=items)
    batch_id = next((t.removeprefix("batch:") for t in results[0][0].tags if t.startswith("batch:")), None)
    return Status(201, BatchTriggeredOut(batch_id=batch_id, runs=[_triggered(r, c) for r, c in results]))


@router.post("/tasks/{task_id}/idempotency-keys/reset", response=IdempotencyKeyResetOut, auth=OPERATE)
def reset_idempotency_key(request: HttpRequest, task_id: str, body: IdempotencyKeyResetIn):
    """Free an idempotency key: the next trigger with it starts a new run. Unknown key: 404."""
    run = idempotency_key_reset(
        task_id=task_id, key=body.key, scope=body.scope, parent_run_id=body.parent_run_id,
        parent_attempt=body.parent_attempt, environment=request.auth.environment, actor=request.auth.actor,
    )
    api_audit(request, "idempotency_key.reset", target=f"{run.task_id}:{run.idempotency_key}",
              data={"run_id": run.id, "scope": body.scope})
    return IdempotencyKeyResetOut(run_id=run.id, task_id=run.task_id, key=run.idempotency_key,
                                  scope=run.idempotency_key_scope, reset_at=run.idempotency_key_reset_at)


@router.get("/runs", response=RunPageOut, auth=READ)
def list_runs(request: HttpRequest, filters: Query[RunListQuery]):
    """List runs newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    runs, cursor = run_api_page(
        filters=RunFilters(
            environment=request.auth.environment,
            task=filters.task or "",
            status=filters.status or "",
            tag=filters.tag or "",
            idempotency_key=filters.idempotency_key or "",
            queue=filters.queue or "",
            batch=filters.batch or "",
            schedule=str(filters.schedule or ""),
        ),
        cursor=filters.cursor,
        limit=filters.limit,
    )
    return {"items": runs, "next_cursor": cursor}


@router.get("/runs/{run_id}", response=RunOut, auth=READ)
def get_run(request: HttpRequest, run_id: str):
    """Return a run with its attempts, steps, output and error."""
    return _detail(request, run_id)


@router.get("/runs/{run_id}/export", auth=READ)
def export_run(request: HttpRequest, run_id: str, format: Literal["jsonl", "markdown", "otlp"] = "jsonl"):
    """Download the run's trace: ``jsonl`` (run, attempts, steps, spans, events; one object a line),
    ``markdown`` (a readable report) or ``otlp`` (its spans as OTLP-JSON, for any OpenTelemetry backend)."""
    return run_export_response(_detail(request, run_id), format, viewer=request.auth.holder)


@router.post("/runs/{run_id}/cancel", response=RunOut, auth=OPERATE)
def cancel_run(request: HttpRequest, run_id: str):
    """Cancel a run that has not finished."""
    _detail(request, run_id)
    run_cancel(run_id=run_id, reason="canceled through the API")
    api_audit(request, "run.cancel", target=run_id)
    return _detail(request, run_id)


@router.post("/runs/{run_id}/replay", response={201: TriggeredOut}, auth=OPERATE)
def replay_run(request: HttpRequest, run_id: str, body: ReplayIn | None = None):
    """Start a new run of the same task, linked to this one, optionally with an edited payload."""
    _detail(request, run_id)
    edited = body is not None and "payload" in body.model_fields_set
    run = run_replay(run_id=run_id, payload=body.payload if edited else ...)
    api_audit(request, "run.replay", target=run_id, data={"new_run_id": run.id, "payload_edited": edited})
    return Status(201, _triggered(run, True))


class PublicTokenIn(Schema):
    """What a public token may read, and for how long."""

    scopes: dict[str, list[str]] = Field(
        ..., description='{"runs": [run ids], "tags": [tags]}: the runs it may follow, by id or by tag'
    )
    expires_in: float | str | None = Field(
        None, description='seconds or a duration ("15m", "2h"); default 15 minutes, at most 7 days'
    )


class PublicTokenOut(Schema):
    token: str = Field(..., description="send as 'Authorization: Bearer <token>' to the realtime endpoints")
    environment: str
    scopes: dict[str, list[str]]
    expires_at: datetime


@router.post("/auth/public-tokens", response={201: PublicTokenOut}, auth=READ)
def create_public_token(request: HttpRequest, body: PublicTokenIn):
    """Make a signed, expiring, read-only token for a browser: it may follow only the runs and tags it names."""
    text, token = public_token_create(environment=request.auth.environment, scopes=body.scopes,
                                      expires_in=body.expires_in, api_key_id=request.auth.api_key_id)
    api_audit(request, "public_token.create", target=",".join([*token.runs, *token.tags])[:200],
              data={**token.scopes(), "expires_at": token.expires_at.isoformat()})
    return Status(201, PublicTokenOut(token=text, environment=token.environment, scopes=token.scopes(),
                                      expires_at=token.expires_at))


@router.post("/bulk-actions/count", response=BulkCountOut, auth=OPERATE)
def count_bulk(request: HttpRequest, body: BulkIn):
    """Say how many runs a bulk action would touch, before confirming it."""
    filters = body.filters.filters(request.auth.environment)
    return BulkCountOut(action=body.action, count=bulk_action_count(filters=filters, action=body.action))


@router.post("/bulk-actions", response={202: BulkActionOut}, auth=OPERATE)
def start_bulk(request: HttpRequest, body: BulkIn):
    """Cancel or replay every matching run (not only a page): done in batches by the scheduler; poll its progress."""
    bulk = bulk_action_start(environment=request.auth.environment, action=body.action,
                             filters=body.filters.filters(request.auth.environment), actor=request.auth.audit_actor)
    return Status(202, bulk)


@router.get("/bulk-actions/{bulk_id}", response=BulkActionOut, auth=READ)
def get_bulk(request: HttpRequest, bulk_id: int):
    """Return a bulk action's progress: how many runs it matched, did and skipped (with the first reasons)."""
    return bulk_action_get(environment=request.auth.environment, bulk_id=bulk_id)
