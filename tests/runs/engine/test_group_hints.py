"""Group hints: the runs of one broker message run in one process, and a slow one does not hold up the rest."""
from __future__ import annotations

import redis
from django.conf import settings

from stepwise.runs.broker import priority_lists
from stepwise.runs.dispatch import _hints, _hints_send
from stepwise.runs.models import Attempt, Run
from stepwise.runs.statuses import RunStatus
from tests import processes as test_processes
from tests.engine_tasks import noop, sleepy_steps
from tests.waiting import wait_finished


def _broker_empty() -> None:
    """Drop the hints the triggers sent: the test sends its own group hint instead."""
    assert _hints.flush(5)
    redis.Redis.from_url(settings.REDIS_URL).delete(*priority_lists(test_processes.test_queue_name()))


def test_runs_behind_a_slow_run_of_their_group_are_handed_back_and_start_elsewhere(transactional_db, processes):
    slow = sleepy_steps.trigger({"steps": 1, "sleep": 5}).id
    fast = [noop.trigger({"n": n}).id for n in range(3)]
    _broker_empty()
    _hints_send([(run_id, False, None, 0) for run_id in [slow, *fast]])  # one message: slow first
    processes.worker(concurrency=2, pool="prefork")

    finished = {run_id: wait_finished(run_id, timeout=60) for run_id in [slow, *fast]}
    assert {run.status for run in finished.values()} == {RunStatus.COMPLETED}
    # The runs behind the slow one did not wait for it: the process holding the group handed
    # them back to the broker, and the other child took them while the slow run slept.
    assert max(finished[run_id].finished_at for run_id in fast) < finished[slow].finished_at
    assert Attempt.objects.filter(run_id__in=[slow, *fast]).count() == 4  # each ran once


def test_runs_of_a_group_stay_while_the_broker_holds_hints_that_go_first(transactional_db, processes):
    slow = sleepy_steps.trigger({"steps": 1, "sleep": 2}).id
    fast = [noop.trigger({"n": n}).id for n in range(2)]
    later = [noop.trigger({"n": n}).id for n in range(2, 4)]
    _broker_empty()
    _hints_send([(run_id, False, None, 0) for run_id in [slow, *fast]])  # one message: slow first
    for run_id in later:  # then two hints of their own, at the same broker priority
        _hints_send([(run_id, False, None, 0)])
    processes.worker(concurrency=1, pool="prefork")

    finished = {run_id: wait_finished(run_id, timeout=60) for run_id in [slow, *fast, *later]}
    assert {run.status for run in finished.values()} == {RunStatus.COMPLETED}
    # The only process was busy and the broker still held a later hint: handed back, the fast
    # runs would have queued behind the later ones. They stayed and ran right after the slow one.
    started = dict(Attempt.objects.filter(run_id__in=finished).values_list("run_id", "started_at"))
    assert max(started[run_id] for run_id in fast) < started[later[1]]
    assert len(started) == 5 and Attempt.objects.filter(run_id__in=finished).count() == 5  # each ran once


def test_every_run_of_group_hints_runs_once(transactional_db, processes):
    runs = [noop.trigger({"n": n}).id for n in range(20)]
    _broker_empty()
    _hints_send([(run_id, False, None, 0) for run_id in runs])  # groups of STEPWISE_HINT_GROUP (8)
    processes.worker(concurrency=1, pool="prefork")  # no scheduler: only these hints can start them

    assert {wait_finished(run_id, timeout=60).status for run_id in runs} == {RunStatus.COMPLETED}
    assert list(Run.objects.filter(id__in=runs).values_list("attempt_count", flat=True).distinct()) == [1]
