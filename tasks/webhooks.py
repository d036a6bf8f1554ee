"""Signed webhook triggers: HMAC-SHA256 over "timestamp.delivery.body", rotation, replay protection."""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from stepwise.runs.engine.checkpoints import json_parse
from stepwise.runs.engine.errors import InvalidJson, StepwiseError
from stepwise.runs.models import Run
from stepwise.tasks.models import WebhookDelivery, WebhookSecret
from stepwise.tasks.secrets import secret_cipher, secret_value_decrypt
from stepwise.tasks.services import environment_exists
from stepwise.webhooks import webhook_sign

SIGNATURE_VERSION = "v1"


class WebhookRefused(StepwiseError):
    """A webhook delivery is unsigned, wrongly signed, stale, replayed or malformed; nothing was enqueued."""


class WebhookSecretNotFound(StepwiseError):
    """No webhook secret has this id in this environment."""


@dataclass(frozen=True)
class CreatedWebhookSecret:
    """A new signing secret: ``secret`` is shown this once."""

    row: WebhookSecret
    secret: str


def webhook_secret_create(*, environment: str, name: str = "default") -> CreatedWebhookSecret:
    """Create a signing secret for an environment; older ones stay valid until revoked."""
    if not environment_exists(environment):
        raise WebhookRefused(f"unknown environment '{environment}'")
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    row = WebhookSecret.objects.create(
        environment_id=environment, name=name[:128] or "default", ciphertext=secret_cipher().encrypt(secret.encode())
    )
    return CreatedWebhookSecret(row=row, secret=secret)


def webhook_secret_revoke(*, environment: str, secret_id: int) -> None:
    """Stop accepting signatures made with one secret."""
    if not WebhookSecret.objects.filter(environment_id=environment, id=secret_id).update(revoked_at=timezone.now()):
        raise WebhookSecretNotFound(f"no webhook secret {secret_id} in environment '{environment}'")


def webhook_secret_list(*, environment: str) -> QuerySet[WebhookSecret]:
    """Return the signing secrets of an environment (never their values)."""
    return WebhookSecret.objects.filter(environment_id=environment).order_by("-created_at")


__all__ = ["webhook_sign"]  # the one signing function, shared with senders (stepwise.webhooks)


def _signatures(header: str) -> list[str]:
    found = []
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        value = value.strip()
        # Only hex can match, and compare_digest refuses non-ASCII text: skip anything else.
        if version == SIGNATURE_VERSION and value and value.isascii() and value.isalnum():
            found.append(value)
    if not found:
        raise WebhookRefused("Stepwise-Signature must look like 'v1=<hex>[, v1=<hex>]'")
    return found


def _check_timestamp(timestamp: str) -> None:
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        raise WebhookRefused("Stepwise-Timestamp must be a Unix time in seconds") from None
    skew = abs(time.time() - sent)
    if skew > settings.STEPWISE_WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRefused(
            f"Stepwise-Timestamp is {int(skew)}s away from now; at most "
            f"{settings.STEPWISE_WEBHOOK_TOLERANCE_SECONDS}s is accepted"
        )


def _matching_environment(timestamp: str, delivery_id: str, body: bytes, signatures: list[str]) -> str:
    """Return the environment whose live secret produced one of the signatures."""
    matched = None
    for row in WebhookSecret.objects.filter(revoked_at__isnull=True):
        secret = secret_value_decrypt(row.ciphertext, label=f"webhook secret {row.id}")
        expected = webhook_sign(secret, timestamp, delivery_id, body)
        # Compare against every candidate, constant-time, without stopping early.
        for signature in signatures:
            if hmac.compare_digest(expected, signature):
                matched = row.environment_id
    if matched is None:
        raise WebhookRefused("no valid signature: Stepwise-Signature does not match any live webhook secret")
    return matched


def webhook_receive(
    *, task_id: str, body: bytes, timestamp: str | None, signature: str | None, delivery_id: str | None
) -> Run:
    """Verify a signed delivery and trigger the task with its JSON body; refuse anything doubtful."""
    from stepwise.runs.triggers import TriggerOptions, run_trigger

    # The delivery id is signed and required: the same body and timestamp sent again, without it or
    # with another one, no longer matches, and the same id is refused below.
    if not timestamp or not signature or not delivery_id:
        raise WebhookRefused("Stepwise-Timestamp, Stepwise-Delivery and Stepwise-Signature headers are required")
    if len(delivery_id) > 255 or "\x00" in delivery_id:
        raise WebhookRefused("Stepwise-Delivery must be 1 to 255 characters, without NUL")
    _check_timestamp(timestamp)
    environment = _matching_environment(timestamp, delivery_id, body, _signatures(signature))
    try:
        payload: Any = json_parse(body, what="the body")
    except InvalidJson as exc:
        raise WebhookRefused(str(exc)) from None
    with transaction.atomic():
        run, _ = run_trigger(task_id=task_id, payload=payload, options=TriggerOptions(
            environment=environment, tags=["webhook"], metadata={"delivery_id": delivery_id},
        ))
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(environment_id=environment, delivery_id=delivery_id, run_id=run.id)
        except IntegrityError:
            # Raising inside the outer atomic block rolls the run back too.
            raise WebhookRefused(f"delivery '{delivery_id}' was already received") from None
    return run
