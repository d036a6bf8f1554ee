"""The admin CLI as a user runs it: apikeys, queues, schedules, and the --env check they share with secrets."""
from __future__ import annotations

import io
import sys

import pytest
from django.core.management import CommandError, call_command

from runs.services import TriggerOptions, run_trigger
from runs.states import RunStatus, run_transition
from tasks.apikeys import api_key_authenticate
from tasks.models import ApiKey, Queue, Secret
from tasks.services import environments_ensure


def run_command(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def envs(db):
    environments_ensure()


def test_secrets_with_an_unknown_environment_are_refused_before_the_value_is_read(envs, monkeypatch):
    stdin = io.StringIO("hunter2\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(CommandError, match="unknown environment 'nope' \\(known: dev, prod, staging\\)"):
        run_command("secrets", "set", "DB_PASSWORD", "--env", "nope")
    assert stdin.tell() == 0 and not Secret.objects.exists()
    with pytest.raises(CommandError, match="unknown environment 'nope'"):
        run_command("secrets", "list", "--env", "nope")


# apikeys


def test_apikeys_create_prints_the_secret_once_and_list_never_shows_it(envs):
    out = run_command("apikeys", "create", "ci deploys", "--env", "prod")
    key = ApiKey.objects.get()
    secret = out.splitlines()[1]
    assert secret.startswith("sk_prod_") and out.count(secret) == 1
    assert "Store this key now" in out and f"created API key {key.id} ci deploys in prod" in out
    listing = run_command("apikeys", "list", "--env", "prod")
    assert secret not in listing
    assert f"{key.prefix}…" in listing and "ci deploys" in listing and "never" in listing
    assert api_key_authenticate(secret) == key  # the printed secret is the working key
    key.refresh_from_db()
    listing = run_command("apikeys", "list", "--env", "prod")
    assert secret not in listing and "never" not in listing and f"{key.last_used_at:%Y-%m-%d %H:%M}" in listing
    assert "ci deploys" not in run_command("apikeys", "list")  # dev is another environment


def test_apikeys_revoke_refuses_the_key_and_list_shows_when(envs):
    run_command("apikeys", "create", "laptop")
    key = ApiKey.objects.get()
    out = run_command("apikeys", "revoke", str(key.id))
    assert f"revoked API key {key.id} laptop ({key.prefix}…) in dev" in out
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert f"{key.revoked_at:%Y-%m-%d %H:%M}" in run_command("apikeys", "list").splitlines()[1]


def test_apikeys_bad_input_names_the_problem_and_stores_nothing(envs):
    with pytest.raises(CommandError, match="unknown environment 'nope' \\(known: dev, prod, staging\\)"):
        run_command("apikeys", "create", "ci", "--env", "nope")
    with pytest.raises(CommandError, match="unknown environment 'nope'"):
        run_command("apikeys", "list", "--env", "nope")
    with pytest.raises(CommandError, match="a name of 1 to 128 characters"):
        run_command("apikeys", "create", "  ")
    with pytest.raises(CommandError, match="no API key 999 in environment 'dev'"):
        run_command("apikeys", "revoke", "999")
    assert not ApiKey.objects.exists()


def test_apikeys_revoke_of_another_environments_key_is_refused(envs):
    run_command("apikeys", "create", "prod-only", "--env", "prod")
    key = ApiKey.objects.get()
    with pytest.raises(CommandError, match=f"no API key {key.id} in environment 'dev'"):
        run_command("apikeys", "revoke", str(key.id))
    key.refresh_from_db()
    assert key.revoked_at is None


# queues


def test_queues_list_shows_limit_state_and_executing_and_queued_counts(envs):
    Queue.objects.create(name="cli-emails", concurrency_limit=3)
    runs = [run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(queue="cli-emails"))[0]
            for _ in range(3)]
    run_transition(run_id=runs[0].id, to=RunStatus.EXECUTING, expected_from=[RunStatus.QUEUED])
    lines = run_command("queues", "list").splitlines()
    assert lines[0].split() == ["QUEUE", "LIMIT", "STATE", "EXECUTING", "QUEUED"]
    row = next(line for line in lines if line.startswith("cli-emails "))
    assert row.split() == ["cli-emails", "limit", "3", "active", "1", "2"]


def test_queues_pause_resume_and_limit_change_the_queue(envs):
    Queue.objects.create(name="cli-reports")
    assert run_command("queues", "pause", "cli-reports").startswith("queue cli-reports paused")
    assert Queue.objects.get(name="cli-reports").paused
    assert "paused" in run_command("queues", "list")
    assert run_command("queues", "resume", "cli-reports") == "queue cli-reports resumed\n"
    assert not Queue.objects.get(name="cli-reports").paused
    assert run_command("queues", "limit", "cli-reports", "5") == "queue cli-reports is now limit 5\n"
    assert Queue.objects.get(name="cli-reports").concurrency_limit == 5
    assert run_command("queues", "limit", "cli-reports", "none") == "queue cli-reports is now unlimited\n"
    assert Queue.objects.get(name="cli-reports").concurrency_limit is None


@pytest.mark.parametrize(("value", "message"), [
    ("-2", "must be an integer from 1 to 10000"),
    ("0", "must be an integer from 1 to 10000"),
    ("2.5", "'2.5' is not a concurrency limit: give an integer from 1 to 10000, or 'none'"),
    ("lots", "'lots' is not a concurrency limit"),
])
def test_queues_limit_rejects_a_bad_number_and_keeps_the_old_limit(envs, value, message):
    Queue.objects.create(name="cli-limited", concurrency_limit=4)
    with pytest.raises(CommandError, match=message):
        run_command("queues", "limit", "cli-limited", value)
    assert Queue.objects.get(name="cli-limited").concurrency_limit == 4


def test_queues_unknown_queue_names_it(envs):
    for args in (("pause", "ghost"), ("resume", "ghost"), ("limit", "ghost", "2")):
        with pytest.raises(CommandError, match="no queue named 'ghost'"):
            run_command("queues", *args)
    assert not Queue.objects.filter(name="ghost").exists()

