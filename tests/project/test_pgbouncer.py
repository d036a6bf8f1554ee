"""Stepwise behind PgBouncer in transaction-pooling mode, the way most production Django deployments run.

Workers, the scheduler and the CLI reach PostgreSQL only through Debian's pgbouncer (``./bin/test``
installs it): a session lasts one transaction there, so nothing may rely on session state, prepared
statements kept across transactions, server-side cursors or LISTEN.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import psycopg
import pytest
from django.db import connection

from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from tests.engine_tasks import executions
from tests.processes import ROOT, _die_with_parent, child_env, free_port


def _pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if found is None:
        pytest.fail("pgbouncer is not installed: ./bin/test installs Debian's pgbouncer")
    return found


@pytest.fixture
def pgbouncer(tmp_path):
    """Start a pgbouncer in transaction-pooling mode in front of the test database; return its URL."""
    settings = connection.settings_dict
    user = settings.get("USER") or "postgres"
    port = free_port()
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={settings.get('HOST') or '127.0.0.1'} port={settings.get('PORT') or 5432} user={user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = any\npool_mode = transaction\nadmin_users = {user}\n"
        "default_pool_size = 10\nmax_client_conn = 200\n"
    )
    ini.chmod(0o644)
    args = [_pgbouncer_binary(), str(ini)]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "postgres"]  # pgbouncer refuses to run as root
    log = open(tmp_path / "pgbouncer.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    base = f"postgres://{user}@127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg.connect(f"{base}/pgbouncer", autocommit=True, prepare_threshold=None).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not start: {(tmp_path / 'pgbouncer.log').read_text()}")
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def _transactions_pooled(base: str, database: str) -> int:
    with psycopg.connect(f"{base}/pgbouncer", autocommit=True, prepare_threshold=None) as admin:
        cursor = admin.cursor()
        cursor.execute("SHOW STATS")
        columns = [c.name for c in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return next((int(r["total_xact_count"]) for r in rows if r["database"] == database), 0)


def test_trigger_claim_steps_retries_and_finish_all_work_through_pgbouncer_in_transaction_mode(
    transactional_db, processes, pgbouncer
):
    database = connection.settings_dict["NAME"]
    through_pooler = {"DATABASE_URL": f"{pgbouncer}/{database}", "DATABASE_POOLING": "transaction"}
    worker = processes.worker(concurrency=2, **through_pooler)
    processes.scheduler(**through_pooler)

    # Triggered by the CLI through the pooler; three attempts (two retries fired by the scheduler's
    # timers), with each finished step replayed, never run again.
    followed = subprocess.run(
        [sys.executable, "manage.py", "trigger", "test-third-step-flaky", "{}", "--follow"],
        cwd=ROOT, env=child_env(**through_pooler), capture_output=True, text=True, timeout=120,
    )
    assert followed.returncode == 0, followed.stdout + followed.stderr
    run = Run.objects.get(id=re.search(r"run_[0-9a-z]+", followed.stdout).group(0))

    assert run.status == RunStatus.COMPLETED and run.attempt_count == 3
    assert run.output == {"results": ["first-done", "second-done", "third-done"]}
    assert [r for r in executions(run.id) if r.startswith(("first", "second"))] == ["first:1", "second:1"]
    assert list(run.steps.values_list("key", flat=True)) == ["first", "second", "third"]
    assert _transactions_pooled(pgbouncer, database) > 20  # the work really went through the pooler
    worker_log = worker.log_path.read_text()
    assert "prepared statement" not in worker_log and "Traceback" not in worker_log
