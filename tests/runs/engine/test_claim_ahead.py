"""A group hint's runs: the statement that ends one attempt claims the group's next run."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection

from stepwise.runs.dispatch import hint_priority
from stepwise.runs.models import Attempt, Run, RunEvent
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import execute_run, execute_runs

pytestmark = pytest.mark.django_db(transaction=True)
NEW_WORK = hint_priority(0, resume=False)


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone claims the runs."""


def _queued(task_id: str = "test-noop", payload: dict | None = None) -> str:
    return run_trigger(task_id=task_id, payload=payload or {})[0].id


def _attempts(run_id: str) -> list[Attempt]:
    return list(Attempt.objects.filter(run_id=run_id).order_by("number"))


def test_each_run_of_a_group_is_claimed_by_the_statement_that_ends_the_one_before(django_assert_num_queries):
    runs = [_queued() for _ in range(3)]
    with django_assert_num_queries(len(runs) + 1):  # the first claim, then one statement per run
        execute_runs(runs, NEW_WORK, None)

    finished = {run.id: run for run in Run.objects.filter(id__in=runs)}
    assert {run.status for run in finished.values()} == {RunStatus.COMPLETED}
    for before, after in zip(runs, runs[1:], strict=False):
        [attempt] = _attempts(after)
        # Claimed with the same statement, at the same moment, as the run before it ended.
        assert attempt.started_at == finished[before].finished_at
        assert attempt.worker_id == _attempts(before)[0].worker_id
    for run_id in runs:  # each run's events: created, executing, completed, numbered without a gap
        events = list(RunEvent.objects.filter(run_id=run_id).order_by("seq").values_list("seq", "type", "data"))
        assert [seq for seq, _, _ in events] == [1, 2, 3]
        assert [data.get("to") for _, kind, data in events if kind == "run.status"] == ["EXECUTING", "COMPLETED"]


def test_a_run_of_the_group_that_started_elsewhere_is_not_started_again(django_assert_num_queries):
    first, elsewhere, last = _queued(), _queued(), _queued()
    execute_run(elsewhere)  # a hint of its own got there first
    before = list(RunEvent.objects.filter(run_id=elsewhere).values_list("seq", "type"))

    with django_assert_num_queries(4):  # claim; end + refused claim; claim; end
        execute_runs([first, elsewhere, last], NEW_WORK, None)

    assert set(Run.objects.filter(id__in=[first, elsewhere, last]).values_list("status", flat=True)) == {
        RunStatus.COMPLETED}
    assert len(_attempts(elsewhere)) == 1
    assert list(RunEvent.objects.filter(run_id=elsewhere).values_list("seq", "type")) == before


def test_a_fenced_off_outcome_still_claims_and_starts_the_next_run():
    """The lease of the first run is taken over while it runs: its outcome is refused, the next run's claim is not."""
    fenced = _queued("test-sleeps-then-returns", {"sleep": 0.5})
    next_run = _queued()

    def take_over() -> None:  # as a recovery after a lost heartbeat would: a new token
        deadline = time.monotonic() + 5
        while not Run.objects.filter(id=fenced, status=RunStatus.EXECUTING).update(lease_token="taken-over"):
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.02)
        connection.close()

    thief = threading.Thread(target=take_over)
    thief.start()
    execute_runs([fenced, next_run], NEW_WORK, None)
    thief.join()

    run = Run.objects.get(id=fenced)
    assert (run.status, run.lease_token, run.output) == (RunStatus.EXECUTING, "taken-over", None)
    assert not RunEvent.objects.filter(run_id=fenced, type="run.status", data__to="COMPLETED").exists()
    assert Run.objects.get(id=next_run).status == RunStatus.COMPLETED
    assert len(_attempts(next_run)) == 1


def test_ending_an_attempt_never_waits_for_the_lock_of_the_next_run():
    """The next run's row is locked elsewhere: the outcome is written at once, and the run is claimed after the lock."""
    first, locked = _queued(), _queued()
    name = connection.settings_dict["NAME"]
    held = threading.Event()
    released_at: list[float] = []

    def hold_lock() -> None:
        user = connection.settings_dict["USER"] or "postgres"
        with psycopg.connect(host="127.0.0.1", user=user, dbname=name) as other:
            other.execute("SELECT id FROM stepwise_runs_run WHERE id = %s FOR UPDATE", [locked])
            held.set()
            time.sleep(1.5)
            released_at.append(time.time())
            other.commit()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert held.wait(10)
    started = time.time()
    execute_runs([first, locked], NEW_WORK, None)
    holder.join()

    runs = {run.id: run for run in Run.objects.filter(id__in=[first, locked])}
    assert {run.status for run in runs.values()} == {RunStatus.COMPLETED}
    assert runs[first].finished_at.timestamp() - started < 1.0  # not held up by the other run's lock
    assert len(_attempts(locked)) == 1
    # Refused while locked, claimed by a claim of its own, which waited for the lock.
    assert runs[locked].finished_at.timestamp() >= released_at[0] - 0.05
