"""The CLI as a user runs it: trigger --follow, runs list and show."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError

from stepwise.runs.models import Run
from tests.commands import run_command

ABORT = "stepwise.runs.engine.errors.AbortRun"  # how an AbortRun of a task shows in a run's error


def test_trigger_follow_prints_progress_and_succeeds(live):
    out = run_command("trigger", "test-third-step-flaky", "{}", "--follow", "--timeout", "60")
    run = Run.objects.get()
    assert out.splitlines()[0] == f"{run.id} QUEUED"
    assert "completed third" in out and "EXECUTING -> RETRYING  tests.engine_tasks.Flaky" in out
    last = out.splitlines()[-1]
    assert last.startswith(f"{run.id} COMPLETED output=")
    run.refresh_from_db()
    assert json.loads(last.split("output=", 1)[1]) == run.output == {"results": ["first-done", "second-done",
                                                                                 "third-done"]}


def test_trigger_follow_of_a_failing_run_exits_with_an_error(live):
    with pytest.raises(CommandError, match=f"ended FAILED: {ABORT}: the order has no items$"):
        run_command("trigger", "test-abort", "{}", "--follow", "--timeout", "60")


def test_trigger_with_invalid_json_names_the_problem(transactional_db):
    with pytest.raises(CommandError, match="payload is not valid JSON"):
        run_command("trigger", "test-noop", "{oops")
    with pytest.raises(CommandError, match="unknown task 'nope'"):
        run_command("trigger", "nope", "{}")
    assert not Run.objects.exists()


def test_runs_list_and_show(live):
    run_command("trigger", "test-third-step-flaky", "{}", "--follow", "--timeout", "60")
    run = Run.objects.get()
    listing = run_command("runs", "list")
    assert run.id in listing and "COMPLETED" in listing
    shown = run_command("runs", "show", run.id, "--events")
    assert "#1 FAILED" in shown and "#3 COMPLETED" in shown
    assert "third" in shown and "attempt 3" in shown and "run.created" in shown
    with pytest.raises(CommandError, match="no run with id 'run_nope'"):
        run_command("runs", "show", "run_nope")


def test_trigger_follow_and_runs_show_print_the_cause_chain_with_secrets_masked(live):
    chain = ("ConnectionError: partner refused key ••••  <- caused by ValueError: bad total"
             "  <- caused by KeyError: 'total'")
    with pytest.raises(CommandError) as failed:
        run_command("trigger", "test-chained-failure", "{}", "--follow", "--timeout", "60")
    run = Run.objects.get()
    assert str(failed.value) == (
        f"run {run.id} ended FAILED: {ABORT}: could not charge order A-17  <- caused by {chain}"
    )

    shown = run_command("runs", "show", run.id).splitlines()
    assert f"error     {ABORT}: could not charge order A-17  <- caused by {chain}" in shown
    attempts = [line for line in shown if line.startswith("  #")]
    assert attempts[0].endswith(f"tests.engine_tasks.Flaky: charge failed, trying again  <- caused by {chain}")
    assert attempts[1].endswith(f"AbortRun: could not charge order A-17  <- caused by {chain}")
    step = next(line for line in shown if "charge" in line and "FAILED" in line and "attempt 2" in line)
    assert step.endswith(f"<- caused by {chain}")
    assert "canary-" not in "\n".join(shown)


def test_trigger_takes_a_retry_override_and_starting_metadata(transactional_db):
    out = run_command("trigger", "test-always-fails", "{}", "--retry", '{"max_attempts": 1}',
                      "--metadata", '{"source": "cli"}')

    run = Run.objects.get(id=out.split()[0])
    assert run.retry["max_attempts"] == 1 and run.metadata == {"source": "cli"}


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--retry", "{max", "--retry is not valid JSON"),
    ("--retry", '{"max_attempts": 0}', "retry: max_attempts must be from 1 to 1000"),
    ("--metadata", "[1]", "metadata must be a JSON object"),
])
def test_trigger_refuses_a_wrong_retry_or_metadata_and_stores_nothing(transactional_db, flag, value, message):
    with pytest.raises(CommandError, match=message):
        run_command("trigger", "test-always-fails", "{}", flag, value)
    assert not Run.objects.exists()
