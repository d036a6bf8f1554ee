"""The README's first command: the embedded default (SQLite, in-process worker) runs a real task end to end."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from django.conf import settings

from runs.benchmarks.embedded import _embedded_env, _free_port, _until_serving
from runs.benchmarks.processes import process_group_stop
from tests.processes import LOG_DIR


def test_a_run_with_steps_retries_and_spans_completes_on_the_embedded_default():
    workdir = Path(tempfile.mkdtemp(prefix="stepwise-test-embedded-"))
    env = {**_embedded_env(workdir), "STEPWISE_TASK_MODULES": "examples.orders"}
    port = _free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / "embedded-up.log"
    manage = str(settings.BASE_DIR / "manage.py")
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, manage, "up", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        _until_serving(up, port, timeout=60, log=log)
        done = subprocess.run([sys.executable, manage, "trigger", "process-order", '{"orderId": "1"}', "--follow"],
                              cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    finally:
        process_group_stop(up)

    try:
        assert done.returncode == 0, done.stderr[-2000:]
        run_id, status = done.stdout.strip().splitlines()[-1].split()[:2]
        assert status == "COMPLETED"
        with closing(sqlite3.connect(workdir / "stepwise.sqlite3")) as db:
            kinds = {kind for (kind,) in db.execute("SELECT kind FROM runs_span WHERE run_id = ?", (run_id,))}
        assert {"run", "attempt", "step"} <= kinds
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
