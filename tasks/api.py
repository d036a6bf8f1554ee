"""REST endpoints of tasks: queues, schedules, secrets, API keys, webhook secrets and webhook triggers."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, ModelSchema, Query, Router, Schema, Status

from stepwise.console.api_auth import READ, api_audit
from stepwise.runs.api import TriggeredOut
from stepwise.tasks.access import DEFAULT_SCOPES, Capability, Role, payloads_hidden, role_grant, role_list, role_revoke
from stepwise.tasks.apikeys import api_key_create, api_key_list, api_key_revoke
from stepwise.tasks.audit import audit_list
from stepwise.tasks.environments import environment_pause, environment_resume, environment_state
from stepwise.tasks.models import ApiKey, AuditEntry, Schedule, WebhookSecret
from stepwise.tasks.queues import (
    UNCHANGED,
    queue_get,
    queue_limit_set,
    queue_list,
    queue_pause,
    queue_rate_set,
    queue_resume,
)
from stepwise.tasks.redaction import RunDisplay
from stepwise.tasks.schedules import (
    schedule_delete,
    schedule_get,
    schedule_list,
    schedule_next_runs,
    schedule_update,
    schedule_upsert,
)
from stepwise.tasks.secrets import secret_delete, secret_list, secret_set
from stepwise.tasks.webhooks import webhook_receive, webhook_secret_create, webhook_secret_list, webhook_secret_revoke

router = Router(tags=["tasks"])
webhooks_router = Router(tags=["webhooks"])


class QueueOut(Schema):
    name: str
    concurrency_limit: int | None
    total_limit: int | None
    rate_limit: str | None = Field(None, description="starts per period, e.g. '10/s' or '1000/h'")
    paused: bool
    executing: int
    queued: int


class QueueLimitIn(Schema):
    """Limits to set; a field left out keeps its value, null removes the limit."""

    concurrency_limit: int | None = Field(None, ge=1, le=10_000, description="runs at a time per concurrency key")
    total_limit: int | None = Field(None, ge=1, le=10_000, description="runs at a time in the queue, across keys")


class QueueRateIn(Schema):
    rate_limit: str | None = Field(..., max_length=40, description="starts per period ('10/s', '1000/1h'); null: none")


@router.get("/queues", response=list[QueueOut], tags=["queues"], auth=READ)
def list_queues(request: HttpRequest):
    """List queues with their limits and executing/queued counts in this environment."""
    return queue_list(environment=request.auth.environment)


@router.post("/queues/{path:name}/pause", response=QueueOut, tags=["queues"])
def pause_queue(request: HttpRequest, name: str):
    """Pause a queue: no new run starts until it is resumed."""
    env = request.auth.environment
    queue_pause(environment=env, name=name)
    api_audit(request, "queue.pause", target=name)
    return queue_get(environment=env, name=name)


@router.post("/queues/{path:name}/resume", response=QueueOut, tags=["queues"])
def resume_queue(request: HttpRequest, name: str):
    """Resume a paused queue."""
    env = request.auth.environment
    queue_resume(environment=env, name=name)
    api_audit(request, "queue.resume", target=name)
    return queue_get(environment=env, name=name)


@router.put("/queues/{path:name}/limit", response=QueueOut, tags=["queues"])
def set_queue_limit(request: HttpRequest, name: str, body: QueueLimitIn):
    """Set (or with null remove) a queue's concurrency limit per key and its total; they hold from the next claim."""
    env = request.auth.environment
    given = body.model_dump(include=body.model_fields_set)
    queue_limit_set(environment=env, name=name, limit=given.get("concurrency_limit", UNCHANGED),
                    total=given.get("total_limit", UNCHANGED))
    api_audit(request, "queue.limit", target=name, data=given)
    return queue_get(environment=env, name=name)


@router.put("/queues/{path:name}/rate", response=QueueOut, tags=["queues"])
def set_queue_rate(request: HttpRequest, name: str, body: QueueRateIn):
    """Set (or with null remove) a queue's rate limit: at most N starts per period, evenly spaced, across workers."""
    env = request.auth.environment
    queue_rate_set(environment=env, name=name, rate=body.rate_limit)
    api_audit(request, "queue.rate", target=name, data={"rate_limit": body.rate_limit})
    return queue_get(environment=env, name=name)


