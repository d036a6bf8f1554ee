"""The admin CLI as a user runs it: apikeys, queues, schedules, and the --env check they share with secrets."""
from __future__ import annotations

import io
import sys

import pytest
from django.core.management import CommandError, call_command

from tasks.models import Secret
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

