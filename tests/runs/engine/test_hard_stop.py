"""A timed-out or canceled run blocked in a step frees its worker slot within seconds, not when the step returns."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run, Step
from stepwise.runs.services import run_cancel
from stepwise.runs.statuses import RunStatus
from tests.engine_tasks import noop, stuck_step
from tests.waiting import wait_finished, wait_for


@pytest.mark.xdist_group("crash")
@pytest.mark.parametrize("how", ["max_duration", "cancel"])
def test_a_single_slot_worker_runs_the_next_run_soon_after_a_stuck_one_is_stopped(transactional_db, processes, how):
    processes.worker(concurrency=1, pool="prefork")
    processes.scheduler(interval=0.2)
    stuck = stuck_step.trigger({"sleep": 60}).id  # max_duration is 3 s
    wait_for(lambda: Run.objects.get(id=stuck).status == RunStatus.EXECUTING, timeout=30, message="the stuck run")
    if how == "cancel":
        run_cancel(run_id=stuck, reason="stuck")
    waiting = noop.trigger({}).id

    # The step sleeps 60 s: only a hard stop lets the one slot take the next run this soon.
    assert wait_finished(waiting, timeout=25).status == RunStatus.COMPLETED
    final = Run.objects.get(id=stuck)
    assert final.status == (RunStatus.TIMED_OUT if how == "max_duration" else RunStatus.CANCELED)
    assert not Step.objects.filter(run_id=stuck).exists(), "nothing the stopped code did later is stored"
