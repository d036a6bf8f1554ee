"""Queues, schedules, secrets and API keys pages: render, act through their services, refuse bad input."""
from __future__ import annotations

import re
import uuid

import pytest

from stepwise.runs.triggers import run_trigger
from stepwise.tasks.apikeys import api_key_authenticate, api_key_create
from stepwise.tasks.models import ApiKey, Queue, Schedule, Secret
from stepwise.tasks.schedules import schedule_upsert
from stepwise.tasks.secrets import secret_set, secrets_for_environment
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import csrf_post

pytestmark = pytest.mark.django_db

PAGES = ["/queues/", "/queues/counts.json", "/schedules/", "/schedules/?env=prod", "/secrets/", "/secrets/?env=prod",
         "/api-keys/", "/api-keys/?env=prod"]
AS_JSON = {"HTTP_ACCEPT": "application/json"}
SCHEDULE = {"env": "dev", "task_id": "test-noop", "cron": "0 9 * * *", "timezone": "Europe/Paris",
            "dedup_key": "morning", "payload": '{"report": "daily"}', "active": "on"}


@pytest.fixture(autouse=True)
def environments(db):
    environments_ensure()


@pytest.fixture
def queue(db) -> Queue:
    """The queue of test-noop, with two queued runs (no worker runs here)."""
    for _ in range(2):
        run_trigger(task_id="test-noop", payload={})
    return Queue.objects.get(environment_id="dev", name="task/test-noop")


def _schedule(**fields) -> Schedule:
    values = {"environment": "dev", "task_id": "test-noop", "cron": "*/5 * * * *", "dedup_key": "every-5", **fields}
    return schedule_upsert(**values)[0]


def _everything_state() -> tuple:
    return (list(Queue.objects.values_list("name", "paused", "concurrency_limit")),
            list(Schedule.objects.values_list("id", "cron", "active")),
            list(Secret.objects.values_list("name", "updated_at")),
            list(ApiKey.objects.values_list("id", "revoked_at")))


def _actions(queue: Queue) -> list[tuple[str, dict]]:
    schedule = _schedule()
    key = api_key_create(environment="dev", name="ci").key
    secret_set(environment="dev", name="TOKEN", value="t0ken-value")
    return [
        (f"/queues/{queue.name}/limit/", {"concurrency_limit": "3"}),
        (f"/queues/{queue.name}/pause/", {}),
        (f"/queues/{queue.name}/resume/", {}),
        ("/schedules/", {**SCHEDULE, "dedup_key": "new-one"}),
        (f"/schedules/{schedule.id}/", {"env": "dev", "active": "0"}),
        (f"/schedules/{schedule.id}/delete/", {"env": "dev"}),
        ("/secrets/", {"env": "dev", "name": "OTHER", "value": "x"}),
        ("/secrets/TOKEN/delete/", {"env": "dev"}),
        ("/api-keys/", {"env": "dev", "name": "another"}),
        (f"/api-keys/{key.id}/revoke/", {"env": "dev"}),
    ]


@pytest.mark.parametrize("url", PAGES)
def test_admin_pages_render_for_a_signed_in_user(signed_in, url):
    assert signed_in.get(url).status_code == 200


@pytest.mark.parametrize("url", PAGES)
def test_admin_pages_send_anonymous_visitors_to_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_admin_actions_by_anonymous_visitors_change_nothing(client, queue):
    actions = _actions(queue)
    before = _everything_state()
    for url, data in actions:
        response = client.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert _everything_state() == before


def test_admin_actions_without_a_csrf_token_are_refused(signed_in, queue):
    actions = _actions(queue)
    before = _everything_state()
    for url, data in actions:
        assert signed_in.post(url, data).status_code == 403, url
    assert _everything_state() == before


def test_configuration_pages_are_linked_from_the_navigation(signed_in):
    for url in ("/queues/", "/schedules/", "/secrets/", "/api-keys/"):
        page = signed_in.get(url).content.decode()
        assert f'href="{url}" aria-current="page"' in page
        assert "nav-soon" not in page


