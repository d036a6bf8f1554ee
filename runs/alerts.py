"""Alerts: runs that ended badly and backed-up queues become incidents, and incidents become notifications.

The scheduler looks at each active rule (one rule row locked at a time, SKIP LOCKED, so two
schedulers never both count the same runs) and stores the notifications it decides on as
``AlertDelivery`` rows in the same transaction. A sender thread of the scheduler then delivers
them, and keeps retrying a delivery while its receiver is down. Nothing of this runs in a
worker's attempt: a run that fails is only found here, after it was committed.

Deduplication, per rule and task (or queue): the first failure opens an incident and is sent at
once; later failures while it is open are counted, and at most one summary of them goes out per
``dedup_seconds``; an incident with no new failure for ``dedup_seconds`` closes, and the next
failure opens a new one. A queue incident is sent when the queue passes its threshold, again
every ``dedup_seconds`` while it stays there, and once more when it recovers.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.core.mail import EmailMessage, mailers
from django.core.mail.backends.base import BaseEmailBackend
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import Count, F, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.alerts import QUEUE_CONDITIONS, RUN_CONDITIONS, alert_webhook_secret
from stepwise.tasks.models import AlertDelivery, AlertIncident, AlertRule
from stepwise.tasks.outbound import host_check_public
from stepwise.webhooks import webhook_headers

logger = logging.getLogger(__name__)
# A run's finished_at is written just before its transaction commits: look only this far back from
# now, so a commit still in flight is not passed over.
COMMIT_LAG = timedelta(seconds=5)
RUNS_PER_PASS = 500
RUNS_LISTED = 10  # runs named in one notification; the count covers the rest
CLAIM = timedelta(seconds=60)  # a delivery being sent is not picked by another scheduler meanwhile
SEND_TIMEOUT = 10.0


def _subject_matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatchcase(name, p) for p in patterns)


def _notify(rule: AlertRule, body: dict[str, Any], now: datetime) -> int:
    """Store one notification per channel of the rule; the sender delivers them after commit."""
    body = {"environment": rule.environment_id, "rule": {"id": rule.id, "name": rule.name},
            "at": now.isoformat(), **body}
    channels = (["email"] if rule.emails else []) + (["webhook"] if rule.webhook_url else [])
    AlertDelivery.objects.bulk_create([
        AlertDelivery(rule=rule, channel=channel, delivery_id=f"alert_{uuid.uuid4().hex}", body=body,
                      next_try_at=now)
        for channel in channels
    ])
    return len(channels)


def _run_summary(row: dict[str, Any]) -> dict[str, Any]:
    error = row["error"] or {}
    return {"id": row["id"], "task": row["task_id"], "status": row["status"], "queue": row["queue"],
            "finished_at": row["finished_at"].isoformat(),
            "error": {"type": error.get("type", ""), "message": str(error.get("message", ""))[:500]}}


def _ended_badly(rule: AlertRule, now: datetime) -> int:
    """Count the rule's runs that ended badly since its last look into incidents; notify new incidents."""
    statuses = [RUN_CONDITIONS[c] for c in rule.conditions if c in RUN_CONDITIONS]
    horizon = now - COMMIT_LAG
    if not statuses or horizon <= rule.checked_until:
        return 0
    rows = list(
        Run.objects.filter(environment_id=rule.environment_id, status__in=statuses,
                           finished_at__gt=rule.checked_until, finished_at__lte=horizon)
        .order_by("finished_at", "id")
        .values("id", "task_id", "status", "error", "finished_at", "queue")[:RUNS_PER_PASS]
    )
    rule.checked_until = rows[-1]["finished_at"] if len(rows) == RUNS_PER_PASS else horizon
    rule.save(update_fields=["checked_until"])
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if _subject_matches(row["task_id"], rule.tasks):
            by_task.setdefault(row["task_id"], []).append(row)
    sent = 0
    for task_id, runs in by_task.items():
        subject = f"task:{task_id}"
        incident = (AlertIncident.objects.select_for_update()
                    .filter(rule=rule, subject=subject, resolved_at__isnull=True).first())
        if incident is not None:
            incident.count += len(runs)
            incident.unsent += len(runs)
            incident.last_seen_at = now
            incident.unsent_runs = (incident.unsent_runs + [_run_summary(r) for r in runs])[-RUNS_LISTED:]
            incident.save(update_fields=["count", "unsent", "last_seen_at", "unsent_runs"])
            continue
        incident = AlertIncident.objects.create(rule=rule, subject=subject, opened_at=now, last_seen_at=now,
                                                notified_at=now, count=len(runs))
        summaries = [_run_summary(r) for r in runs]
        sent += _notify(rule, _runs_body(task_id, summaries, incident, count=len(runs), first=True), now)
    return sent


