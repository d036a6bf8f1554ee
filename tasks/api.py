"""REST endpoints of tasks: queues, schedules, secrets, API keys, webhook secrets and webhook triggers."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, ModelSchema, Router, Schema

from runs.api import TriggeredOut
from tasks.apikeys import api_key_create, api_key_list, api_key_revoke
from tasks.models import ApiKey, Schedule, WebhookSecret
from tasks.queues import queue_get, queue_limit_set, queue_list, queue_pause, queue_resume
from tasks.schedules import (
    schedule_delete,
    schedule_get,
    schedule_list,
    schedule_next_runs,
    schedule_update,
    schedule_upsert,
)
from tasks.secrets import secret_delete, secret_list, secret_set
from tasks.webhooks import webhook_receive, webhook_secret_create, webhook_secret_list, webhook_secret_revoke

router = Router(tags=["tasks"])
webhooks_router = Router(tags=["webhooks"])


class QueueOut(Schema):
    name: str
    concurrency_limit: int | None
    paused: bool
    executing: int
    queued: int


class QueueLimitIn(Schema):
    concurrency_limit: int | None = Field(..., ge=1, le=10_000)


@router.get("/queues", response=list[QueueOut], tags=["queues"])
def list_queues(request: HttpRequest):
    """List queues with their limits and executing/queued counts in this environment."""
    return queue_list(environment=request.auth.environment)


@router.post("/queues/{path:name}/pause", response=QueueOut, tags=["queues"])
def pause_queue(request: HttpRequest, name: str):
    """Pause a queue: no new run starts until it is resumed."""
    queue_pause(name=name)
    return queue_get(name=name)


@router.post("/queues/{path:name}/resume", response=QueueOut, tags=["queues"])
def resume_queue(request: HttpRequest, name: str):
    """Resume a paused queue."""
    queue_resume(name=name)
    return queue_get(name=name)


@router.put("/queues/{path:name}/limit", response=QueueOut, tags=["queues"])
def set_queue_limit(request: HttpRequest, name: str, body: QueueLimitIn):
    """Set (or with null remove) a queue's concurrency limit; it holds from the next claim."""
    queue_limit_set(name=name, limit=body.concurrency_limit)
    return queue_get(name=name)


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


@router.get("/schedules", response=list[ScheduleOut], tags=["schedules"])
def list_schedules(request: HttpRequest):
    """List this environment's schedules with their next five run times."""
    return schedule_list(environment=request.auth.environment)


@router.post("/schedules", response={201: ScheduleOut, 200: ScheduleOut}, tags=["schedules"])
def create_schedule(request: HttpRequest, body: ScheduleIn):
    """Create a schedule; the same dedup key updates the existing one (200)."""
    schedule, created = schedule_upsert(environment=request.auth.environment, **body.model_dump())
    return (201 if created else 200), schedule


@router.get("/schedules/{schedule_id}", response=ScheduleOut, tags=["schedules"])
def get_schedule(request: HttpRequest, schedule_id: int):
    """Return one schedule with its next five run times."""
    return schedule_get(environment=request.auth.environment, schedule_id=schedule_id)


@router.patch("/schedules/{schedule_id}", response=ScheduleOut, tags=["schedules"])
def update_schedule(request: HttpRequest, schedule_id: int, body: ScheduleUpdateIn):
    """Change a schedule's cron, time zone, task, payload or active flag."""
    return schedule_update(
        environment=request.auth.environment, schedule_id=schedule_id, **body.model_dump(exclude_unset=True)
    )


@router.delete("/schedules/{schedule_id}", response={204: None}, tags=["schedules"])
def delete_schedule(request: HttpRequest, schedule_id: int):
    """Delete a schedule."""
    schedule_delete(environment=request.auth.environment, schedule_id=schedule_id)
    return 204, None


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
    return secret_set(environment=request.auth.environment, name=name, value=body.value)


@router.delete("/secrets/{name}", response={204: None}, tags=["secrets"])
def delete_secret(request: HttpRequest, name: str):
    """Delete a secret."""
    secret_delete(environment=request.auth.environment, name=name)
    return 204, None


class ApiKeyIn(Schema):
    name: str = Field(..., min_length=1, max_length=128)


class ApiKeyOut(ModelSchema):
    environment: str

    @staticmethod
    def resolve_environment(obj) -> str:
        return obj.environment_id

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


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
    created = api_key_create(environment=request.auth.environment, name=body.name)
    created.key.secret = created.secret  # shown in this answer, never stored
    return 201, created.key


@router.post("/api-keys/{key_id}/revoke", response=ApiKeyOut, tags=["api-keys"])
def revoke_api_key(request: HttpRequest, key_id: int):
    """Revoke an API key of this environment."""
    return api_key_revoke(environment=request.auth.environment, key_id=key_id)


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
    created.row.secret = created.secret  # shown in this answer, never stored
    return 201, created.row


@router.post("/webhook-secrets/{secret_id}/revoke", response={204: None}, tags=["webhooks"])
def revoke_webhook_secret(request: HttpRequest, secret_id: int):
    """Stop accepting signatures made with a secret."""
    webhook_secret_revoke(environment=request.auth.environment, secret_id=secret_id)
    return 204, None


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
    return 201, TriggeredOut(id=run.id, task_id=run.task_id, status=run.status, created=True)
