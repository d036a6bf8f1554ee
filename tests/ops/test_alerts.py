"""Alerts: failing runs and backed-up queues reach a real SMTP server and a real HTTP receiver, deduplicated."""
from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from stepwise.runs import alerts
from stepwise.runs.alerts import alert_deliveries_send, alerts_evaluate
from stepwise.runs.models import Run
from stepwise.runs.services import run_cancel
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.alerts import alert_rule_create
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.models import AlertDelivery, AlertRule, AuditEntry
from stepwise.webhooks import webhook_sign
from tests.api.conftest import ApiClient
from tests.factories import run_build
from tests.ops.receivers import HttpReceiver, SmtpServer
from tests.processes import free_port


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                                        "OPTIONS": {"host": "127.0.0.1", "port": server.port}}}
        yield server


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


def at(seconds: float):
    """Return a moment ``seconds`` from now."""
    return timezone.now() + timedelta(seconds=seconds)


class Clock:
    """The scheduler's clock in these tests: runs end at ``now``, passes look a little later."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def failed_runs(clock: Clock, count: int = 1, status: str = "FAILED") -> list[Run]:
    runs = [run_build(status=status) for _ in range(count)]
    Run.objects.filter(id__in=[r.id for r in runs]).update(finished_at=clock.now)
    return runs


def deliver(clock: Clock | None = None) -> int:
    """Look at the rules, then send what is due, as the scheduler's pass and its sender do."""
    moment = (clock.now if clock else timezone.now()) + timedelta(seconds=10)
    alerts_evaluate(moment)
    return alert_deliveries_send(moment)


def test_a_failed_run_is_mailed_and_posted_signed_then_later_failures_come_as_one_summary(api, smtp, receiver):
    created = api.post("/api/alerts", {"name": "failures", "conditions": ["run.failed", "run.crashed"],
                                       "tasks": ["test-*"], "emails": ["oncall@example.com"],
                                       "webhook_url": receiver.url, "dedup_seconds": 60})
    assert created.status_code == 201, created.json()
    secret = created.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    clock = Clock()
    [failed] = failed_runs(clock)
    failed_runs(clock, status="COMPLETED")

    assert deliver(clock) == 2
    [mail] = smtp.messages
    assert mail["To"] == "oncall@example.com"
    assert "[Stepwise dev] test-noop: 1 run failed" in mail["Subject"]
    assert failed.id in mail.get_payload()
    [post] = receiver.requests
    headers = {k.lower(): v for k, v in post.headers.items()}
    expected = webhook_sign(secret, headers["stepwise-timestamp"], headers["stepwise-delivery"], post.body)
    assert headers["stepwise-signature"] == f"v1={expected}"
    body = post.json()
    assert body["type"] == "run.failed" and body["runs"][0]["id"] == failed.id
    assert body["delivery_id"] == headers["stepwise-delivery"] and body["environment"] == "dev"

    # A cron failing every minute: the next failures are counted, not sent, inside the window...
    clock.tick(20)
    latest = failed_runs(clock, 5)
    assert deliver(clock) == 0
    assert len(smtp.messages) == 1 and len(receiver.requests) == 1
    # ...and go out as one summary once the window has passed since the last alert.
    clock.tick(60)
    assert deliver(clock) == 2
    summary = smtp.messages[1]
    assert "test-noop: 5 more runs failed since the last alert" in summary["Subject"]
    assert latest[-1].id in summary.get_payload()
    assert receiver.requests[1].json()["count"] == 5
    assert deliver(clock) == 0

    # A quiet window closes the incident: the next failure is news again, sent at once.
    clock.tick(200)
    assert deliver(clock) == 0
    clock.tick(10)
    failed_runs(clock)
    assert deliver(clock) == 2
    assert "1 run failed" in smtp.messages[2]["Subject"]


def test_a_rule_watches_only_its_tasks_statuses_and_environment(api, smtp):
    alert_rule_create(environment="dev", name="crashes only", conditions=["run.crashed"], tasks=["billing-*"],
                      emails=["a@example.com"])
    alert_rule_create(environment="prod", name="prod failures", conditions=["run.failed"],
                      emails=["b@example.com"])
    failed_runs(Clock())  # dev, test-noop: neither rule
    assert deliver() == 0
    assert smtp.messages == []