def _runs_body(task_id: str, runs: list[dict[str, Any]], incident: AlertIncident, *, count: int,
               first: bool) -> dict[str, Any]:
    statuses = sorted({r["status"] for r in runs})
    label = "/".join(RunStatus(s).label.lower() for s in statuses)
    plural = "s" if count != 1 else ""
    summary = (f"{task_id}: {count} run{plural} {label}" if first
               else f"{task_id}: {count} more run{plural} {label} since the last alert")
    return {"type": "run." + statuses[0].lower(), "subject": f"task:{task_id}", "summary": summary, "count": count,
            "incident": {"id": incident.id, "opened_at": incident.opened_at.isoformat(), "total": incident.count},
            "runs": runs[-RUNS_LISTED:]}


def _follow_up(rule: AlertRule, now: datetime) -> int:
    """Send the summary of failures counted since an incident's last notification; close quiet incidents."""
    window = timedelta(seconds=rule.dedup_seconds)
    open_run_incidents = AlertIncident.objects.filter(rule=rule, subject__startswith="task:", resolved_at__isnull=True)
    sent = 0
    for incident in open_run_incidents.filter(unsent__gt=0, notified_at__lte=now - window):
        body = _runs_body(incident.subject.removeprefix("task:"), incident.unsent_runs, incident,
                          count=incident.unsent, first=False)
        AlertIncident.objects.filter(id=incident.id).update(unsent=0, unsent_runs=[], notified_at=now)
        sent += _notify(rule, body, now)
    open_run_incidents.filter(unsent=0, last_seen_at__lte=now - window).update(resolved_at=now)
    return sent


def _queue_levels(environment: str) -> dict[str, dict[str, Any]]:
    """Return each queue's queued runs and when the oldest of them became ready (its delay's end, or its trigger)."""
    rows = (Run.objects.filter(environment_id=environment, status=RunStatus.QUEUED).values("queue")
            .annotate(queued=Count("id"), oldest=Min(Coalesce("delay_until", "created_at"))))
    return {row["queue"]: row for row in rows}


