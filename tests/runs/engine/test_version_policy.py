"""Version policies in this process: the decorator's check, the claim's refusal, the scheduler's grace period."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from stepwise.runs.broker import priority_lists
from stepwise.runs.dispatch import _hints, version_queue
from stepwise.runs.models import Attempt, Run, RunEvent
from stepwise.runs.statuses import RunStatus, VersionPolicy
from stepwise.runs.sweeper import pinned_runs_sweep, redispatch_stale
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt
from stepwise.tasks.registry import InvalidVersionPolicy, UnknownTask, task_get
from stepwise.tasks.sdk import task
from stepwise.tasks.services import worker_versions_announce, worker_versions_forget
from tests.factories import ELSEWHERE, run_pinned_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)



@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone claims and sweeps."""


def test_an_unknown_version_policy_is_refused_when_the_task_is_declared():
    with pytest.raises(InvalidVersionPolicy) as refused:
        task(id="test-misdeclared", version_policy="pinned")
    assert str(refused.value) == (
        "@task(id='test-misdeclared'): version_policy must be 'pin' or 'latest', not 'pinned'")
    with pytest.raises(UnknownTask):
        task_get("test-misdeclared")


def test_a_task_without_a_policy_takes_the_projects_default_and_its_runs_record_theirs():
    assert django_settings.STEPWISE_VERSION_POLICY == "latest"
    assert task_get("test-noop").version_policy == VersionPolicy.LATEST
    plain = run_trigger(task_id="test-noop", payload={})[0]
    pinned = run_trigger(task_id="test-pinned-noop", payload={})[0]
    assert Run.objects.get(id=plain.id).version_policy == VersionPolicy.LATEST
    assert Run.objects.get(id=pinned.id).version_policy == VersionPolicy.PIN


def test_a_pinned_run_on_a_worker_of_its_version_costs_what_any_run_costs(django_assert_num_queries):
    run_trigger(task_id="test-pinned-noop", payload={})  # registers the task, its version and queue
    run_id = run_trigger(task_id="test-pinned-noop", payload={})[0].id
    with django_assert_num_queries(2):  # the claim, the outcome
        outcome = run_attempt(run_id)
    assert outcome.result == "completed"


def _hints_waiting_in(queue: str) -> int:
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    # One Redis list per broker priority (0 is the queue's own name): a hint may wait in any of the ten.
    return sum(client.llen(key) for key in priority_lists(queue))


def test_a_worker_without_the_runs_version_does_not_claim_it_and_passes_the_hint_to_that_versions_queue():
    run_id = run_pinned_elsewhere().id
    queue = version_queue(ELSEWHERE)
    before = _hints_waiting_in(queue)

    assert run_attempt(run_id) is None

    run = Run.objects.get(id=run_id)
    assert (run.status, run.attempt_count) == (RunStatus.QUEUED, 0)
    assert not Attempt.objects.filter(run_id=run_id).exists()
    assert _hints.flush(5)
    assert _hints_waiting_in(queue) == before + 1


def test_the_scheduler_marks_a_pinned_run_no_worker_can_take_and_fails_it_after_the_grace_period(settings):
    settings.STEPWISE_VERSION_GRACE_SECONDS = 60
    run_id = run_pinned_elsewhere().id
    now = timezone.now()

    assert pinned_runs_sweep(now) == (1, 0, 0)
    run = Run.objects.get(id=run_id)
    assert run.waiting_for_version and run.version_wait_since == now
    waiting = RunEvent.objects.get(run_id=run_id, type="version.waiting").data
    assert waiting == {"version": ELSEWHERE[:10], "hash": ELSEWHERE, "grace_seconds": 60}
    assert redispatch_stale(now + timedelta(seconds=30)) == 0  # no worker to hint
    assert pinned_runs_sweep(now + timedelta(seconds=30)) == (0, 0, 0)

    # A worker holding the version starts: the wait ends, the run is hinted to it.
    worker_versions_announce(worker="w-old", hashes=[ELSEWHERE], now=now + timedelta(seconds=31))
    assert pinned_runs_sweep(now + timedelta(seconds=31)) == (0, 1, 0)
    assert not Run.objects.get(id=run_id).waiting_for_version

    # It stops before taking the run: the grace period starts over.
    worker_versions_forget(worker="w-old")
    assert pinned_runs_sweep(now + timedelta(seconds=40)) == (1, 0, 0)
    assert pinned_runs_sweep(now + timedelta(seconds=99)) == (0, 0, 0)
    assert pinned_runs_sweep(now + timedelta(seconds=100)) == (0, 0, 1)

    run = Run.objects.get(id=run_id)
    assert run.status == RunStatus.FAILED and run.attempt_count == 0
    assert run.error["type"] == "VersionUnavailable"
    assert run.error["message"] == (
        f"no worker of version {ELSEWHERE[:10]} of task 'test-pinned-noop' is running: the run is pinned to that "
        "version (version_policy 'pin') and no worker holding it came within 60s. Start a worker with that code, "
        "or replay the run on the current code.")


def test_a_latest_run_is_not_held_back_by_its_version():
    run_id = run_pinned_elsewhere(task_id="test-noop").id

    assert pinned_runs_sweep(timezone.now()) == (0, 0, 0)
    assert run_attempt(run_id).result == "completed"
    attempt = Attempt.objects.select_related("version").get(run_id=run_id)
    assert attempt.version.content_hash == task_get("test-noop").version_hash  # the code that ran
    assert RunEvent.objects.filter(run_id=run_id, type="version.mismatch").exists()


def test_a_worker_stopped_while_it_started_forgets_its_versions_without_an_error():
    # Ctrl-C between the first announcement and the announcer's thread: the worker's shutdown still says it left.
    from stepwise.runs.worker import VersionAnnouncer
    from stepwise.tasks.models import WorkerVersion

    announcer = VersionAnnouncer(worker="w-stopped-early", hashes=(ELSEWHERE,), interval=60)
    announcer._announce(first=True)
    assert WorkerVersion.objects.filter(worker="w-stopped-early").exists()
    announcer.stop()
    assert not WorkerVersion.objects.filter(worker="w-stopped-early").exists()
