"""The admin CLI as a user runs it: apikeys, queues, schedules, and the --env check they share with secrets."""
from __future__ import annotations

import io
import sys

import pytest
from django.core.management import CommandError

from stepwise.runs.states import run_transition
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.access import Capability, may
from stepwise.tasks.apikeys import api_key_authenticate
from stepwise.tasks.models import ApiKey, AuditEntry, Queue, Schedule, Secret
from stepwise.tasks.services import environments_ensure
from tests.commands import run_command


@pytest.fixture
def envs(db):
    environments_ensure()


def test_secrets_with_an_unknown_environment_are_refused_before_the_value_is_read(envs, monkeypatch):
    stdin = io.StringIO("hunter2\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(CommandError, match="unknown environment 'nope' \\(known: dev, prod, staging\\)"):
        run_command("secrets", "set", "DB_PASSWORD", "--env", "nope")
    assert stdin.tell() == 0 and not Secret.objects.exists()
    with pytest.raises(CommandError, match="unknown environment 'nope'"):
        run_command("secrets", "list", "--env", "nope")


# apikeys


def test_apikeys_create_prints_the_secret_once_and_list_never_shows_it(envs):
    out = run_command("apikeys", "create", "ci deploys", "--env", "prod")
    key = ApiKey.objects.get()
    secret = out.splitlines()[1]
    assert secret.startswith("sk_prod_") and out.count(secret) == 1
    assert "Store this key now" in out and f"created API key {key.id} ci deploys in prod" in out
    listing = run_command("apikeys", "list", "--env", "prod")
    assert secret not in listing
    assert f"{key.prefix}…" in listing and "ci deploys" in listing and "never" in listing
    assert api_key_authenticate(secret) == key  # the printed secret is the working key
    key.refresh_from_db()
    listing = run_command("apikeys", "list", "--env", "prod")
    assert secret not in listing and "never" not in listing and f"{key.last_used_at:%Y-%m-%d %H:%M}" in listing
    assert "ci deploys" not in run_command("apikeys", "list")  # dev is another environment


def test_apikeys_revoke_refuses_the_key_and_list_shows_when(envs):
    run_command("apikeys", "create", "laptop")
    key = ApiKey.objects.get()
    out = run_command("apikeys", "revoke", str(key.id))
    assert f"revoked API key {key.id} laptop ({key.prefix}…) in dev" in out
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert f"{key.revoked_at:%Y-%m-%d %H:%M}" in run_command("apikeys", "list").splitlines()[1]


def test_apikeys_bad_input_names_the_problem_and_stores_nothing(envs):
    with pytest.raises(CommandError, match="unknown environment 'nope' \\(known: dev, prod, staging\\)"):
        run_command("apikeys", "create", "ci", "--env", "nope")
    with pytest.raises(CommandError, match="unknown environment 'nope'"):
        run_command("apikeys", "list", "--env", "nope")
    with pytest.raises(CommandError, match="a name of 1 to 128 characters"):
        run_command("apikeys", "create", "  ")
    with pytest.raises(CommandError, match="no API key 999 in environment 'dev'"):
        run_command("apikeys", "revoke", "999")
    assert not ApiKey.objects.exists()


def test_apikeys_revoke_of_another_environments_key_is_refused(envs):
    run_command("apikeys", "create", "prod-only", "--env", "prod")
    key = ApiKey.objects.get()
    with pytest.raises(CommandError, match=f"no API key {key.id} in environment 'dev'"):
        run_command("apikeys", "revoke", str(key.id))
    key.refresh_from_db()
    assert key.revoked_at is None


# queues


def test_queues_list_shows_limit_state_and_executing_and_queued_counts(envs):
    Queue.objects.create(environment_id="dev", name="cli-emails", concurrency_limit=3)
    runs = [run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(queue="cli-emails"))[0]
            for _ in range(3)]
    run_transition(run_id=runs[0].id, to=RunStatus.EXECUTING, expected_from=[RunStatus.QUEUED])
    lines = run_command("queues", "list").splitlines()
    assert lines[0].split() == ["QUEUE", "LIMIT", "STATE", "EXECUTING", "QUEUED"]
    row = next(line for line in lines if line.startswith("cli-emails "))
    assert row.split() == ["cli-emails", "limit", "3", "active", "1", "2"]


def test_queues_pause_resume_and_limit_change_the_queue(envs):
    Queue.objects.create(environment_id="dev", name="cli-reports")
    assert run_command("queues", "pause", "cli-reports").startswith("queue cli-reports paused")
    assert Queue.objects.get(environment_id="dev", name="cli-reports").paused
    assert "paused" in run_command("queues", "list")
    assert run_command("queues", "resume", "cli-reports") == "queue cli-reports resumed\n"
    assert not Queue.objects.get(environment_id="dev", name="cli-reports").paused
    assert run_command("queues", "limit", "cli-reports", "5") == "queue cli-reports is now limit 5\n"
    assert Queue.objects.get(environment_id="dev", name="cli-reports").concurrency_limit == 5
    assert run_command("queues", "limit", "cli-reports", "none") == "queue cli-reports is now unlimited\n"
    assert Queue.objects.get(environment_id="dev", name="cli-reports").concurrency_limit is None


