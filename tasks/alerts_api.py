"""REST endpoints of alert rules and their notifications (admins of the environment)."""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Field, ModelSchema, Router, Schema, Status

from stepwise.console.api_auth import ADMIN, api_audit
from stepwise.runs.alerts import alert_test_send
from stepwise.tasks.alerts import (
    CONDITIONS,
    alert_delivery_list,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_get,
    alert_rule_list,
    alert_rule_update,
)
from stepwise.tasks.models import AlertDelivery, AlertRule

router = Router(tags=["alerts"])

CONDITIONS_HELP = f"one or more of: {', '.join(CONDITIONS)}"


class AlertRuleIn(Schema):
    """A rule: what fires it (``conditions``), which tasks or queues, and where it goes."""

    name: str = Field(..., min_length=1, max_length=128)
    conditions: list[str] = Field(..., min_length=1, description=CONDITIONS_HELP)
    tasks: list[str] = Field(default_factory=list, description='task ids or patterns ("billing-*"); empty: all')
    queues: list[str] = Field(default_factory=list, description="queue names or patterns; empty: all")
    backlog_threshold: int | None = Field(None, description="queue.backlog: this many queued runs or more")
    age_threshold_seconds: int | None = Field(None, description="queue.age: the oldest queued run waited this long")
    emails: list[str] = Field(default_factory=list)
    webhook_url: str = Field("", max_length=500, description="POSTed JSON, signed like inbound webhooks")
    dedup_seconds: int = Field(3600, description="at most one notification per task or queue in this window")
    active: bool = True


class AlertRulePatchIn(Schema):
    """The fields to change; ``rotate_secret`` makes a new webhook signing secret (shown once)."""

    name: str | None = Field(None, min_length=1, max_length=128)
    conditions: list[str] | None = Field(None, min_length=1, description=CONDITIONS_HELP)
    tasks: list[str] | None = None
    queues: list[str] | None = None
    backlog_threshold: int | None = None
    age_threshold_seconds: int | None = None
    emails: list[str] | None = None
    webhook_url: str | None = Field(None, max_length=500)
    dedup_seconds: int | None = None
    active: bool | None = None
    rotate_secret: bool = False


class AlertRuleOut(ModelSchema):
    environment: str
    webhook_signed: bool = Field(..., description="deliveries to the webhook carry a Stepwise-Signature")

    @staticmethod
    def resolve_environment(obj: AlertRule) -> str:
        return obj.environment_id

    @staticmethod
    def resolve_webhook_signed(obj: AlertRule) -> bool:
        return obj.webhook_secret is not None

    class Meta:
        model = AlertRule
        fields = ["id", "name", "conditions", "tasks", "queues", "backlog_threshold", "age_threshold_seconds",
                  "emails", "webhook_url", "dedup_seconds", "active", "created_at", "updated_at"]


class AlertRuleSavedOut(AlertRuleOut):
    """The rule; ``webhook_secret`` only when one was just made: keep it, it is not shown again."""

    webhook_secret: str | None = None

    @staticmethod
    def resolve_webhook_secret(obj: AlertRule) -> str | None:
        return getattr(obj, "new_webhook_secret", None)


class AlertDeliveryOut(ModelSchema):
    rule_id: int
    summary: str

    @staticmethod
    def resolve_summary(obj: AlertDelivery) -> str:
        return str(obj.body.get("summary", ""))

    class Meta:
        model = AlertDelivery
        fields = ["id", "channel", "delivery_id", "status", "tries", "next_try_at", "last_error", "created_at",
                  "sent_at", "body"]


class AlertTestOut(Schema):
    queued: int


def _saved(saved) -> AlertRule:
    saved.rule.new_webhook_secret = saved.webhook_secret  # shown in this answer, never stored in clear
    return saved.rule


@router.get("/alerts", response=list[AlertRuleOut], auth=ADMIN)
def list_alert_rules(request: HttpRequest):
    """List this environment's alert rules."""
    return alert_rule_list(environment=request.auth.environment)


@router.post("/alerts", response={201: AlertRuleSavedOut}, auth=ADMIN)
def create_alert_rule(request: HttpRequest, body: AlertRuleIn):
    """Create an alert rule; with a webhook the answer holds its signing secret, this once."""
    saved = alert_rule_create(environment=request.auth.environment, **body.model_dump())
    api_audit(request, "alert.create", target=saved.rule.id,
              data={"name": saved.rule.name, "conditions": saved.rule.conditions})
    return Status(201, _saved(saved))


@router.get("/alerts/deliveries", response=list[AlertDeliveryOut], auth=ADMIN)
def list_alert_deliveries(request: HttpRequest, limit: int = 50):
    """List this environment's latest notifications with their delivery state, newest first."""
    return alert_delivery_list(environment=request.auth.environment, limit=max(1, min(limit, 500)))


@router.get("/alerts/{rule_id}", response=AlertRuleOut, auth=ADMIN)
def get_alert_rule(request: HttpRequest, rule_id: int):
    """Return one alert rule."""
    return alert_rule_get(environment=request.auth.environment, rule_id=rule_id)


@router.patch("/alerts/{rule_id}", response=AlertRuleSavedOut, auth=ADMIN)
def update_alert_rule(request: HttpRequest, rule_id: int, body: AlertRulePatchIn):
    """Change some fields of a rule; the others stay as they are."""
    changes = body.model_dump(exclude_unset=True)
    saved = alert_rule_update(environment=request.auth.environment, rule_id=rule_id, **changes)
    api_audit(request, "alert.update", target=rule_id, data={"changed": sorted(changes)})
    return _saved(saved)


@router.delete("/alerts/{rule_id}", response={204: None}, auth=ADMIN)
def delete_alert_rule(request: HttpRequest, rule_id: int):
    """Delete a rule, its incidents and its undelivered notifications."""
    alert_rule_delete(environment=request.auth.environment, rule_id=rule_id)
    api_audit(request, "alert.delete", target=rule_id)
    return Status(204, None)


@router.post("/alerts/{rule_id}/test", response=AlertTestOut, auth=ADMIN)
def test_alert_rule(request: HttpRequest, rule_id: int):
    """Send a test notification to each of the rule's channels (within a second or two)."""
    rule = alert_rule_get(environment=request.auth.environment, rule_id=rule_id)
    queued = alert_test_send(rule)
    api_audit(request, "alert.test", target=rule_id)
    return AlertTestOut(queued=queued)

