"""The audit log: every change through the console, the API or the CLI, for admins to read, never rewritten."""
from __future__ import annotations

import io
import sys

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.test import Client

from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.models import AuditEntry, AuditLogAppendOnly
from stepwise.tasks.registry import task_get
from stepwise.tasks.services import task_version_ensure
from tests.api.conftest import ApiClient
from tests.commands import run_command
from tests.console.conftest import csrf_post
from tests.roles import grant

EVERY_SCOPE = ["read", "trigger", "operate", "admin"]


@pytest.fixture
def prod_admin_key(environments) -> ApiClient:
    task_version_ensure(task_get("test-noop"))  # its queue, in every environment
    return ApiClient(api_key_create(environment="prod", name="deployer", scopes=EVERY_SCOPE).secret)


def test_a_change_through_the_api_is_recorded_with_the_key_that_made_it(prod_admin_key):
    prod_admin_key.put("/api/secrets/STRIPE_KEY", {"value": "sk_live_very_secret"})
    prod_admin_key.post("/api/queues/task/test-noop/pause")

    entries = prod_admin_key.get("/api/audit").json()["items"]

    assert [(e["action"], e["target"], e["via"]) for e in entries] == [
        ("queue.pause", "task/test-noop", "api"), ("secret.set", "STRIPE_KEY", "api")]
    assert entries[0]["actor"].startswith("api key deployer (sk_prod_")
    assert entries[0]["api_key_id"] is not None and entries[0]["environment"] == "prod"
    assert "sk_live_very_secret" not in str(list(AuditEntry.objects.values()))


def test_console_and_cli_changes_are_recorded_and_admins_of_the_environment_read_them(prod_admin_key, monkeypatch):
    ada = User.objects.create_user("ada", password="pw-long-enough-123")
    grant(ada, "prod", "admin")
    console = Client(enforce_csrf_checks=True)
    console.force_login(ada)
    csrf_post(console, "/queues/task/test-noop/pause/", {"env": "prod"})
    monkeypatch.setattr(sys, "stdin", io.StringIO("postgres://db\n"))
    run_command("secrets", "set", "DATABASE_URL", "--env", "prod")

    page = console.get("/audit/?env=prod").content.decode()

    assert "queue.pause" in page and "secret.set" in page and "DATABASE_URL" in page
    rows = list(AuditEntry.objects.order_by("id").values_list("via", "actor", "action"))
    assert rows[0] == ("console", "ada", "queue.pause")
    assert rows[1][0] == "cli" and rows[1][1].startswith("cli:") and rows[1][2] == "secret.set"
    assert console.get("/audit/?env=dev").status_code == 403


def test_only_admins_read_the_audit_log(prod_admin_key):
    prod_admin_key.post("/api/queues/task/test-noop/pause")
    operator_key = ApiClient(api_key_create(environment="prod", name="ops", scopes=["read", "operate"]).secret)
    dev_admin_key = ApiClient(api_key_create(environment="dev", name="dev", scopes=EVERY_SCOPE).secret)

    assert operator_key.get("/api/audit").status_code == 403
    assert dev_admin_key.get("/api/audit").json()["items"] == []


def test_entries_cannot_be_changed_or_deleted_through_the_app_or_in_sql(prod_admin_key):
    prod_admin_key.post("/api/queues/task/test-noop/pause")
    entry = AuditEntry.objects.get()

    entry.actor = "someone else"
    with pytest.raises(AuditLogAppendOnly):
        entry.save()
    with pytest.raises(AuditLogAppendOnly):
        entry.delete()
    with pytest.raises(AuditLogAppendOnly):
        AuditEntry.objects.filter(id=entry.id).update(actor="someone else")
    with pytest.raises(AuditLogAppendOnly):
        AuditEntry.objects.all().delete()
    for statement in ("UPDATE stepwise_tasks_auditentry SET actor = 'x'", "DELETE FROM stepwise_tasks_auditentry"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEntry.objects.get().actor.startswith("api key deployer")
