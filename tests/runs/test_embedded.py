"""The README's first command: the embedded default (SQLite, in-process worker) runs a real task end to end."""
from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from django.conf import settings

from tests.processes import embedded_up
from tests.waiting import wait_for


def test_a_run_with_steps_retries_and_spans_completes_on_the_embedded_default():
    workdir = Path(tempfile.mkdtemp(prefix="stepwise-test-embedded-"))
    with embedded_up(workdir, label="embedded-up", STEPWISE_TASK_MODULES="examples.orders") as server:
        done = subprocess.run([sys.executable, "manage.py", "trigger", "process-order", '{"orderId": "1"}', "--follow"],
                              cwd=settings.BASE_DIR, env=server.env, capture_output=True, text=True, timeout=120)
    try:
        assert done.returncode == 0, done.stderr[-2000:]
        run_id, status = done.stdout.strip().splitlines()[-1].split()[:2]
        assert status == "COMPLETED"
        with closing(sqlite3.connect(workdir / "stepwise.sqlite3")) as db:
            kinds = {kind for (kind,) in db.execute("SELECT kind FROM stepwise_runs_span WHERE run_id = ?", (run_id,))}
            # A plain step's or attempt's span is kept in its own row, the run's root span in the run's.
            kept_in_steps = db.execute("SELECT count(*) FROM stepwise_runs_step WHERE run_id = ? AND span_id != ''",
                                       (run_id,)).fetchone()[0]
            [(root_span_id,)] = db.execute("SELECT span_id FROM stepwise_runs_run WHERE id = ?", (run_id,))
            kept_in_attempts = db.execute(
                "SELECT count(*) FROM stepwise_runs_attempt WHERE run_id = ? AND span_id != ''", (run_id,)
            ).fetchone()[0]
        assert len(root_span_id) == 16
        assert "attempt" in kinds or kept_in_attempts
        assert "step" in kinds or kept_in_steps
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_embedded_default_prints_each_request_warning_once():
    workdir = Path(tempfile.mkdtemp(prefix="stepwise-test-embedded-"))
    try:
        with embedded_up(workdir, label="embedded-up-output", STEPWISE_TASK_MODULES="examples.orders",
                         LOG_LEVEL="INFO") as server:
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(f"{server.url}/no-such-page/", timeout=10)
            printed = wait_for(lambda: "no-such-page" in server.log.read_text() and server.log.read_text(),
                               timeout=10, message="the request warning")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert [line for line in printed.splitlines() if "no-such-page" in line] == [
        next(line for line in printed.splitlines() if "WARNING django.request: Not Found: /no-such-page/" in line)]
    assert "sweeper:" not in printed  # the scheduler's passes are reported at DEBUG
    # Celery's banner (its queue list grows with every task version) is one line of ours.
    assert "[queues]" not in printed and "Worker: 4 threads on memory://localhost//" in printed


def test_up_on_a_taken_port_stops_at_once_and_names_the_port(tmp_path):
    from stepwise.runs.benchmarks.embedded import _embedded_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**_embedded_env(tmp_path), "STEPWISE_TASK_MODULES": "examples.orders"}
        done = subprocess.run([sys.executable, "manage.py", "up", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot serve the console on 127.0.0.1:{port}: Address already in use" in done.stderr
    # Nothing claimed to serve, and no worker started behind a console that is not there.
    assert "Stepwise console on" not in done.stdout and "Worker:" not in done.stdout


def test_ctrl_c_stops_the_embedded_default_cleanly(tmp_path):
    from stepwise.runs.benchmarks.embedded import _embedded_env, _free_port, _until_serving

    port = _free_port()
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "manage.py", "up", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=settings.BASE_DIR, env={**_embedded_env(tmp_path), "LOG_LEVEL": "INFO"},
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        _until_serving(up, port, timeout=60, log=log)
        wait_for(lambda: "ready." in log.read_text(), timeout=30, message="the worker ready")
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    printed = log.read_text()
    assert "Warm shutdown" in printed and "Traceback" not in printed, printed[-3000:]
    # The in-process broker (named as the URL says) is the one that lets the worker's loop see the stop.
    assert "Worker: 4 threads on memory://localhost//" in printed


def test_the_embedded_default_s_broker_is_the_in_process_one_that_answers_a_stop(tmp_path):
    from stepwise.runs.benchmarks.embedded import _embedded_env
    from stepwise.runs.embedded_broker import Transport

    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from stepwise.runs.celery_app import celery_app; "
                               "print(type(celery_app().connection_for_write().transport).__module__)"],
        cwd=settings.BASE_DIR, env=_embedded_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == Transport.__module__
