"""Shared fixtures: real PostgreSQL, Redis and Celery workers for every engine test."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

import tests.engine_tasks  # noqa: F401  (registers the test tasks in this process)
from tests.processes import Processes, test_queue_name


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2).close()
        return True
    except OSError:
        return False


def pytest_configure(config) -> None:
    from django.conf import settings

    problems = []
    if not settings.USES_POSTGRES:
        problems.append("DATABASE_URL must point at PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/stepwise)")
    elif not _reachable(os.environ["DATABASE_URL"], 5432):
        problems.append(f"PostgreSQL is not reachable at {os.environ['DATABASE_URL']}")
    if not settings.REDIS_URL:
        problems.append("REDIS_URL must be set (e.g. redis://127.0.0.1:6379/0)")
    elif not _reachable(settings.REDIS_URL, 6379):
        problems.append(f"Redis is not reachable at {settings.REDIS_URL}")
    if problems:
        raise pytest.UsageError("the test suite needs real services: " + "; ".join(problems))
    from stepwise.console.celery import app

    # Django's CELERY_* settings take precedence over the lowercase name: set the key Celery reads.
    app.conf["CELERY_TASK_DEFAULT_QUEUE"] = test_queue_name()
    assert app.amqp.router.route({}, "stepwise.execute_run")["queue"].name == test_queue_name()
    # Workers publish run events with the queue name as channel prefix (tests/processes.py); listen there too.
    settings.CHANNEL_PREFIX = test_queue_name()
    settings.CHANNEL_LAYERS["default"].setdefault("CONFIG", {})["prefix"] = settings.CHANNEL_PREFIX


@pytest.fixture(autouse=True)
def _no_connection_left_mid_query():
    """Start afresh when a test stopped by its timeout left this process's connection inside a query.

    That test fails on its own; without this, every later test of the process would fail too
    ("another command is already in progress") and hide what really went wrong.
    """
    from django.db import connection
    from psycopg import pq

    raw = connection.connection
    if raw is not None and raw.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
        connection.close()


@pytest.fixture(autouse=True)
def _no_connection_left_in_asgirefs_thread():
    """Close the connection that async tests' ``sync_to_async`` calls opened in asgiref's one shared thread.

    That thread outlives the test. A later test that cuts this database's connections (an outage)
    would break its connection unseen, and the next async test's first query would fail on it.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Give each test a channel layer of its own.

    channels_redis binds a layer's receive state to the event loop of its first receive; a
    test whose loop ended during a receive would leave the next test's loop a layer it cannot use.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _no_failed_attempts_counted():
    """Start each test with no failed sign-ins or API keys counted (the cache is this process's own)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_task_cache():
    from stepwise.tasks.services import task_cache_clear

    task_cache_clear()
    yield
    task_cache_clear()


class SharedProcesses:
    """Workers and a scheduler shared by the tests of one session, stopped for tests that own theirs."""

    def __init__(self) -> None:
        self.procs: Processes | None = None

    def ensure_started(self) -> Processes:
        if self.procs is None:
            self.procs = Processes("session")
            self.procs.worker(concurrency=2)
            self.procs.worker(concurrency=2)
            self.procs.scheduler(interval=0.2)
        return self.procs

    def stop(self) -> None:
        if self.procs is not None:
            self.procs.stop_all()
            self.procs = None


@pytest.fixture(scope="session")
def shared_processes(django_db_setup, django_db_blocker):
    shared = SharedProcesses()
    yield shared
    shared.stop()
    with django_db_blocker.unblock():
        _other_sessions_end()


def _other_sessions_end(timeout: float = 5.0) -> None:
    """Let the test database's other sessions end before it is dropped; end those still there after ``timeout``.

    They belong to processes the tests stopped or killed (workers, schedulers, the bench's), whose
    backends can outlive them by a moment; Django's DROP DATABASE fails while any is connected.
    """
    import time as _time

    from django.db import connection

    sql = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    deadline = _time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql)
            pids = [pid for (pid,) in cursor.fetchall()]
            if not pids or _time.monotonic() > deadline:
                break
            _time.sleep(0.1)
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    connection.close()


@pytest.fixture
def processes(request, shared_processes):
    """Start workers and schedulers for one test (nothing else runs meanwhile); all stop afterwards."""
    shared_processes.stop()
    procs = Processes(request.node.name[:60].replace("/", "_"))
    yield procs
    procs.stop_all()


@pytest.fixture
def live(transactional_db, shared_processes):
    """A test that needs real workers: committed data, and two worker processes plus a scheduler."""
    return shared_processes.ensure_started()


def _flush_with_retries() -> None:
    """Let pytest-django's flush between tests retry when a worker's last write deadlocks with it.

    Worker processes keep running between tests; a write still in flight (a span batch, a
    heartbeat) can deadlock with TRUNCATE, and PostgreSQL then aborts one of the two.
    """
    import time as _time

    from django.core.management.commands import flush
    from django.db import OperationalError

    original = flush.Command.handle

    def handle(self, **options):
        for attempt in range(5):
            try:
                return original(self, **options)
            except Exception as exc:  # flush wraps the database error in a CommandError
                if attempt == 4 or not isinstance(exc.__cause__, OperationalError):
                    raise
                _time.sleep(0.5)

    flush.Command.handle = handle


_flush_with_retries()