def test_unknown_environment_is_not_found(signed_in):
    assert signed_in.get("/secrets/?env=nowhere").status_code == 404


# Queues


def test_queues_page_shows_limit_paused_state_and_counts(signed_in, queue):
    Queue.objects.filter(name=queue.name).update(concurrency_limit=4, paused=True)

    page = signed_in.get("/queues/").content.decode()
    row = page[page.index(f'data-queue="{queue.name}"'):]
    row = row[:row.index("</tr>")]
    assert 'data-paused="1"' in row
    assert 'data-count="queued">2<' in row and 'data-count="executing">0<' in row
    assert 'name="concurrency_limit"' in row and 'value="4"' in row

    counts = signed_in.get("/queues/counts.json").json()["queues"]
    assert {"name": queue.name, "concurrency_limit": 4, "paused": True, "executing": 0, "queued": 2,
            "total_limit": None, "rate_limit": None} in counts


def test_queue_limit_is_set_and_removed_from_the_page(signed_in, queue):
    response = csrf_post(signed_in, f"/queues/{queue.name}/limit/", {"concurrency_limit": "5"})
    assert response.status_code == 302 and response["Location"] == "/queues/?env=dev"
    assert Queue.objects.get(environment_id="dev", name=queue.name).concurrency_limit == 5
    assert "is now 5 at a time per key" in signed_in.get("/queues/").content.decode()

    answer = csrf_post(signed_in, f"/queues/{queue.name}/limit/", {"concurrency_limit": ""}, **AS_JSON)
    assert answer.status_code == 200 and answer.json()["message"] == "Queue task/test-noop is now unlimited."
    assert Queue.objects.get(environment_id="dev", name=queue.name).concurrency_limit is None


def test_a_total_and_a_rate_limit_are_set_from_the_page_and_a_bad_rate_changes_nothing(signed_in, queue):
    answer = csrf_post(signed_in, f"/queues/{queue.name}/limit/",
                       {"concurrency_limit": "2", "total_limit": "10", "rate_limit": "5/s"}, **AS_JSON)
    assert answer.status_code == 200, answer.content
    assert answer.json()["message"] == f"Queue {queue.name} is now 2 at a time per key, 10 in all, rate 5/s."
    stored = Queue.objects.get(environment_id="dev", name=queue.name)
    assert (stored.concurrency_limit, stored.total_limit, stored.rate_limit, stored.rate_period) == (2, 10, 5, 1.0)
    row = signed_in.get("/queues/").content.decode()
    assert 'name="total_limit"' in row and 'value="10"' in row and 'value="5/s"' in row

    refused = csrf_post(signed_in, f"/queues/{queue.name}/limit/",
                        {"concurrency_limit": "3", "total_limit": "", "rate_limit": "fast"}, **AS_JSON)
    assert refused.status_code == 400 and "not a rate limit: 'fast'" in refused.json()["message"]
    kept = Queue.objects.get(environment_id="dev", name=queue.name)
    assert (kept.concurrency_limit, kept.total_limit, kept.rate_limit) == (2, 10, 5)


@pytest.mark.parametrize(("value", "message"), [("0", "from 1 to 10000"), ("10001", "from 1 to 10000"),
                                                ("two", "whole number")])
def test_bad_queue_limits_are_refused_with_a_message(signed_in, queue, value, message):
    Queue.objects.filter(name=queue.name).update(concurrency_limit=7)

    answer = csrf_post(signed_in, f"/queues/{queue.name}/limit/", {"concurrency_limit": value}, **AS_JSON)

    assert answer.status_code == 400 and message in answer.json()["message"]
    assert Queue.objects.get(environment_id="dev", name=queue.name).concurrency_limit == 7


