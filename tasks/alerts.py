"""Alert rules of an environment: what fires them, where they go, how often (README: Alerts)."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.models import AlertDelivery, AlertRule
from stepwise.tasks.outbound import PrivateAddress, host_check_public
from stepwise.tasks.secrets import secret_cipher, secret_value_decrypt
from stepwise.tasks.services import environment_exists

# What a rule can watch: the runs of its tasks that end in one of these statuses, and its queues.
RUN_CONDITIONS = {"run.failed": "FAILED", "run.crashed": "CRASHED", "run.timed_out": "TIMED_OUT"}
QUEUE_CONDITIONS = ("queue.backlog", "queue.age")
CONDITIONS = (*RUN_CONDITIONS, *QUEUE_CONDITIONS)
PATTERN_RE = re.compile(r"^[A-Za-z0-9_.:/*?\[\]-]{1,128}$")
MAX_RECIPIENTS = 20


class InvalidAlertRule(StepwiseError):
    """An alert rule's fields are not acceptable; nothing was stored."""


class AlertRuleNotFound(StepwiseError):
    """No alert rule has this id in this environment."""


@dataclass(frozen=True)
class SavedAlertRule:
    """A rule as stored; ``webhook_secret`` holds the signing secret the one time it is made (else None)."""

    rule: AlertRule
    webhook_secret: str | None = None


def _strings(value: Any, what: str, check) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidAlertRule(f"{what} must be a list of strings")
    items = [v.strip() for v in value if v.strip()]
    if len(items) > MAX_RECIPIENTS:
        raise InvalidAlertRule(f"{what} may hold at most {MAX_RECIPIENTS} entries, got {len(items)}")
    for item in items:
        check(item)
    return list(dict.fromkeys(items))


def _email(address: str) -> None:
    try:
        validate_email(address)
    except ValidationError:
        raise InvalidAlertRule(f"'{address}' is not an e-mail address") from None


def _pattern(what: str):
    def check(pattern: str) -> None:
        if not PATTERN_RE.match(pattern):
            raise InvalidAlertRule(f"{what} pattern '{pattern}' may use letters, digits, - _ . : / and * ? [ ]")
    return check


def _webhook_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or len(url) > 500 or "\x00" in url:
        raise InvalidAlertRule(f"webhook_url must be an http(s) URL of at most 500 characters, not '{url[:100]}'")
    try:
        host_check_public(parsed.hostname, resolve=True)
    except PrivateAddress as exc:
        raise InvalidAlertRule(str(exc)) from None
    return url


