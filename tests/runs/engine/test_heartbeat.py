"""One heartbeat thread per process keeps the lease of every attempt running in it alive."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from stepwise.runs.engine.deadlines import Deadlines
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.runs.sweeper import recover_lost_leases
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone claims and sweeps."""


def _attempt_in_thread(run_id: str, outcomes: dict[str, str]) -> threading.Thread:
    def attempt() -> None:
        try:
            outcomes[run_id] = run_attempt(run_id).result
        finally:
            connection.close()

    thread = threading.Thread(target=attempt)
    thread.start()
    return thread


def test_attempts_side_by_side_outlive_their_lease_without_being_taken_over(settings):
    settings.STEPWISE_LEASE_SECONDS = 0.6
    settings.STEPWISE_HEARTBEAT_SECONDS = 0.1
    run_ids = [run_trigger(task_id="test-sleepy-steps", payload={"steps": 3, "sleep": 0.4})[0].id for _ in range(2)]
    outcomes: dict[str, str] = {}
    threads = [_attempt_in_thread(run_id, outcomes) for run_id in run_ids]

    recovered, beating = 0, set()
    while any(t.is_alive() for t in threads):  # the scheduler's lost-lease pass, again and again
        recovered += sum(recover_lost_leases(timezone.now()))
        beating |= {t.ident for t in threading.enumerate() if t.name == "stepwise-heartbeats"}
        time.sleep(0.05)
    for thread in threads:
        thread.join()

    assert recovered == 0, "a lease of a live attempt expired"
    assert outcomes == {run_id: "completed" for run_id in run_ids}
    assert all(run.status == RunStatus.COMPLETED and run.attempt_count == 1
               for run in Run.objects.filter(id__in=run_ids))
    assert len(beating) == 1, "the attempts share one heartbeat thread"


def test_a_run_past_its_max_duration_is_timed_out_by_the_heartbeat(settings):
    settings.STEPWISE_HEARTBEAT_SECONDS = 0.1
    run, _ = run_trigger(task_id="test-slow", payload={})  # max_duration=1, ten steps of 0.2 s

    outcome = run_attempt(run.id)

    assert outcome.result == "interrupted"
    final = Run.objects.get(id=run.id)
    assert final.status == RunStatus.TIMED_OUT
    assert final.steps.count() < 10


class _Beating:
    """What the heartbeat thread calls of an attempt's heartbeat, noting when it was called."""

    on_thread_exit = None

    def __init__(self, name: str, beats: list[tuple[str, float]]):
        self.name, self.beats, self.stopped = name, beats, False

    def beat(self) -> bool:
        self.beats.append((self.name, time.monotonic()))
        self.stopped = True  # one beat each is enough here
        return True

    def next_beat(self) -> float:
        return time.monotonic() + 60


def test_a_beat_due_sooner_than_the_one_the_thread_waits_for_still_comes_on_time():
    from stepwise.runs.engine.executor import _beats_act

    beats: list[tuple[str, float]] = []
    thread = Deadlines("test-heartbeats", _beats_act)
    start = time.monotonic()
    for name, due in (("later", 0.6), ("later still", 0.9), ("sooner", 0.3)):
        beating = _Beating(name, beats)
        thread.add(beating, (beating, False), start + due)
        if name == "later":
            time.sleep(0.1)  # the thread now waits for "later"; "later still" is after it: nothing to wake for
        # "sooner" is before it: the thread must wake up for it
    deadline = time.monotonic() + 5
    while len(beats) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [name for name, _ in beats] == ["sooner", "later", "later still"]
    for (name, at), due in zip(beats, (0.3, 0.6, 0.9), strict=True):
        assert due <= at - start < due + 0.2, name