def test_pause_and_resume_a_queue_and_an_unknown_queue_is_not_found(signed_in, queue):
    paused = csrf_post(signed_in, f"/queues/{queue.name}/pause/", **AS_JSON)
    assert paused.status_code == 200 and "paused" in paused.json()["message"]
    assert Queue.objects.get(environment_id="dev", name=queue.name).paused is True
    assert signed_in.get("/queues/counts.json").json()["queues"][0]["paused"] is True

    resumed = csrf_post(signed_in, f"/queues/{queue.name}/resume/")
    assert resumed.status_code == 302
    assert Queue.objects.get(environment_id="dev", name=queue.name).paused is False

    missing = csrf_post(signed_in, "/queues/task/nope/pause/", **AS_JSON)
    assert missing.status_code == 404 and "no queue named 'task/nope'" in missing.json()["message"]


def test_queues_page_and_counts_take_fixed_queries(signed_in, queue, django_assert_num_queries):
    run_trigger(task_id="test-abort", payload={})
    # session, user, the environments (tabs), queues, their counts
    with django_assert_num_queries(5):
        signed_in.get("/queues/")
    with django_assert_num_queries(4):
        signed_in.get("/queues/counts.json")


# Schedules


def test_created_schedule_lists_its_next_five_runs_in_its_time_zone(signed_in):
    response = csrf_post(signed_in, "/schedules/", SCHEDULE)

    assert response.status_code == 302 and response["Location"] == "/schedules/?env=dev"
    schedule = Schedule.objects.get()
    assert (schedule.task_id, schedule.cron, schedule.timezone) == ("test-noop", "0 9 * * *", "Europe/Paris")
    assert schedule.payload == {"report": "daily"} and schedule.active and not schedule.declared
    page = signed_in.get("/schedules/?env=dev").content.decode()
    assert "Created schedule &#x27;morning&#x27; of test-noop." in page
    row = page[page.index(f'id="schedule-{schedule.id}"'):]
    tick = r'<li><time datetime="[^"]+">(\w{3} \w{3} \d+, \d\d:\d\d)</time> <span class="muted">(\w+)</span>'
    runs = re.findall(tick, row[:row.index("</tr>")])
    assert len(runs) == 5
    assert all(time.endswith("09:00") and zone in ("CET", "CEST") for time, zone in runs)
    assert "Europe/Paris" in row


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cron", "61 * * * *", "invalid cron expression &#x27;61 * * * *&#x27;"),
    ("cron", "every day", "expected 5 fields"),
    ("timezone", "Mars/Olympus", "unknown time zone &#x27;Mars/Olympus&#x27;"),
    ("payload", '{"report": ', "payload is not valid JSON"),
    ("payload", "[1, 2]", "the payload must be a JSON object"),
    ("task_id", "no-such-task", "Select a valid choice"),
    ("dedup_key", "declared:test-noop", "belong to schedules declared in code"),
    ("dedup_key", "", "This field is required"),
])
def test_bad_schedule_input_is_shown_next_to_its_field_and_nothing_is_stored(signed_in, field, value, message):
    response = csrf_post(signed_in, "/schedules/", {**SCHEDULE, field: value})

    assert response.status_code == 400
    page = response.content.decode()
    field_html = page[page.index(f'for="id_{field}"'):]
    assert message in field_html[:field_html.index("</div>")]
    assert re.search(r'class="field[a-z -]* has-error"', page)
    assert Schedule.objects.count() == 0


def test_schedules_belong_to_the_environment_they_were_created_in(signed_in):
    csrf_post(signed_in, "/schedules/", {**SCHEDULE, "env": "prod", "dedup_key": "prod-only"})

    assert Schedule.objects.get().environment_id == "prod"
    assert "prod-only" in signed_in.get("/schedules/?env=prod").content.decode()
    assert "prod-only" not in signed_in.get("/schedules/?env=dev").content.decode()


def test_schedule_is_disabled_enabled_and_given_a_new_cron(signed_in):
    schedule = _schedule()
    url = f"/schedules/{schedule.id}/"

    csrf_post(signed_in, url, {"env": "dev", "active": "0"})
    schedule.refresh_from_db()
    assert not schedule.active and schedule.next_run_at is None
    assert "none while disabled" in signed_in.get("/schedules/").content.decode()

    csrf_post(signed_in, url, {"env": "dev", "active": "1"})
    assert Schedule.objects.get(id=schedule.id).active

    response = csrf_post(signed_in, url, {"env": "dev", "cron": "30 6 * * 1", "timezone": "Asia/Tokyo"})
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.timezone) == ("30 6 * * 1", "Asia/Tokyo")


