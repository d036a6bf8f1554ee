"""The admin CLI as a user runs it: apikeys, queues, schedules, and the --env check they share with secrets."""
from __future__ import annotations

import io
import sys

import pytest
from django.core.management import CommandError, call_command

from tasks.apikeys import api_key_authenticate
from tasks.models import ApiKey, Secret
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