def _backed_up(rule: AlertRule, now: datetime) -> int:
    """Open, remind of, and close the rule's queue incidents by the queues' backlog and age right now."""
    watched = [c for c in rule.conditions if c in QUEUE_CONDITIONS]
    if not watched:
        return 0
    window = timedelta(seconds=rule.dedup_seconds)
    firing: dict[str, dict[str, Any]] = {}
    for name, level in _queue_levels(rule.environment_id).items():
        if not _subject_matches(name, rule.queues):
            continue
        age = max(0.0, (now - level["oldest"]).total_seconds())
        reasons = []
        if "queue.backlog" in watched and level["queued"] >= rule.backlog_threshold:
            reasons.append(f"{level['queued']} queued runs (threshold {rule.backlog_threshold})")
        if "queue.age" in watched and age >= rule.age_threshold_seconds:
            reasons.append(f"the oldest queued run has waited {age:.0f}s (threshold {rule.age_threshold_seconds}s)")
        if reasons:
            firing[name] = {"name": name, "queued": level["queued"], "oldest_age_seconds": round(age, 1),
                            "reasons": reasons}
    sent = 0
    open_incidents = {i.subject: i for i in AlertIncident.objects.filter(
        rule=rule, subject__startswith="queue:", resolved_at__isnull=True)}
    for name, state in firing.items():
        subject = f"queue:{name}"
        incident = open_incidents.get(subject)
        kind = "queue.backlog" if any("queued runs" in r for r in state["reasons"]) else "queue.age"
        body = {"type": kind, "subject": subject, "queue": state, "count": state["queued"],
                "summary": f"queue {name}: " + "; ".join(state["reasons"])}
        if incident is None:
            incident = AlertIncident.objects.create(rule=rule, subject=subject, opened_at=now, last_seen_at=now,
                                                    notified_at=now)
            sent += _notify(rule, {**body, "incident": {"id": incident.id, "opened_at": now.isoformat()}}, now)
        elif incident.notified_at <= now - window:
            AlertIncident.objects.filter(id=incident.id).update(last_seen_at=now, notified_at=now, count=F("count") + 1)
            body["summary"] += " (still)"
            opened = incident.opened_at.isoformat()
            sent += _notify(rule, {**body, "incident": {"id": incident.id, "opened_at": opened}}, now)
        else:
            AlertIncident.objects.filter(id=incident.id).update(last_seen_at=now)
    for subject, incident in open_incidents.items():
        name = subject.removeprefix("queue:")
        if name in firing:
            continue
        AlertIncident.objects.filter(id=incident.id).update(resolved_at=now)
        sent += _notify(rule, {"type": "queue.recovered", "subject": subject, "count": 0,
                               "summary": f"queue {name} recovered: back under the rule's thresholds",
                               "incident": {"id": incident.id, "opened_at": incident.opened_at.isoformat()}}, now)
    return sent


def alerts_evaluate(now: datetime | None = None) -> int:
    """Look at every active rule once; return how many notifications were stored for sending."""
    now = now or timezone.now()
    stored = 0
    for rule_id in AlertRule.objects.filter(active=True).values_list("id", flat=True):
        try:
            with transaction.atomic():
                rule = (AlertRule.objects.select_for_update(skip_locked=True)
                        .filter(id=rule_id, active=True).first())
                if rule is None:
                    continue  # another scheduler is looking at it
                stored += _ended_badly(rule, now) + _follow_up(rule, now) + _backed_up(rule, now)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the scheduler waits it out
        except Exception:  # one rule's trouble must not stop the scheduler, nor the other rules
            logger.exception("alert rule %s could not be evaluated; it is tried again next pass", rule_id)
    return stored


def alert_test_send(rule: AlertRule) -> int:
    """Store a test notification of a rule on each of its channels."""
    now = timezone.now()
    return _notify(rule, {"type": "alert.test", "subject": "test", "count": 0,
                          "summary": f"test notification of alert rule '{rule.name}'"}, now)


# ---- delivery ----

def _email_text(body: dict[str, Any]) -> tuple[str, str]:
    lines = [body["summary"], "", f"Environment: {body['environment']}", f"Alert rule: {body['rule']['name']}"]
    if body.get("incident", {}).get("total"):
        lines.append(f"Failures since the incident opened ({body['incident']['opened_at']}): "
                     f"{body['incident']['total']}")
    base = settings.STEPWISE_CONSOLE_URL.rstrip("/")
    for run in body.get("runs", []):
        where = f"{base}/runs/{run['id']}/" if base else run["id"]
        lines.append(f"- {run['status']} {where}  {run['error']['type']}: {run['error']['message']}")
    if body.get("queue"):
        lines.append(f"Queue {body['queue']['name']}: {body['queue']['queued']} queued, oldest waiting "
                     f"{body['queue']['oldest_age_seconds']}s")
    lines += ["", "At most one alert per task or queue and rule is sent per "
              "deduplication window; the rest are counted into the next one."]
    return f"[Stepwise {body['environment']}] {body['summary']}"[:200], "\n".join(lines)