def test_bad_schedule_edits_are_refused_with_a_message(signed_in):
    schedule = _schedule()
    url = f"/schedules/{schedule.id}/"

    bad_cron = csrf_post(signed_in, url, {"env": "dev", "cron": "* * *", "timezone": "UTC"}, **AS_JSON)
    assert bad_cron.status_code == 400 and "invalid cron expression" in bad_cron.json()["message"]
    nothing = csrf_post(signed_in, url, {"env": "dev"}, **AS_JSON)
    assert nothing.status_code == 400 and "nothing to change" in nothing.json()["message"]
    elsewhere = csrf_post(signed_in, url, {"env": "prod", "active": "0"}, **AS_JSON)
    assert elsewhere.status_code == 404
    assert Schedule.objects.get(id=schedule.id).cron == "*/5 * * * *"
    assert Schedule.objects.get(id=schedule.id).active


def test_schedule_is_deleted(signed_in):
    schedule = _schedule()

    response = csrf_post(signed_in, f"/schedules/{schedule.id}/delete/", {"env": "dev"})

    assert response.status_code == 302
    assert not Schedule.objects.exists()
    assert "Schedule &#x27;every-5&#x27; deleted" in signed_in.get("/schedules/").content.decode()


def test_declared_schedules_are_marked_and_cannot_be_changed_here(signed_in):
    declared = _schedule(dedup_key="declared:test-noop", declared=True)

    page = signed_in.get("/schedules/").content.decode()
    row = page[page.index(f'id="schedule-{declared.id}"'):]
    row = row[:row.index("</tr>")]
    assert "from code" in row and "managed in code" in row
    assert "/delete/" not in row
    for url, data in ((f"/schedules/{declared.id}/delete/", {"env": "dev"}),
                      (f"/schedules/{declared.id}/", {"env": "dev", "active": "0"})):
        answer = csrf_post(signed_in, url, data, **AS_JSON)
        assert answer.status_code == 409 and "declared in code" in answer.json()["message"]
    assert Schedule.objects.get(id=declared.id).active


def test_schedules_page_takes_fixed_queries(signed_in, django_assert_num_queries):
    _schedule()
    # session, user, every environment (the tabs, and the selected one among them), schedules
    with django_assert_num_queries(4):
        signed_in.get("/schedules/")
    for n in range(3):
        _schedule(dedup_key=f"more-{n}")
    with django_assert_num_queries(4):
        signed_in.get("/schedules/")


# Secrets


def test_saved_secret_is_listed_masked_and_its_value_never_appears_again(signed_in):
    canary = f"canary-{uuid.uuid4().hex}"

    response = csrf_post(signed_in, "/secrets/", {"env": "prod", "name": "DB_PASSWORD", "value": canary})

    assert response.status_code == 302 and response["Location"] == "/secrets/?env=prod"
    assert canary not in response.content.decode()
    assert secrets_for_environment("prod") == {"DB_PASSWORD": canary}
    assert canary.encode() not in bytes(Secret.objects.get().ciphertext)
    page = signed_in.get("/secrets/?env=prod").content.decode()
    assert "DB_PASSWORD" in page and "••••" in page and "Saved secret DB_PASSWORD in prod." in page
    for url in PAGES + ["/", "/tasks/", "/waitpoints/"]:
        assert canary not in signed_in.get(url).content.decode(), url

    csrf_post(signed_in, "/secrets/", {"env": "prod", "name": "DB_PASSWORD", "value": "replaced"})
    assert secrets_for_environment("prod") == {"DB_PASSWORD": "replaced"}


@pytest.mark.parametrize(("name", "message"), [("1BAD", "letters, digits and underscores"),
                                               ("has space", "letters, digits and underscores"),
                                               ("", "This field is required")])