def test_queues_limit_sets_a_total_across_keys_beside_the_per_key_limit(envs):
    Queue.objects.create(environment_id="dev", name="cli-capped", concurrency_limit=2)
    said = run_command("queues", "limit", "cli-capped", "--total", "10")
    assert said == "queue cli-capped is now limit 2, total 10\n"
    row = next(line for line in run_command("queues", "list").splitlines() if line.startswith("cli-capped "))
    assert row.split()[:5] == ["cli-capped", "limit", "2,", "total", "10"]
    assert run_command("queues", "limit", "cli-capped", "none") == "queue cli-capped is now total 10\n"
    with pytest.raises(CommandError, match="give a concurrency limit, a total limit or both"):
        run_command("queues", "limit", "cli-capped")
    with pytest.raises(CommandError, match="a total limit must be an integer from 1 to 10000"):
        run_command("queues", "limit", "cli-capped", "--total", "0")
    queue = Queue.objects.get(environment_id="dev", name="cli-capped")
    assert (queue.concurrency_limit, queue.total_limit) == (None, 10)


def test_queues_rate_sets_and_removes_a_rate_limit_and_names_a_bad_one(envs):
    Queue.objects.create(environment_id="dev", name="cli-rated", concurrency_limit=3)
    assert run_command("queues", "rate", "cli-rated", "1000/1h") == "queue cli-rated is now limit 3, rate 1000/h\n"
    assert "rate 1000/h" in run_command("queues", "list")
    with pytest.raises(CommandError, match="not a rate limit: 'fast'"):
        run_command("queues", "rate", "cli-rated", "fast")
    assert run_command("queues", "rate", "cli-rated", "none") == "queue cli-rated is now limit 3\n"
    assert Queue.objects.get(environment_id="dev", name="cli-rated").rate_limit is None


@pytest.mark.parametrize(("value", "message"), [
    ("-2", "must be an integer from 1 to 10000"),
    ("0", "must be an integer from 1 to 10000"),
    ("2.5", "'2.5' is not a concurrency limit: give an integer from 1 to 10000, or 'none'"),
    ("lots", "'lots' is not a concurrency limit"),
])
def test_queues_limit_rejects_a_bad_number_and_keeps_the_old_limit(envs, value, message):
    Queue.objects.create(environment_id="dev", name="cli-limited", concurrency_limit=4)
    with pytest.raises(CommandError, match=message):
        run_command("queues", "limit", "cli-limited", value)
    assert Queue.objects.get(environment_id="dev", name="cli-limited").concurrency_limit == 4


def test_queues_unknown_queue_names_it(envs):
    for args in (("pause", "ghost"), ("resume", "ghost"), ("limit", "ghost", "2")):
        with pytest.raises(CommandError, match="no queue named 'ghost'"):
            run_command("queues", *args)
    assert not Queue.objects.filter(name="ghost").exists()


# schedules


def create_schedule(*extra: str) -> str:
    return run_command("schedules", "create", "test-noop", "30 9 * * *", "--tz", "Europe/Paris",
                       "--dedup-key", "daily-report", "--payload", '{"report": "daily"}', *extra)


def test_schedules_create_stores_it_and_list_shows_the_next_run_in_its_time_zone(envs):
    out = create_schedule()
    schedule = Schedule.objects.get()
    assert (schedule.task_id, schedule.cron, schedule.timezone, schedule.dedup_key, schedule.payload) == (
        "test-noop", "30 9 * * *", "Europe/Paris", "daily-report", {"report": "daily"})
    assert out.startswith(f"created schedule {schedule.id} test-noop '30 9 * * *' Europe/Paris key=daily-report")
    assert " 09:30 CE" in out  # CET or CEST: local wall-clock time, not UTC
    assert run_command("schedules", "list").startswith(f"{schedule.id} test-noop '30 9 * * *' Europe/Paris")
    assert run_command("schedules", "list", "--env", "prod") == ""


def test_schedules_create_with_the_same_dedup_key_replaces_the_schedule(envs):
    create_schedule()
    out = run_command("schedules", "create", "test-noop", "0 18 * * *", "--dedup-key", "daily-report")
    schedule = Schedule.objects.get()
    assert out.startswith(f"replaced schedule {schedule.id} test-noop '0 18 * * *' UTC")
    assert (schedule.cron, schedule.timezone) == ("0 18 * * *", "UTC")


def test_schedules_next_prints_five_run_times_in_the_schedules_time_zone(envs):
    create_schedule()
    schedule = Schedule.objects.get()
    lines = run_command("schedules", "next", str(schedule.id)).splitlines()
    assert len(lines) == 5 and len(set(lines)) == 5
    assert all(line.endswith((" 09:30 CET", " 09:30 CEST")) for line in lines)