class EnvironmentStateOut(Schema):
    environment: str
    paused: bool
    paused_at: datetime | None
    queues_paused_before: list[str] = Field(..., description="queues that stay paused when the environment resumes")


@router.get("/environment", response=EnvironmentStateOut, tags=["queues"], auth=READ)
def get_environment(request: HttpRequest):
    """Say whether this environment is paused (no run of it starts) and since when."""
    return environment_state(environment=request.auth.environment)


@router.post("/environment/pause", response=EnvironmentStateOut, tags=["queues"])
def pause_environment(request: HttpRequest):
    """Pause this whole environment: every queue, and queues made while it is paused; executing runs finish."""
    state = environment_pause(environment=request.auth.environment)
    api_audit(request, "environment.pause", target=state.environment,
              data={"queues_paused_before": state.queues_paused_before})
    return state


@router.post("/environment/resume", response=EnvironmentStateOut, tags=["queues"])
def resume_environment(request: HttpRequest):
    """Resume this environment: its queues go back to how they were when it was paused."""
    state = environment_resume(environment=request.auth.environment)
    api_audit(request, "environment.resume", target=state.environment)
    return state


class ScheduleIn(Schema):
    task_id: str = Field(..., min_length=1, max_length=128)
    cron: str = Field(..., min_length=1, max_length=128)
    timezone: str = Field("UTC", min_length=1, max_length=64)
    dedup_key: str = Field(..., min_length=1, max_length=255)
    payload: dict[str, Any] = Field(default_factory=dict)
    active: bool = True


class ScheduleUpdateIn(Schema):
    task_id: str | None = Field(None, min_length=1, max_length=128)
    cron: str | None = Field(None, min_length=1, max_length=128)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    payload: dict[str, Any] | None = None
    active: bool | None = None


class ScheduleOut(ModelSchema):
    environment: str

    @staticmethod
    def resolve_environment(obj) -> str:
        return obj.environment_id
    next_runs: list[datetime]

    class Meta:
        model = Schedule
        fields = ["id", "task_id", "cron", "timezone", "dedup_key", "payload", "active", "declared",
                  "next_run_at", "last_run_at", "created_at", "updated_at"]

    @staticmethod
    def resolve_next_runs(obj: Schedule) -> list[datetime]:
        return schedule_next_runs(obj, count=5)

    @staticmethod
    def resolve_payload(obj: Schedule, context: dict[str, Any]) -> Any:
        # Each tick's run starts with this payload: hidden from a viewer where the runs' payloads are.
        hidden = payloads_hidden(context["request"].auth.holder, obj.environment_id)
        return RunDisplay(hidden=hidden).value(obj.payload)


@router.get("/schedules", response=list[ScheduleOut], tags=["schedules"], auth=READ)
def list_schedules(request: HttpRequest):
    """List this environment's schedules with their next five run times."""
    return schedule_list(environment=request.auth.environment)


@router.post("/schedules", response={201: ScheduleOut, 200: ScheduleOut}, tags=["schedules"])
def create_schedule(request: HttpRequest, body: ScheduleIn):
    """Create a schedule; the same dedup key updates the existing one (200)."""
    schedule, created = schedule_upsert(environment=request.auth.environment, **body.model_dump())
    api_audit(request, "schedule.create" if created else "schedule.update", target=schedule.id,
              data={"dedup_key": schedule.dedup_key, "task_id": schedule.task_id, "cron": schedule.cron})
    return Status(201 if created else 200, schedule)


@router.get("/schedules/{schedule_id}", response=ScheduleOut, tags=["schedules"], auth=READ)
def get_schedule(request: HttpRequest, schedule_id: int):
    """Return one schedule with its next five run times."""
    return schedule_get(environment=request.auth.environment, schedule_id=schedule_id)


