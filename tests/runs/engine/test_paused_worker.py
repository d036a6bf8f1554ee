"""A worker paused past its lease (SIGSTOP) and resumed (SIGCONT) after a takeover writes nothing more."""
from __future__ import annotations

import os
import signal
import time

import pytest

from stepwise.runs.chaos.crashes import rows_of_attempt
from stepwise.runs.models import Run, Step
from stepwise.runs.statuses import RunStatus
from tests.engine_tasks import chatty_steps
from tests.waiting import wait_finished, wait_for


@pytest.mark.xdist_group("crash")
@pytest.mark.parametrize("resume_when", ["the new attempt runs", "the run completed"])
def test_a_paused_worker_resumed_after_a_takeover_adds_no_row(transactional_db, processes, resume_when):
    paused = processes.worker(concurrency=1)
    processes.scheduler(interval=0.2)
    run_id = chatty_steps.trigger({"steps": 12, "sleep": 0.3}).id
    wait_for(lambda: Step.objects.filter(run_id=run_id).count() >= 3, timeout=60, message="three steps")

    os.killpg(paused.pid, signal.SIGSTOP)
    try:
        processes.worker(concurrency=1)
        wait_for(lambda: Run.objects.get(id=run_id).attempt_count >= 2, timeout=60,
                 message="another worker to take the run over")
        if resume_when == "the run completed":
            assert wait_finished(run_id, timeout=60).status == RunStatus.COMPLETED
        written = rows_of_attempt(run_id, 1)
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
    time.sleep(4)  # the resumed worker finishes its step, tries its writes, flushes its held spans

    assert rows_of_attempt(run_id, 1) == written
    assert written["steps"] >= 3 and written["log lines"] >= 3 and written["spans"] >= 3
    run = wait_finished(run_id, timeout=60)
    assert run.status == RunStatus.COMPLETED and run.output == {"sum": 66}
