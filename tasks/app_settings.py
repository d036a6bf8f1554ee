"""Defaults of Stepwise's settings, so the apps work in any Django project that sets none of them.

A project overrides any of them in its own settings (this repository's project reads them from the
environment: ``console/settings.py``); ``app_settings_apply()`` fills in only what is missing.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

DEFAULTS: dict[str, Any] = {
    # Modules whose @task functions register at start, beside each installed app's `stepwise_tasks` module.
    "STEPWISE_TASK_MODULES": [],
    # The project's Celery app, as ``celery -A`` takes it ("proj.celery:app"); "": Celery's default app, the
    # one the project's package imports (runs/celery_app.py).
    "STEPWISE_CELERY_APP": "",
    "STEPWISE_DEPLOY_LABEL": "",
    "STEPWISE_ENVIRONMENT": "dev",
    "STEPWISE_LEASE_SECONDS": 30.0,
    "STEPWISE_HEARTBEAT_SECONDS": 10.0,
    "STEPWISE_MAX_CRASHES": 5,
    "STEPWISE_MAX_PAYLOAD_BYTES": 512 * 1024,
    "STEPWISE_MAX_METADATA_BYTES": 64 * 1024,
    "STEPWISE_METADATA_FLUSH_SECONDS": 1.0,
    "STEPWISE_RETENTION": {},
    "STEPWISE_PRUNE_INTERVAL_SECONDS": 600.0,
    "STEPWISE_IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
    "STEPWISE_REDISPATCH_SECONDS": 15.0,
    # Runs a hint message carries at most, when hints queue up together (1: one message per run).
    "STEPWISE_HINT_GROUP": 32,
    "STEPWISE_TRACING": True,
    "STEPWISE_DURABILITY": "strict",
    "STEPWISE_PREPARED_STATEMENTS": True,
    "STEPWISE_TIMERS_LISTEN": True,
    "STEPWISE_VERSION_POLICY": "latest",
    "STEPWISE_VERSION_GRACE_SECONDS": 600.0,
    "STEPWISE_SWEEP_INTERVAL_SECONDS": 1.0,
    "STEPWISE_SCHEDULER_STALE_SECONDS": 60.0,
    "STEPWISE_METRICS_TOKEN": "",
    "STEPWISE_WEBHOOK_TOLERANCE_SECONDS": 300,
    "STEPWISE_CONTENT_SECURITY_POLICY": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "STEPWISE_FAILED_ATTEMPTS_LIMIT": 10,
    "STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS": 300,
    "STEPWISE_API_DOCS_PUBLIC": False,
    # Required: Fernet keys for secrets at rest (a system check names it when it is missing).
    "STEPWISE_SECRET_KEYS": [],
    # Redis of the broker and channel layer, for the broker backlog metric and health checks ("": none).
    "REDIS_URL": "",
    # Realtime (README: Realtime for any client): where callback URLs point, SSE heartbeat.
    "STEPWISE_PUBLIC_URL": "http://localhost:8000",
    "STEPWISE_SSE_HEARTBEAT_SECONDS": 15.0,
    # Alerts (README: Alerts): scheduler pass, delivery retries, the console link in notifications.
    "STEPWISE_ALERT_INTERVAL_SECONDS": 5.0,
    "STEPWISE_ALERT_MAX_RETRY_SECONDS": 600.0,
    "STEPWISE_ALERT_GIVE_UP_SECONDS": 24 * 3600.0,
    "STEPWISE_CONSOLE_URL": "",
    # Alert webhooks to loopback, private and link-local addresses (tasks/outbound.py): refused.
    "STEPWISE_ALERT_PRIVATE_WEBHOOKS": False,
    # Environments whose run payloads, outputs and step results viewers see as a placeholder (README:
    # Who may do what): none, so a viewer reads everything a run holds unless the project says otherwise.
    "STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS": [],
    # Fault injection for the chaos command only: off.
    "STEPWISE_STORE_FAULT_RATE": 0.0,
}


def app_settings_apply() -> None:
    """Give every Stepwise setting the project did not set its default."""
    for name, value in DEFAULTS.items():
        if not hasattr(settings, name):
            setattr(settings, name, value)


def secret_keys_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to start without a key for secrets at rest: none is ever derived or made up."""
    if settings.STEPWISE_SECRET_KEYS:
        return []
    return [checks.Error(
        "STEPWISE_SECRET_KEYS is not set: Stepwise encrypts secrets at rest with it.",
        hint="Set it to a list of Fernet keys, e.g. the output of: "
             "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
        id="stepwise.E001",
    )]