@router.patch("/schedules/{schedule_id}", response=ScheduleOut, tags=["schedules"])
def update_schedule(request: HttpRequest, schedule_id: int, body: ScheduleUpdateIn):
    """Change a schedule's cron, time zone, task, payload or active flag."""
    changes = body.model_dump(exclude_unset=True)
    schedule = schedule_update(environment=request.auth.environment, schedule_id=schedule_id, **changes)
    api_audit(request, "schedule.update", target=schedule.id, data={"changed": sorted(changes)})
    return schedule


@router.delete("/schedules/{schedule_id}", response={204: None}, tags=["schedules"])
def delete_schedule(request: HttpRequest, schedule_id: int):
    """Delete a schedule."""
    schedule_delete(environment=request.auth.environment, schedule_id=schedule_id)
    api_audit(request, "schedule.delete", target=schedule_id)
    return Status(204, None)


class SecretIn(Schema):
    value: str = Field(..., min_length=1, max_length=65536)


class SecretOut(Schema):
    """A saved secret: its value is always masked."""

    name: str
    environment: str
    value: str
    updated_at: datetime


@router.get("/secrets", response=list[SecretOut], tags=["secrets"])
def list_secrets(request: HttpRequest):
    """List this environment's secrets, masked."""
    return secret_list(environment=request.auth.environment)


@router.put("/secrets/{name}", response=SecretOut, tags=["secrets"])
def set_secret(request: HttpRequest, name: str, body: SecretIn):
    """Create or replace a secret; the answer is already masked."""
    secret = secret_set(environment=request.auth.environment, name=name, value=body.value)
    # Never the value: the entry says that it changed, not what to.
    api_audit(request, "secret.set", target=name)
    return secret


@router.delete("/secrets/{name}", response={204: None}, tags=["secrets"])
def delete_secret(request: HttpRequest, name: str):
    """Delete a secret."""
    secret_delete(environment=request.auth.environment, name=name)
    api_audit(request, "secret.delete", target=name)
    return Status(204, None)


class ApiKeyIn(Schema):
    name: str = Field(..., min_length=1, max_length=128)
    scopes: list[Capability] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES), min_length=1,
        description="What the key may do: read, trigger, operate, admin (default read and trigger); "
        "at most the scopes of the caller",
    )


class ApiKeyOut(ModelSchema):
    environment: str

    @staticmethod
    def resolve_environment(obj) -> str:
        return obj.environment_id

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedOut(ApiKeyOut):
    """The new key: ``secret`` is shown in this answer only."""

    secret: str


@router.get("/api-keys", response=list[ApiKeyOut], tags=["api-keys"])
def list_api_keys(request: HttpRequest):
    """List this environment's API keys (prefixes only)."""
    return api_key_list(environment=request.auth.environment)


@router.post("/api-keys", response={201: ApiKeyCreatedOut}, tags=["api-keys"])
def create_api_key(request: HttpRequest, body: ApiKeyIn):
    """Create an API key for this environment; its secret is shown once."""
    created = api_key_create(environment=request.auth.environment, name=body.name, scopes=body.scopes,
                             granted_by=request.auth.holder)
    api_audit(request, "api_key.create", target=f"{created.key.id} {created.key.prefix}…",
              data={"name": created.key.name, "scopes": created.key.scopes})
    created.key.secret = created.secret  # shown in this answer, never stored
    return Status(201, created.key)


@router.post("/api-keys/{key_id}/revoke", response=ApiKeyOut, tags=["api-keys"])
def revoke_api_key(request: HttpRequest, key_id: int):
    """Revoke an API key of this environment."""
    key = api_key_revoke(environment=request.auth.environment, key_id=key_id)
    api_audit(request, "api_key.revoke", target=f"{key.id} {key.prefix}…", data={"name": key.name})
    return key


class WebhookSecretIn(Schema):
    name: str = Field("default", min_length=1, max_length=128)


class WebhookSecretOut(ModelSchema):
    environment: str

    @staticmethod
    def resolve_environment(obj) -> str:
        return obj.environment_id

    class Meta:
        model = WebhookSecret
        fields = ["id", "name", "created_at", "revoked_at"]


class WebhookSecretCreatedOut(WebhookSecretOut):
    secret: str


