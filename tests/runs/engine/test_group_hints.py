"""Group hints: the runs of one broker message run in one process, and a slow one does not hold up the rest."""
from __future__ import annotations

import base64
import json

import redis
from django.conf import settings

from stepwise.runs.broker import priority_lists
from stepwise.runs.dispatch import _hints, _hints_send, hint_priority
from stepwise.runs.models import Attempt, Run
from stepwise.runs.statuses import RunStatus
from stepwise.runs.worker import execute_runs
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


def _group_behind_a_slow_run_then_two_hints(processes, *, resume: bool) -> tuple[list[str], list[str], dict]:
    """Send a group hint (a slow run, then two fast ones) to a worker with one process, idle, and then
    two hints of their own (resumes, or new runs like the group's); return the fast and the later
    runs, and when each run's attempt started."""
    warm_up = noop.trigger({"n": -1}).id
    slow = sleepy_steps.trigger({"steps": 1, "sleep": 2}).id
    fast = [noop.trigger({"n": n}).id for n in range(2)]
    later = [noop.trigger({"n": n}).id for n in range(2, 4)]
    _broker_empty()
    processes.worker(concurrency=1, pool="prefork")
    _hints_send([(warm_up, False, None, 0)])
    wait_finished(warm_up, timeout=60)  # the worker is up, and waits for the next message
    _hints_send([(run_id, False, None, 0) for run_id in [slow, *fast]])  # one message: slow first
    for run_id in later:  # the process reserves the first, the broker holds the second
        _hints_send([(run_id, resume, None, 0)])

    finished = {run_id: wait_finished(run_id, timeout=60) for run_id in [slow, *fast, *later]}
    assert {run.status for run in finished.values()} == {RunStatus.COMPLETED}
    assert Attempt.objects.filter(run_id__in=finished).count() == 5  # each ran once
    return fast, later, dict(Attempt.objects.filter(run_id__in=finished).values_list("run_id", "started_at"))


def test_runs_of_a_group_stay_while_the_broker_holds_hints_as_urgent(transactional_db, processes):
    fast, later, started = _group_behind_a_slow_run_then_two_hints(processes, resume=False)
    # The only process was busy and the broker still held a later hint: handed back, the fast
    # runs would have queued behind the later ones. They stayed and ran right after the slow one.
    assert max(started[run_id] for run_id in fast) < started[later[1]]


def test_runs_of_a_group_go_back_when_a_resume_waits_behind_them(transactional_db, processes):
    fast, later, started = _group_behind_a_slow_run_then_two_hints(processes, resume=True)
    # Resumes go before new runs: kept, the fast runs would have run before the resume the
    # broker held. Handed back, they queued behind it.
    assert started[later[1]] < min(started[run_id] for run_id in fast)


def test_every_run_of_group_hints_runs_once(transactional_db, processes):
    runs = [noop.trigger({"n": n}).id for n in range(40)]
    _broker_empty()
    _hints_send([(run_id, False, None, 0) for run_id in runs])  # groups of STEPWISE_HINT_GROUP (32)
    processes.worker(concurrency=1, pool="prefork")  # no scheduler: only these hints can start them

    assert {wait_finished(run_id, timeout=60).status for run_id in runs} == {RunStatus.COMPLETED}
    assert list(Run.objects.filter(id__in=runs).values_list("attempt_count", flat=True).distinct()) == [1]


def test_a_group_that_starts_while_a_resume_waits_goes_back_whole_behind_it(transactional_db, processes):
    """A worker reserved the group before the resume was sent: the group gives way as it starts."""
    runs = [noop.trigger({"n": n}).id for n in range(3)]
    resumed = noop.trigger({"n": 9}).id
    _broker_empty()
    _hints_send([(resumed, True, None, 0)])  # the resume waits in the broker (no worker runs)

    execute_runs(runs, hint_priority(0, resume=False), None)  # the group's task, in this process

    assert set(Run.objects.filter(id__in=runs).values_list("status", flat=True)) == {RunStatus.QUEUED}
    client = redis.Redis.from_url(settings.REDIS_URL)
    queue = test_processes.test_queue_name()
    [resume_list] = priority_lists(queue, [0])
    [new_work_list] = priority_lists(queue, [hint_priority(0, resume=False)])
    assert client.llen(resume_list) == 1  # still there, for this process to take next
    [message] = [json.loads(raw) for raw in client.lrange(new_work_list, 0, -1)]
    assert (message["headers"]["task"], json.loads(base64.b64decode(message["body"]))[0]) == (
        "stepwise.execute_runs", [runs, hint_priority(0, resume=False), None])
