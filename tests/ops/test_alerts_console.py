"""The console's Alerts page: admins create, test and delete rules; others may not see it."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from stepwise.tasks.alerts import alert_rule_create
from stepwise.tasks.models import AlertDelivery, AlertRule, AuditEntry
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import csrf_post
from tests.roles import grant


def test_an_admin_creates_a_rule_and_sees_its_signing_secret_once(signed_in):
    environments_ensure()
    response = csrf_post(signed_in, "/alerts/", {
        "env": "prod", "name": "billing", "conditions": ["run.failed", "run.timed_out"], "tasks": "billing-*, refund",
        "emails": "a@example.com, b@example.com", "webhook_url": "https://hooks.example.com/x", "dedup_seconds": "900",
    })
    assert response.status_code == 201
    rule = AlertRule.objects.get()
    assert (rule.environment_id, rule.tasks, rule.emails) == ("prod", ["billing-*", "refund"],
                                                              ["a@example.com", "b@example.com"])
    secret = response.context["created"].webhook_secret
    assert secret.encode() in response.content
    page = signed_in.get("/alerts/?env=prod")
    assert b"billing" in page.content and secret.encode() not in page.content
    assert AuditEntry.objects.filter(action="alert.create", environment="prod").exists()


def test_a_rule_without_a_channel_is_refused_with_the_reason_and_nothing_stored(signed_in):
    environments_ensure()
    response = csrf_post(signed_in, "/alerts/", {"env": "dev", "name": "x", "conditions": ["run.failed"],
                                                 "dedup_seconds": "3600"})
    assert response.status_code == 400
    assert b"at least one e-mail address or a webhook_url" in response.content
    assert not AlertRule.objects.exists()


def test_test_and_delete_buttons_act_on_the_rule(signed_in):
    environments_ensure()
    rule = alert_rule_create(environment="dev", name="x", conditions=["run.failed"], emails=["a@example.com"]).rule
    assert csrf_post(signed_in, f"/alerts/{rule.id}/test/", {"env": "dev"}).status_code == 302
    assert AlertDelivery.objects.filter(rule=rule, body__type="alert.test").count() == 1
    assert b"test notification of alert rule" in signed_in.get("/alerts/?env=dev").content
    assert csrf_post(signed_in, f"/alerts/{rule.id}/delete/", {"env": "prod"}).status_code == 302
    assert AlertRule.objects.filter(id=rule.id).exists()  # not a rule of prod
    csrf_post(signed_in, f"/alerts/{rule.id}/delete/", {"env": "dev"})
    assert not AlertRule.objects.exists()


def test_an_operator_may_not_see_or_change_alerts(db):
    environments_ensure()
    user = User.objects.create_user("otto", password="pw-long-enough-123")
    grant(user, "dev", "operator")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/alerts/?env=dev").status_code == 403
    assert b'href="/alerts/"' not in client.get("/waitpoints/").content
    rule = alert_rule_create(environment="dev", name="x", conditions=["run.failed"], emails=["a@example.com"]).rule
    assert csrf_post(client, f"/alerts/{rule.id}/delete/", {"env": "dev"}).status_code == 403
    assert AlertRule.objects.filter(id=rule.id).exists()
