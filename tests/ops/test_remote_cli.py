"""The CLI against a server: trigger, runs and waitpoints through the REST API with --server and --api-key."""
from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from stepwise.runs.models import Run, Waitpoint
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.commands import run_command
from tests.processes import free_port
from tests.waiting import wait_for


@pytest.fixture
def server(console_url) -> tuple[str, str]:
    environments_ensure()
    return console_url, api_key_create(environment="prod", name="cli", scopes=["read", "trigger", "operate"]).secret


def test_trigger_follow_list_show_cancel_and_replay_go_through_the_server(server, monkeypatch):
    url, key = server
    out = run_command("trigger", "test-noop", '{"n": 7}', "--tag", "cli", "--follow", "--timeout", "60",
                      "--server", url, "--api-key", key)
    run_id = out.split()[0]
    assert "QUEUED" in out.splitlines()[0] and f"{run_id} COMPLETED" in out
    run = Run.objects.get(id=run_id)
    assert run.environment_id == "prod" and run.payload == {"n": 7} and run.tags == ["cli"]

    # The environment variables stand in for the options.
    monkeypatch.setenv("STEPWISE_URL", url)
    monkeypatch.setenv("STEPWISE_API_KEY", key)
    listed = run_command("runs", "list", "--tag", "cli")
    assert run_id in listed and "COMPLETED" in listed
    shown = run_command("runs", "show", run_id, "--server", url, "--api-key", key)
    assert "environment prod" in shown and '"n": 7' in shown

    replayed = run_command("runs", "replay", run_id, "--payload", '{"n": 8}', "--server", url, "--api-key", key)
    new_id = replayed.split()[0]
    assert Run.objects.get(id=new_id).replayed_from_id == run_id
    delayed = run_command("trigger", "test-noop", "{}", "--delay", "1h", "--server", url, "--api-key", key).split()[0]
    assert run_command("runs", "cancel", delayed, "--server", url, "--api-key", key).strip() == f"{delayed} CANCELED"
    with pytest.raises(CommandError, match="answered 409"):
        run_command("runs", "cancel", delayed, "--server", url, "--api-key", key)
    wait_for(lambda: Run.objects.get(id=new_id).is_finished, message="the replay to finish")


def test_waitpoints_are_listed_and_approved_through_the_server(server):
    url, key = server
    run_id = run_command("trigger", "test-wait-token", "{}", "--server", url, "--api-key", key).split()[0]
    wait_for(lambda: Waitpoint.objects.filter(run_id=run_id, status="PENDING").exists(), message="the token wait")
    waitpoint = Waitpoint.objects.get(run_id=run_id)
    assert waitpoint.id in run_command("waitpoints", "list", "--server", url, "--api-key", key)
    approved = run_command("waitpoints", "approve", waitpoint.id, '{"note": "ok"}', "--server", url, "--api-key", key)
    assert f"{waitpoint.id} COMPLETED" in approved and run_id in approved
    wait_for(lambda: Run.objects.get(id=run_id).status == "COMPLETED", message="the run to resume")
    assert Run.objects.get(id=run_id).output == {"ok": True, "output": {"approved": True, "note": "ok"}}


def test_errors_name_the_problem(server):
    url, key = server
    with pytest.raises(CommandError, match=r"answered 401 \(the API key was refused"):
        run_command("runs", "list", "--server", url, "--api-key", "sk_prod_not-a-key")
    with pytest.raises(CommandError, match=f"cannot reach http://127.0.0.1:{free_port()}|cannot reach"):
        run_command("runs", "list", "--server", f"http://127.0.0.1:{free_port()}", "--api-key", key)
    with pytest.raises(CommandError, match="needs an API key"):
        run_command("runs", "list", "--server", url)
    with pytest.raises(CommandError, match="the API key decides the environment"):
        run_command("trigger", "test-noop", "{}", "--environment", "dev", "--server", url, "--api-key", key)
    with pytest.raises(CommandError, match="answered 404.*unknown-task|answered 404"):
        run_command("trigger", "unknown-task", "{}", "--server", url, "--api-key", key)
    with pytest.raises(CommandError, match="payload"):
        run_command("trigger", "test-noop", "{not json", "--server", url, "--api-key", key)
    reader = api_key_create(environment="prod", name="reader", scopes=["read"]).secret
    with pytest.raises(CommandError, match=r"answered 403 \(the API key may not do this\).*'trigger' scope"):
        run_command("trigger", "test-noop", "{}", "--server", url, "--api-key", reader)
    assert not Run.objects.exists()