def _mailer() -> BaseEmailBackend:
    """Return a fresh connection of Django's default mailer, with a timeout if it is SMTP set up without one."""
    mailer = mailers.default
    # A project's own MAILERS may leave it out: a server that says nothing must not hold the scheduler.
    if getattr(mailer, "timeout", SEND_TIMEOUT) is None:
        mailer.timeout = SEND_TIMEOUT
    return mailer


def _send(delivery: AlertDelivery) -> None:
    """Deliver one notification now; raise with the reason when the receiver refuses or is away."""
    rule = delivery.rule
    if delivery.channel == "email":
        if not rule.emails:
            raise RuntimeError("the rule has no e-mail address any more")
        subject, text = _email_text(delivery.body)
        _mailer().send_messages([EmailMessage(subject, text, settings.DEFAULT_FROM_EMAIL, rule.emails)])
        return
    secret = alert_webhook_secret(rule)
    if not rule.webhook_url or secret is None:
        raise RuntimeError("the rule has no webhook any more")
    host_check_public(urlparse(rule.webhook_url).hostname or "", resolve=True)  # names may point elsewhere now
    content = json.dumps({"delivery_id": delivery.delivery_id, **delivery.body}, separators=(",", ":")).encode()
    headers = {**webhook_headers(secret, content, delivery_id=delivery.delivery_id),
               "Content-Type": "application/json", "User-Agent": "Stepwise-Alerts/1"}
    response = httpx.post(rule.webhook_url, content=content, headers=headers, timeout=SEND_TIMEOUT,
                          follow_redirects=False)
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"the receiver answered {response.status_code}")


def _retry_delay(tries: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** max(0, tries - 1), settings.STEPWISE_ALERT_MAX_RETRY_SECONDS))


def alert_deliveries_send(now: datetime | None = None, *, limit: int = 20) -> int:
    """Deliver due notifications; a failed one is tried again later (backing off) until it is a day old."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(AlertDelivery.objects.select_for_update(skip_locked=True).select_related("rule")
                   .filter(status="pending", next_try_at__lte=now).order_by("next_try_at", "id")[:limit])
        AlertDelivery.objects.filter(id__in=[d.id for d in due]).update(next_try_at=now + CLAIM, tries=F("tries") + 1)
    sent = 0
    for delivery in due:
        tries = delivery.tries + 1
        try:
            _send(delivery)
        except Exception as exc:  # any failure of the receiver or the way to it: try again later
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            given_up = now - delivery.created_at >= timedelta(seconds=settings.STEPWISE_ALERT_GIVE_UP_SECONDS)
            AlertDelivery.objects.filter(id=delivery.id).update(
                status="failed" if given_up else "pending", last_error=reason, next_try_at=now + _retry_delay(tries))
            logger.warning("alert %s (%s) not delivered, try %d%s: %s", delivery.delivery_id, delivery.channel, tries,
                           "; giving up" if given_up else "", reason)
            continue
        AlertDelivery.objects.filter(id=delivery.id).update(status="sent", sent_at=timezone.now(), last_error="")
        sent += 1
    return sent


def alert_sender_loop(*, stop: threading.Event, interval: float = 1.0) -> None:
    """Deliver due notifications every ``interval`` seconds until stopped; outages are waited out."""
    while not stop.is_set():
        try:
            close_old_connections()
            while alert_deliveries_send() and not stop.is_set():
                pass  # a full batch: there may be more due right now
        except DatabaseError as exc:
            logger.warning("alert sender: database unavailable (%s)", exc)
            connection.close()
        stop.wait(interval)
    connection.close()


class AlertPass:
    """Runs ``alerts_evaluate`` from the scheduler's passes at most every STEPWISE_ALERT_INTERVAL_SECONDS."""

    def __init__(self) -> None:
        self._last = float("-inf")

    def __call__(self, now: datetime) -> int:
        if time.monotonic() - self._last < settings.STEPWISE_ALERT_INTERVAL_SECONDS:
            return 0
        self._last = time.monotonic()
        return alerts_evaluate(now)