def test_bad_secret_is_refused_and_the_form_never_echoes_the_value(signed_in, name, message):
    canary = f"canary-{uuid.uuid4().hex}"

    response = csrf_post(signed_in, "/secrets/", {"env": "dev", "name": name, "value": canary})

    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and 'type="password"' in page
    assert canary not in page
    assert not Secret.objects.exists()


def test_secret_without_a_value_or_in_an_unknown_environment_is_refused(signed_in):
    empty = csrf_post(signed_in, "/secrets/", {"env": "dev", "name": "EMPTY", "value": ""})
    assert empty.status_code == 400 and "This field is required" in empty.content.decode()
    unknown = csrf_post(signed_in, "/secrets/", {"env": "nowhere", "name": "X", "value": "v"})
    assert unknown.status_code == 404
    assert not Secret.objects.exists()


def test_secret_is_deleted(signed_in):
    secret_set(environment="dev", name="OLD_TOKEN", value="old")

    response = csrf_post(signed_in, "/secrets/OLD_TOKEN/delete/", {"env": "dev"})

    assert response.status_code == 302
    assert not Secret.objects.exists()
    missing = csrf_post(signed_in, "/secrets/OLD_TOKEN/delete/", {"env": "dev"}, **AS_JSON)
    assert missing.status_code == 404 and "no secret 'OLD_TOKEN'" in missing.json()["message"]


def test_secrets_page_takes_fixed_queries(signed_in, django_assert_num_queries):
    for name in ("A", "B", "C"):
        secret_set(environment="dev", name=name, value="v")
    # session, user, every environment (the tabs, and the selected one among them), secrets
    with django_assert_num_queries(4):
        signed_in.get("/secrets/")


# API keys


def test_new_api_key_is_shown_once_then_only_its_prefix(signed_in):
    response = csrf_post(signed_in, "/api-keys/", {"env": "prod", "name": "ci-deploys"})

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    secret = re.search(r'<code id="new-api-key">(sk_prod_[^<]+)</code>', page).group(1)
    assert page.count(secret) == 1
    assert "Copy it now: it won't be shown again." in page
    key = ApiKey.objects.get()
    assert (key.name, key.environment_id) == ("ci-deploys", "prod") and secret.startswith(key.prefix)
    assert api_key_authenticate(secret).id == key.id

    listing = signed_in.get("/api-keys/?env=prod").content.decode()
    assert secret not in listing
    assert f"{key.prefix}…" in listing and "ci-deploys" in listing
    for url in PAGES:
        assert secret not in signed_in.get(url).content.decode(), url


def test_api_key_without_a_name_is_refused(signed_in):
    response = csrf_post(signed_in, "/api-keys/", {"env": "dev", "name": "   "})

    assert response.status_code == 400 and "This field is required" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_api_key_is_revoked_and_then_refused(signed_in):
    created = api_key_create(environment="dev", name="laptop")

    response = csrf_post(signed_in, f"/api-keys/{created.key.id}/revoke/", {"env": "dev"})

    assert response.status_code == 302 and response["Location"] == "/api-keys/?env=dev"
    assert ApiKey.objects.get().revoked_at is not None
    assert api_key_authenticate(created.secret) is None
    page = signed_in.get("/api-keys/").content.decode()
    row = page[page.index(f'id="api-key-{created.key.id}"'):]
    assert "Revoked" in row[:row.index("</tr>")] and "/revoke/" not in row[:row.index("</tr>")]
    elsewhere = csrf_post(signed_in, f"/api-keys/{created.key.id}/revoke/", {"env": "prod"}, **AS_JSON)
    assert elsewhere.status_code == 404


def test_api_keys_page_takes_fixed_queries(signed_in, django_assert_num_queries):
    for name in ("a", "b", "c"):
        api_key_create(environment="dev", name=name)
    # session, user, every environment (the tabs, and the selected one among them), keys
    with django_assert_num_queries(4):
        signed_in.get("/api-keys/")