def test_a_receiver_that_is_down_for_a_while_gets_the_alert_once_it_is_back(api, settings):
    port = free_port()
    rule = alert_rule_create(environment="dev", name="hook", conditions=["run.failed"],
                             webhook_url=f"http://127.0.0.1:{port}/alerts")
    failed_runs(Clock())
    assert deliver() == 0  # nobody listens on the port
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "pending" and delivery.tries == 1 and "Connect" in delivery.last_error
    assert delivery.next_try_at > at(10)
    assert alert_deliveries_send(at(10)) == 0 and AlertDelivery.objects.get().tries == 1  # not due yet

    with HttpReceiver(port=port) as receiver:
        receiver.status = 503  # up, but failing
        assert alert_deliveries_send(at(3600)) == 0
        assert "503" in AlertDelivery.objects.get().last_error
        receiver.status = 200
        assert alert_deliveries_send(at(7200)) == 1
        assert alert_deliveries_send(at(10800)) == 0
    [post] = receiver.requests
    delivered = AlertDelivery.objects.get()
    assert delivered.status == "sent" and delivered.tries == 3
    assert post.headers["Stepwise-Delivery"] == delivered.delivery_id  # the same id on every try
    assert rule.webhook_secret is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "10.1.2.3", "192.168.0.7",
                                  "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "100.64.0.1"])
def test_a_webhook_to_a_private_address_is_refused_unless_allowed(api, settings, host):
    settings.STEPWISE_ALERT_PRIVATE_WEBHOOKS = False
    refused = api.post("/api/alerts", {"name": "x", "conditions": ["run.failed"], "webhook_url": f"http://{host}/h"})
    assert refused.status_code == 400, refused.content
    assert "private, loopback or link-local" in refused.json()["detail"]
    assert "STEPWISE_ALERT_PRIVATE_WEBHOOKS=1" in refused.json()["detail"]
    assert not AlertRule.objects.exists()
    assert api.post("/api/alerts", {"name": "x", "conditions": ["run.failed"],
                                    "webhook_url": "https://93.184.215.14/h"}).status_code == 201

    settings.STEPWISE_ALERT_PRIVATE_WEBHOOKS = True
    assert api.post("/api/alerts", {"name": "y", "conditions": ["run.failed"],
                                    "webhook_url": f"http://{host}/h"}).status_code == 201


def test_a_saved_webhook_whose_host_is_private_now_is_not_posted_to(api, settings, receiver):
    alert_rule_create(environment="dev", name="hook", conditions=["run.failed"], webhook_url=receiver.url)
    settings.STEPWISE_ALERT_PRIVATE_WEBHOOKS = False  # e.g. a name that pointed elsewhere when it was saved
    failed_runs(Clock())
    assert deliver() == 0
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "pending" and "PrivateAddress" in delivery.last_error
    assert receiver.requests == []


def test_a_notification_nobody_takes_for_a_day_is_marked_failed(api, settings):
    settings.STEPWISE_ALERT_GIVE_UP_SECONDS = 0
    alert_rule_create(environment="dev", name="hook", conditions=["run.failed"],
                      webhook_url=f"http://127.0.0.1:{free_port()}/alerts")
    failed_runs(Clock())
    deliver()
    assert AlertDelivery.objects.get().status == "failed"
    assert alert_deliveries_send(at(86400)) == 0


def test_a_backed_up_queue_alerts_once_while_it_stays_and_says_when_it_recovers(api, smtp):
    alert_rule_create(environment="dev", name="backlog", conditions=["queue.backlog", "queue.age"],
                      queues=["task/test-*"], backlog_threshold=3, age_threshold_seconds=600,
                      emails=["ops@example.com"], dedup_seconds=300)
    runs = [run_trigger(task_id="test-noop", payload={}, options=TriggerOptions())[0] for _ in range(3)]
    clock = Clock()
    assert deliver(clock) == 1
    assert "queue task/test-noop: 3 queued runs (threshold 3)" in smtp.messages[0]["Subject"]
    clock.tick(20)
    assert deliver(clock) == 0  # still backed up: no second mail inside the window
    clock.tick(300)
    assert deliver(clock) == 1  # a reminder once the window passed
    assert "(still)" in smtp.messages[1]["Subject"]
    for run in runs[1:]:
        run_cancel(run_id=run.id, reason="test")
    clock.tick(10)
    assert deliver(clock) == 1
    assert "recovered" in smtp.messages[2]["Subject"]
    # One run left, but it has waited past the age threshold.
    clock.tick(600)
    assert deliver(clock) == 1
    assert "the oldest queued run has waited" in smtp.messages[3]["Subject"]