@router.get("/webhook-secrets", response=list[WebhookSecretOut], tags=["webhooks"])
def list_webhook_secrets(request: HttpRequest):
    """List this environment's webhook signing secrets (never their values)."""
    return webhook_secret_list(environment=request.auth.environment)


@router.post("/webhook-secrets", response={201: WebhookSecretCreatedOut}, tags=["webhooks"])
def create_webhook_secret(request: HttpRequest, body: WebhookSecretIn):
    """Create a signing secret; older ones stay valid until revoked (rotation). Shown once."""
    created = webhook_secret_create(environment=request.auth.environment, name=body.name)
    api_audit(request, "webhook_secret.create", target=created.row.id, data={"name": created.row.name})
    created.row.secret = created.secret  # shown in this answer, never stored
    return Status(201, created.row)


@router.post("/webhook-secrets/{secret_id}/revoke", response={204: None}, tags=["webhooks"])
def revoke_webhook_secret(request: HttpRequest, secret_id: int):
    """Stop accepting signatures made with a secret."""
    webhook_secret_revoke(environment=request.auth.environment, secret_id=secret_id)
    api_audit(request, "webhook_secret.revoke", target=secret_id)
    return Status(204, None)


class MemberIn(Schema):
    role: Role


class MemberOut(Schema):
    username: str
    environment: str
    role: Role


@router.get("/members", response=list[MemberOut], tags=["members"])
def list_members(request: HttpRequest):
    """List who has which role in this environment (superusers, admins everywhere, are not listed)."""
    return role_list(environment=request.auth.environment)


@router.put("/members/{username}", response=MemberOut, tags=["members"])
def set_member(request: HttpRequest, username: str, body: MemberIn):
    """Give a user a role in this environment, replacing the one they had here."""
    grant = role_grant(username=username, role=body.role, environment=request.auth.environment)
    api_audit(request, "role.grant", target=grant.username, data={"role": grant.role.value})
    return grant


@router.delete("/members/{username}", response={204: None}, tags=["members"])
def remove_member(request: HttpRequest, username: str):
    """Take away a user's role in this environment."""
    had = role_revoke(username=username, environment=request.auth.environment)
    if had is not None:
        api_audit(request, "role.revoke", target=had.username, data={"role": had.role.value})
    return Status(204, None)


class AuditEntryOut(ModelSchema):
    class Meta:
        model = AuditEntry
        fields = ["id", "at", "environment", "actor", "user_id", "api_key_id", "via", "action", "target", "data"]


class AuditPageOut(Schema):
    items: list[AuditEntryOut]
    next_cursor: int | None


class AuditQuery(Schema):
    cursor: int | None = None
    limit: int = Field(100, ge=1, le=500)


@router.get("/audit", response=AuditPageOut, tags=["audit"])
def list_audit(request: HttpRequest, query: Query[AuditQuery]):
    """List this environment's audit entries newest first (admins); pass ``next_cursor`` back as ``cursor``."""
    rows = audit_list(environment=request.auth.environment, before=query.cursor, limit=query.limit + 1)
    items = rows[: query.limit]
    return {"items": items, "next_cursor": items[-1].id if len(rows) > query.limit else None}


@webhooks_router.post("/{task_id}", auth=None, response={201: TriggeredOut}, openapi_extra={
    "requestBody": {"content": {"application/json": {"schema": {}}}, "required": True},
})
def webhook(request: HttpRequest, task_id: str):
    """Trigger a task from a signed delivery: headers Stepwise-Timestamp, Stepwise-Delivery (a unique id;
    replays refused) and Stepwise-Signature (v1=hex of HMAC-SHA256 over "timestamp.delivery.body")."""
    run = webhook_receive(
        task_id=task_id,
        body=request.body,
        timestamp=request.headers.get("Stepwise-Timestamp"),
        signature=request.headers.get("Stepwise-Signature"),
        delivery_id=request.headers.get("Stepwise-Delivery"),
    )
    return Status(201, TriggeredOut(id=run.id, task_id=run.task_id, status=run.status, created=True))