def _threshold(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise InvalidAlertRule(f"{what} must be a whole number from 1 to 10000000, or null")
    return value


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    """Return the rule's fields checked and normalised, or raise InvalidAlertRule naming the problem."""
    name = fields.get("name")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 128 or "\x00" in name:
        raise InvalidAlertRule("name must be 1 to 128 characters")
    conditions = fields.get("conditions") or []
    if not isinstance(conditions, list | tuple) or not conditions or not all(c in CONDITIONS for c in conditions):
        raise InvalidAlertRule(f"conditions must list one or more of: {', '.join(CONDITIONS)}")
    out = {
        "name": name.strip(),
        "conditions": list(dict.fromkeys(conditions)),
        "tasks": _strings(fields.get("tasks"), "tasks", _pattern("task")),
        "queues": _strings(fields.get("queues"), "queues", _pattern("queue")),
        "emails": _strings(fields.get("emails"), "emails", _email),
        "webhook_url": _webhook_url(fields.get("webhook_url") or ""),
        "backlog_threshold": _threshold(fields.get("backlog_threshold"), "backlog_threshold"),
        "age_threshold_seconds": _threshold(fields.get("age_threshold_seconds"), "age_threshold_seconds"),
        "active": bool(fields.get("active", True)),
    }
    dedup = fields.get("dedup_seconds", 3600)
    if isinstance(dedup, bool) or not isinstance(dedup, int) or not 60 <= dedup <= 7 * 86400:
        raise InvalidAlertRule("dedup_seconds must be a whole number of seconds from 60 to 604800 (a week)")
    out["dedup_seconds"] = dedup
    if not out["emails"] and not out["webhook_url"]:
        raise InvalidAlertRule("an alert rule needs at least one e-mail address or a webhook_url")
    if "queue.backlog" in out["conditions"] and out["backlog_threshold"] is None:
        raise InvalidAlertRule("queue.backlog needs backlog_threshold (how many queued runs are too many)")
    if "queue.age" in out["conditions"] and out["age_threshold_seconds"] is None:
        raise InvalidAlertRule("queue.age needs age_threshold_seconds (how long a run may wait in its queue)")
    return out


def _new_secret() -> tuple[str, bytes]:
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    return secret, secret_cipher().encrypt(secret.encode())


def alert_rule_create(*, environment: str, **fields: Any) -> SavedAlertRule:
    """Create an alert rule; a webhook gets a signing secret, returned this once."""
    if not environment_exists(environment):
        raise InvalidAlertRule(f"unknown environment '{environment}'")
    values = _validated(fields)
    secret, ciphertext = _new_secret() if values["webhook_url"] else (None, None)
    try:
        with transaction.atomic():
            rule = AlertRule.objects.create(environment_id=environment, webhook_secret=ciphertext,
                                            checked_until=timezone.now(), **values)
    except IntegrityError:
        raise InvalidAlertRule(f"an alert rule named '{values['name']}' exists in '{environment}'") from None
    return SavedAlertRule(rule=rule, webhook_secret=secret)


def alert_rule_get(*, environment: str, rule_id: int) -> AlertRule:
    """Return one rule of an environment, or raise AlertRuleNotFound."""
    rule = AlertRule.objects.filter(environment_id=environment, id=rule_id).first()
    if rule is None:
        raise AlertRuleNotFound(f"no alert rule {rule_id} in environment '{environment}'")
    return rule


def alert_rule_update(*, environment: str, rule_id: int, rotate_secret: bool = False, **changes: Any) -> SavedAlertRule:
    """Change some fields of a rule (the others stay); a webhook added or ``rotate_secret`` makes a new secret."""
    rule = alert_rule_get(environment=environment, rule_id=rule_id)
    current = {f: getattr(rule, f) for f in ("name", "conditions", "tasks", "queues", "emails", "webhook_url",
                                              "backlog_threshold", "age_threshold_seconds", "active",
                                              "dedup_seconds")}
    values = _validated({**current, **changes})
    secret = None
    if values["webhook_url"] and (rotate_secret or rule.webhook_secret is None):
        secret, rule.webhook_secret = _new_secret()
    if not values["webhook_url"]:
        rule.webhook_secret = None
    if not rule.active or not set(rule.conditions) & set(RUN_CONDITIONS):
        rule.checked_until = timezone.now()  # turned on or given run conditions: from now, not over history
    for field, value in values.items():
        setattr(rule, field, value)
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise InvalidAlertRule(f"an alert rule named '{values['name']}' exists in '{environment}'") from None
    return SavedAlertRule(rule=rule, webhook_secret=secret)


def alert_rule_delete(*, environment: str, rule_id: int) -> None:
    """Delete a rule with its incidents and undelivered notifications."""
    alert_rule_get(environment=environment, rule_id=rule_id).delete()


def alert_rule_list(*, environment: str) -> list[AlertRule]:
    """Return an environment's rules by name."""
    return list(AlertRule.objects.filter(environment_id=environment).order_by("name"))


def alert_webhook_secret(rule: AlertRule) -> str | None:
    """Return the secret a rule's webhook deliveries are signed with, decrypted."""
    if rule.webhook_secret is None:
        return None
    return secret_value_decrypt(rule.webhook_secret, label=f"alert rule {rule.id}")


def alert_delivery_list(*, environment: str, limit: int = 50) -> list[AlertDelivery]:
    """Return an environment's latest notifications, newest first, with their rule."""
    return list(AlertDelivery.objects.filter(rule__environment_id=environment).select_related("rule")
                .order_by("-id")[:limit])