def test_schedules_update_changes_only_the_fields_given(envs):
    create_schedule()
    schedule = Schedule.objects.get()
    out = run_command("schedules", "update", str(schedule.id), "--cron", "0 7 * * 1-5", "--deactivate")
    assert f"updated schedule {schedule.id} test-noop '0 7 * * 1-5' Europe/Paris (inactive)" in out
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.timezone, schedule.active, schedule.payload, schedule.next_run_at) == (
        "0 7 * * 1-5", "Europe/Paris", False, {"report": "daily"}, None)
    assert "is inactive: it will not run" in run_command("schedules", "next", str(schedule.id))
    run_command("schedules", "update", str(schedule.id), "--activate", "--payload", '{"report": "weekly"}')
    schedule.refresh_from_db()
    assert schedule.active and schedule.payload == {"report": "weekly"} and schedule.next_run_at is not None


def test_schedules_delete_removes_it(envs):
    create_schedule()
    schedule = Schedule.objects.get()
    assert run_command("schedules", "delete", str(schedule.id)).startswith(f"schedule {schedule.id} deleted from dev")
    assert not Schedule.objects.exists()
    with pytest.raises(CommandError, match=f"no schedule {schedule.id} in environment 'dev'"):
        run_command("schedules", "next", str(schedule.id))


@pytest.mark.parametrize(("args", "message"), [
    (("test-noop", "61 * * * *"), "invalid cron expression '61 \\* \\* \\* \\*'"),
    (("test-noop", "0 * * *"), "invalid cron expression"),
    (("test-noop", "0 * * * *", "--tz", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    (("test-noop", "0 * * * *", "--payload", "{oops"), "payload is not valid JSON"),
    (("test-noop", "0 * * * *", "--payload", "[1, 2]"), "payload must be a JSON object"),
    (("no-such-task", "0 * * * *"), "unknown task 'no-such-task'"),
    (("test-noop", "0 * * * *", "--env", "nope"), "unknown environment 'nope'"),
])
def test_schedules_create_with_bad_input_names_the_problem_and_stores_nothing(envs, args, message):
    with pytest.raises(CommandError, match=message):
        run_command("schedules", "create", *args, "--dedup-key", "k")
    assert not Schedule.objects.exists()


def test_schedules_update_with_bad_input_keeps_the_schedule(envs):
    create_schedule()
    schedule = Schedule.objects.get()
    with pytest.raises(CommandError, match="unknown time zone 'Paris'"):
        run_command("schedules", "update", str(schedule.id), "--tz", "Paris")
    with pytest.raises(CommandError, match="nothing to change"):
        run_command("schedules", "update", str(schedule.id))
    with pytest.raises(CommandError, match="no schedule 999 in environment 'dev'"):
        run_command("schedules", "update", "999", "--cron", "0 * * * *")
    assert Schedule.objects.get().timezone == "Europe/Paris"


# roles


def test_roles_grant_replaces_the_role_revoke_takes_it_away_and_each_change_is_audited(envs, django_user_model):
    django_user_model.objects.create_user("ada", password="pw-long-enough-123")
    run_command("roles", "grant", "ada", "viewer", "--env", "prod")

    out = run_command("roles", "grant", "ada", "operator", "--env", "prod")

    assert "ada is now operator in prod (group stepwise:prod:operator)" in out
    ada = django_user_model.objects.get(username="ada")
    assert list(ada.groups.values_list("name", flat=True)) == ["stepwise:prod:operator"]
    assert may(ada, "prod", Capability.OPERATE) and not may(ada, "prod", Capability.ADMIN)
    assert not may(ada, "dev", Capability.READ)
    assert ada.has_perm("stepwise_runs.change_run") and not ada.has_perm("stepwise_tasks.change_secret")
    assert "prod         operator   ada" in run_command("roles", "list", "--env", "prod")
    assert "ada is no longer operator in prod" in run_command("roles", "revoke", "ada", "--env", "prod")
    assert not ada.groups.exists()
    assert list(AuditEntry.objects.order_by("id").values_list("via", "action", "target")) == [
        ("cli", "role.grant", "ada"), ("cli", "role.grant", "ada"), ("cli", "role.revoke", "ada")]


def test_roles_grant_to_an_unknown_user_or_environment_names_it_and_changes_nothing(envs, django_user_model):
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run_command("roles", "grant", "ghost", "admin", "--env", "prod")
    django_user_model.objects.create_user("ada", password="pw-long-enough-123")
    with pytest.raises(CommandError, match="unknown environment 'nope'"):
        run_command("roles", "grant", "ada", "admin", "--env", "nope")
    assert not django_user_model.objects.get(username="ada").groups.exists()
    assert not AuditEntry.objects.exists()
