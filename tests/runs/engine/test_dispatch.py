"""Hints to workers: a run that resumes is taken before new runs that were queued earlier."""
from __future__ import annotations

import signal

import pytest

from stepwise.runs.models import Attempt, Run, Waitpoint
from stepwise.runs.statuses import RunStatus
from stepwise.runs.waits import waitpoint_complete
from tests.engine_tasks import noop, wait_token
from tests.waiting import wait_finished, wait_for


@pytest.mark.xdist_group("crash")
def test_a_resumed_run_starts_before_new_runs_queued_earlier(transactional_db, processes):
    first = processes.worker(concurrency=1)
    waiting = wait_token.trigger({}).id
    wait_for(lambda: Run.objects.get(id=waiting).status == RunStatus.WAITING, message="the run to wait on its token")
    processes.kill(first, signal.SIGTERM)
    first.wait(timeout=30)

    # Nobody consumes now: five new runs' hints, then the resume's hint, wait in the broker.
    new = [noop.trigger({"n": n}).id for n in range(5)]
    token = Waitpoint.objects.get(run_id=waiting, kind="TOKEN")
    waitpoint_complete(waitpoint_id=token.id, output={"ok": True})
    processes.worker(concurrency=1)

    for run_id in [waiting, *new]:
        assert wait_finished(run_id).status == RunStatus.COMPLETED
    resumed = Attempt.objects.get(run_id=waiting, number=2).started_at
    assert resumed < min(Attempt.objects.filter(run_id__in=new).values_list("started_at", flat=True))
