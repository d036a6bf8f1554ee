"""manage.py replay: a server's run fetched over the REST API and executed here, its recorded steps replayed."""
from __future__ import annotations

import pytest
from django.core.management import CommandError

from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.commands import run_command
from tests.engine_tasks import executions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(processes) -> tuple[str, str]:
    """A console and API served by uvicorn on the test database, and a dev API key."""
    environments_ensure()
    return processes.console(), api_key_create(environment="dev", name="replay").secret


def test_a_completed_run_replays_its_recorded_steps_without_running_them(server):
    url, key = server
    run, _ = run_trigger(task_id="test-sleepy-steps", payload={"steps": 3, "sleep": 0})
    assert run_attempt(run.id).result == "completed"
    ran_on_server = len(executions(run.id))

    out = run_command("replay", run.id, "--from", url, "--api-key", key)

    assert f"{run.id} (test-sleepy-steps, COMPLETED on {url}) runs here with 3 recorded step(s) replayed" in out
    assert 'COMPLETED output={"sum": 3}' in out
    assert len(executions(run.id)) == ran_on_server, "no step body ran again"


def test_fresh_runs_every_step_here_with_its_logs_and_an_edited_payload(server):
    url, key = server
    run, _ = run_trigger(task_id="test-chatty-steps", payload={"steps": 2, "sleep": 0})
    assert run_attempt(run.id).result == "completed"

    out = run_command("replay", run.id, "--from", url, "--api-key", key, "--fresh", "--payload",
                      '{"steps": 3, "sleep": 0}')

    assert "runs here with every step again" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("  ✓")] == ["s0", "s1", "s2"]
    assert "  · INFO    step 2 of attempt 1" in out
    assert 'COMPLETED output={"sum": 3}' in out


def test_a_failing_run_fails_here_too_with_its_error(server):
    url, key = server
    run, _ = run_trigger(task_id="test-abort", payload={})
    assert run_attempt(run.id).result == "failed"

    with pytest.raises(CommandError, match="FAILED: stepwise.runs.engine.errors.AbortRun: the order has no items"):
        run_command("replay", run.id, "--from", url, "--api-key", key)


def test_wrong_input_is_named(server):
    url, key = server
    with pytest.raises(CommandError, match="answered 404: no run with id 'run_nope'"):
        run_command("replay", "run_nope", "--from", url, "--api-key", key)
    with pytest.raises(CommandError, match="answered 401"):
        run_command("replay", "run_nope", "--from", url, "--api-key", "sk_dev_wrong")
    with pytest.raises(CommandError, match="cannot reach http://127.0.0.1:9"):
        run_command("replay", "run_nope", "--from", "http://127.0.0.1:9", "--api-key", key)
    with pytest.raises(CommandError, match="give the server with --from URL"):
        run_command("replay", "run_nope")
