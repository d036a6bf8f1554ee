"""A deployment of Stepwise 0.1 (apps labelled runs and tasks) upgrades with ``manage.py migrate`` and keeps its data.

The database is a dump of a real 0.1 deployment (stepwise_0_1.sql: runs, roles, an API key, a secret). And a
project's own app named ``runs`` is never taken for Stepwise's.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from stepwise.runs.legacy_labels import legacy_labels_move
from tests.processes import ROOT

DUMP = Path(__file__).with_name("stepwise_0_1.sql")
# The secrets key of the deployment the dump was made from: its CARRIER_TOKEN must still decrypt.
LEGACY_SECRETS_KEY = "PYQ2tx8Khet9G7OeK2fqlBAq9tXAJNZJ8mfBJ4N_VB4="
CHECK_SCRIPT = """
import json
import sqlite3
from django.contrib.auth.models import User
from stepwise.runs.models import Run, Step
from stepwise.tasks.models import ApiKey
from stepwise.tasks.secrets import secrets_for_environment
ada = User.objects.get(username="ada")
print(json.dumps({
    "runs": sorted(Run.objects.values_list("status", flat=True)), "steps": Step.objects.count(),
    "operator": [ada.has_perm("stepwise_runs.change_run"), ada.has_perm("stepwise_tasks.change_secret")],
    "keys": list(ApiKey.objects.values_list("name", flat=True)),
    "secret": secrets_for_environment("dev")["CARRIER_TOKEN"],
}))
"""


@pytest.fixture
def legacy_database():
    admin = urllib.parse.urlparse(os.environ["DATABASE_URL"])
    name = f"stepwise_legacy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin._replace(path=f"/{name}").geturl()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(DUMP.read_text())
        yield url
    finally:
        with psycopg.connect(admin._replace(path="/postgres").geturl(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _manage(database: dict[str, str], *args: str) -> str:
    """Run this repository's manage.py on ``database`` (DATABASE_URL, or STEPWISE_SQLITE_PATH alone)."""
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, **database,
           "DJANGO_SETTINGS_MODULE": "stepwise.console.settings", "DEBUG": "1",
           "STEPWISE_SECRET_KEYS": LEGACY_SECRETS_KEY}
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_migrate_moves_a_0_1_deployment_onto_the_new_labels_and_keeps_its_data(legacy_database):
    assert {"runs_run", "tasks_task"} <= _tables(legacy_database)

    with psycopg.connect(legacy_database) as conn:
        had = {f"stepwise_{app}.{name}" for app, name in conn.execute(
            "SELECT app, name FROM django_migrations WHERE app IN ('runs', 'tasks')")}
    migrated = _manage({"DATABASE_URL": legacy_database}, "migrate", "--noinput")
    assert "Stepwise's apps were renamed: runs -> stepwise_runs: 10 tables renamed, 15 migration records moved" \
        in migrated
    assert "tasks -> stepwise_tasks: 15 tables renamed, 10 migration records moved" in migrated
    # Only migrations newer than 0.1 apply: none that 0.1 had applied runs again on its tables.
    assert not set(re.findall(r"Applying (\S+)\.\.\.", migrated)) & had, migrated
    tables = _tables(legacy_database)
    assert {"stepwise_runs_run", "stepwise_runs_step", "stepwise_tasks_task", "stepwise_tasks_secret"} <= tables
    assert not {t for t in tables if t.startswith(("runs_", "tasks_"))}

    assert json.loads(_manage({"DATABASE_URL": legacy_database}, "shell", "--no-imports", "-c", CHECK_SCRIPT)) == {
        "runs": ["COMPLETED", "COMPLETED"], "steps": 6, "operator": [True, False], "keys": ["ci-bot"],
        "secret": "s3cret",
    }
    again = _manage({"DATABASE_URL": legacy_database}, "migrate", "--noinput")
    assert "renamed" not in again and "No migrations to apply." in again
    assert "No changes detected" in _manage({"DATABASE_URL": legacy_database}, "makemigrations", "--check", "--dry-run")


def test_a_projects_own_runs_app_is_not_taken_for_stepwise(db):
    # A project whose own app is labelled runs: its migration is recorded, its runs_run table exists, and
    # Stepwise's records are not there yet (Stepwise is being added to it).
    MigrationRecorder.Migration.objects.filter(app__in=["stepwise_runs", "stepwise_tasks"]).delete()
    MigrationRecorder.Migration.objects.create(app="runs", name="0001_initial")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE runs_run (id bigint PRIMARY KEY, driver text)")

    assert legacy_labels_move(connection) == []
    assert MigrationRecorder.Migration.objects.filter(app="runs").count() == 1
    assert "runs_run" in connection.introspection.table_names()


def test_the_embedded_sqlite_database_of_0_1_upgrades_too(tmp_path):
    # 0.1's SQLite layout is today's with the old labels (the same migrations): made here by undoing the move.
    path = tmp_path / "stepwise.sqlite3"
    sqlite = {"STEPWISE_SQLITE_PATH": str(path)}

    _manage(sqlite, "migrate", "--noinput")
    run_id = _manage(sqlite, "trigger", "process-order", '{"orderId": "1"}').split()[0]
    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'stepwise_%'"):
            db.execute(f'ALTER TABLE "{table}" RENAME TO "{table.removeprefix("stepwise_")}"')
        for old, new in (("runs", "stepwise_runs"), ("tasks", "stepwise_tasks")):
            db.execute("UPDATE django_migrations SET app = ? WHERE app = ?", (old, new))
            db.execute("UPDATE django_content_type SET app_label = ? WHERE app_label = ?", (old, new))

    migrated = _manage(sqlite, "migrate", "--noinput")
    assert "runs -> stepwise_runs: 10 tables renamed" in migrated and "No migrations to apply." in migrated
    assert run_id in _manage(sqlite, "runs", "list")
