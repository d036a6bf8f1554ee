"""Retention: finished runs and their details are deleted after their environment's retention, nothing else."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone

from stepwise.runs.models import Attempt, Run, RunEvent, Span, Step
from stepwise.runs.sweeper import sweep_once
from stepwise.tasks.models import AuditEntry
from stepwise.tasks.services import environments_ensure
from tests.commands import run_command
from tests.factories import run_build

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


class _Clock:
    """The clock run ids are made from, set in the past: a run made now gets an id of that day."""

    def __init__(self, days_ago: float) -> None:
        self.offset = days_ago * DAY

    def time(self) -> float:
        return time.time() - self.offset


def _run(monkeypatch, *, days_ago: float, finished_days_ago: float | None = None, status: str = "COMPLETED") -> Run:
    """A run created ``days_ago`` (its id says so too), finished ``finished_days_ago`` (default: the same)."""
    monkeypatch.setattr("stepwise.runs.ids.time", _Clock(days_ago))
    monkeypatch.setattr("stepwise.runs.ids._last", (0, 0))  # ids of one process only go forward: start this one anew
    run = run_build(steps=2, failed_attempts=1, status=status)
    monkeypatch.undo()
    created = timezone.now() - timedelta(days=days_ago)
    finished = timezone.now() - timedelta(days=finished_days_ago if finished_days_ago is not None else days_ago)
    Run.objects.filter(id=run.id).update(created_at=created,
                                         finished_at=finished if status in ("COMPLETED", "FAILED") else None)
    Span.objects.create(run=run, trace_id=run.trace_id, span_id="ab" * 8, name="work", kind="user",
                        started_at=created, ended_at=created)
    RunEvent.objects.create(run=run, seq=run.last_event_seq + 1, type="log", data={"message": "hello"})
    return run


def _exists(run: Run) -> bool:
    return Run.objects.filter(id=run.id).exists()


def test_prune_deletes_finished_runs_past_retention_with_everything_they_stored(monkeypatch, settings):
    settings.STEPWISE_RETENTION = {"*": {"runs_days": 30}}
    old = _run(monkeypatch, days_ago=40)
    old_but_active = _run(monkeypatch, days_ago=40, status="WAITING")
    old_but_finished_yesterday = _run(monkeypatch, days_ago=40, finished_days_ago=1)
    recent = _run(monkeypatch, days_ago=2)
    child = run_build()
    Run.objects.filter(id=child.id).update(parent_run_id=old.id)

    out = run_command("prune")

    assert "dev: finished runs kept 30 days, their spans and logs forever" in out
    assert "dev: deleted 1 runs" in out
    assert not _exists(old)
    for table in (Attempt, Step, RunEvent, Span):
        assert not table.objects.filter(run_id=old.id).exists(), table.__name__
    assert all(_exists(r) for r in (old_but_active, old_but_finished_yesterday, recent, child))
    assert Run.objects.get(id=child.id).parent_run_id is None
    entry = AuditEntry.objects.get(action="runs.prune", environment="dev")
    assert entry.actor.startswith("cli:") and entry.data["runs"] == 1


def test_details_go_first_the_run_and_its_steps_stay(monkeypatch, settings):
    settings.STEPWISE_RETENTION = {"dev": {"details_days": 7}}
    old = _run(monkeypatch, days_ago=10)
    recent = _run(monkeypatch, days_ago=3)

    run_command("prune", "--env", "dev")

    assert _exists(old) and Step.objects.filter(run=old).count() == 2 and Attempt.objects.filter(run=old).exists()
    assert not Span.objects.filter(run=old).exists()
    assert not RunEvent.objects.filter(run=old, type="log").exists()
    assert RunEvent.objects.filter(run=old, type="run.status").exists(), "the status history stays"
    assert Span.objects.filter(run=recent).exists() and RunEvent.objects.filter(run=recent, type="log").exists()


def test_a_dry_run_counts_and_deletes_nothing(monkeypatch, settings):
    settings.STEPWISE_RETENTION = {"*": {"runs_days": 30, "details_days": 7}}
    old = _run(monkeypatch, days_ago=40)

    out = run_command("prune", "--dry-run")

    assert "dev: would delete 1 runs, 1 spans, 2 run events" in out
    assert _exists(old) and Span.objects.filter(run=old).exists()
    assert not AuditEntry.objects.filter(action="runs.prune").exists()


def test_the_scheduler_prunes_on_its_interval(monkeypatch, settings):
    settings.STEPWISE_RETENTION = {"*": {"runs_days": 30}}
    settings.STEPWISE_PRUNE_INTERVAL_SECONDS = 0
    old = _run(monkeypatch, days_ago=40)

    assert sweep_once().pruned == 1

    assert not _exists(old)


@pytest.mark.parametrize(("retention", "message"), [
    ({"*": {"runs_days": -1}}, r"STEPWISE_RETENTION\['dev'\]\['runs_days'\] must be a number of days above 0"),
    ({"*": {"run_days": 3}}, r"STEPWISE_RETENTION\['dev'\]: unknown key\(s\) run_days"),
])
def test_wrong_settings_and_options_are_named(settings, retention, message):
    environments_ensure()
    settings.STEPWISE_RETENTION = retention
    with pytest.raises(CommandError, match=message):
        run_command("prune", "--env", "dev")
    with pytest.raises(CommandError, match="no environment 'nowhere'"):
        run_command("prune", "--env", "nowhere")
    with pytest.raises(CommandError, match="--batch must be at least 1"):
        run_command("prune", "--batch", "0")
