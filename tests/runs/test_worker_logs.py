"""A task's log lines reach the console however its worker was started."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from stepwise.runs.models import RunEvent
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from tests.processes import TASK_MODULES, embedded_up
from tests.waiting import wait_finished


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_log_lines_of_a_task_become_log_events_on_a_celery_worker(transactional_db, processes, pool):
    processes.worker(pool=pool, concurrency=1)
    processes.scheduler()  # the task's first attempt fails: the scheduler fires its retry
    run, _ = run_trigger(task_id="test-traced", payload={})
    run = wait_finished(run.id, timeout=60)
    assert run.status == RunStatus.COMPLETED
    messages = [(e.data["level"], e.data["message"]) for e in RunEvent.objects.filter(run=run, type="log")]
    assert ("INFO", "fetched items") in messages and ("WARNING", "saving 3 items") in messages


def test_log_lines_of_a_task_reach_trigger_follow_under_manage_py_up():
    workdir = Path(tempfile.mkdtemp(prefix="stepwise-test-up-logs-"))
    try:
        with embedded_up(workdir, label="up-logs", STEPWISE_TASK_MODULES=TASK_MODULES, LOG_LEVEL="INFO") as server:
            done = subprocess.run([sys.executable, "manage.py", "trigger", "test-traced", "{}", "--follow",
                                   "--timeout", "90"], cwd=settings.BASE_DIR, env=server.env, capture_output=True,
                                  text=True, timeout=120)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log_lines = [line for line in done.stdout.splitlines() if " log " in line]
    assert any("INFO    fetched items" in line for line in log_lines), done.stdout
    assert any("WARNING saving 3 items" in line for line in log_lines), done.stdout