def test_alert_rules_are_checked_and_for_admins_of_their_environment_only(api, prod_api):
    refused = api.post("/api/alerts", {"name": "x", "conditions": ["run.failed"]})
    assert refused.status_code == 400 and "at least one e-mail address or a webhook_url" in refused.json()["detail"]
    bad = api.post("/api/alerts", {"name": "x", "conditions": ["run.exploded"], "emails": ["a@example.com"]})
    assert bad.status_code == 400 and "run.failed" in bad.json()["detail"]
    assert api.post("/api/alerts", {"name": "x", "conditions": ["queue.backlog"],
                                    "emails": ["a@example.com"]}).status_code == 400
    assert api.post("/api/alerts", {"name": "x", "conditions": ["run.failed"],
                                    "emails": ["not-an-address"]}).status_code == 400
    assert api.post("/api/alerts", {"name": "x", "conditions": ["run.failed"], "emails": ["a@example.com"],
                                    "webhook_url": "ftp://example.com"}).status_code == 400
    assert not AlertRule.objects.exists()

    created = api.post("/api/alerts", {"name": "x", "conditions": ["run.failed"], "webhook_url": "https://example.com/h"})
    rule_id = created.json()["id"]
    listed = api.get("/api/alerts").json()
    assert listed[0]["webhook_signed"] is True and "webhook_secret" not in listed[0]
    assert prod_api.get(f"/api/alerts/{rule_id}").status_code == 404
    operator = ApiClient(api_key_create(environment="dev", name="op", scopes=["read", "trigger", "operate"]).secret)
    assert operator.get("/api/alerts").status_code == 403
    assert operator.post("/api/alerts", {"name": "y", "conditions": ["run.failed"],
                                         "emails": ["a@example.com"]}).status_code == 403

    rotated = api.patch(f"/api/alerts/{rule_id}", {"rotate_secret": True, "dedup_seconds": 600})
    assert rotated.status_code == 200 and rotated.json()["webhook_secret"].startswith("whsec_")
    assert rotated.json()["dedup_seconds"] == 600
    assert api.patch(f"/api/alerts/{rule_id}", {"dedup_seconds": 5}).status_code == 400
    assert api.delete(f"/api/alerts/{rule_id}").status_code == 204
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["alert.create", "alert.update", "alert.delete"]


def test_an_smtp_server_that_says_nothing_fails_the_delivery_after_the_send_timeout(api, settings, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, then never greets
        # A project's own MAILERS without a timeout: the alert sender sets one.
        settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                                        "OPTIONS": {"host": "127.0.0.1", "port": silent.getsockname()[1]}}}
        monkeypatch.setattr(alerts, "SEND_TIMEOUT", 0.5)
        rule = api.post("/api/alerts", {"name": "mail", "conditions": ["run.failed"],
                                        "emails": ["a@example.com"]}).json()
        assert api.post(f"/api/alerts/{rule['id']}/test").json() == {"queued": 1}
        started = time.monotonic()
        assert alert_deliveries_send() == 0
        assert time.monotonic() - started < 5
    [delivery] = AlertDelivery.objects.all()
    assert delivery.status == "pending" and "timed out" in delivery.last_error


def test_the_test_button_sends_to_every_channel(api, smtp, receiver):
    created = api.post("/api/alerts", {"name": "both", "conditions": ["run.failed"], "emails": ["a@example.com"],
                                       "webhook_url": receiver.url}).json()
    assert api.post(f"/api/alerts/{created['id']}/test").json() == {"queued": 2}
    assert alert_deliveries_send() == 2
    assert "test notification" in smtp.messages[0]["Subject"]
    assert receiver.requests[0].json()["type"] == "alert.test"
    statuses = [d["status"] for d in api.get("/api/alerts/deliveries").json()]
    assert statuses == ["sent", "sent"]


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_mails_a_run_that_failed_on_a_real_worker(processes):
    from stepwise.tasks.services import environments_ensure

    environments_ensure()
    with SmtpServer() as smtp:
        processes.worker(concurrency=2)
        processes.scheduler(interval=0.2, EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                            EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port),
                            STEPWISE_ALERT_INTERVAL_SECONDS="0.5")
        alert_rule_create(environment="dev", name="failures", conditions=["run.failed"],
                          emails=["oncall@example.com"])
        run, _ = run_trigger(task_id="test-always-fails", payload={}, options=TriggerOptions())
        deadline = time.monotonic() + 60
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.2)
        assert smtp.messages, "no alert mail within 60 s"
        assert run.id in smtp.messages[0].get_payload()
        assert "test-always-fails: 1 run failed" in smtp.messages[0]["Subject"]
