"""Queues, schedules, secrets and API keys pages in a real browser, against uvicorn and real workers."""
from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from stepwise.runs.triggers import run_trigger
from stepwise.tasks.models import ApiKey, Queue, Schedule, Secret
from stepwise.tasks.schedules import schedule_upsert
from stepwise.tasks.secrets import secret_set, secrets_for_environment
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import screenshot
from tests.waiting import wait_finished

pytestmark = pytest.mark.xdist_group("browser")
expect.set_options(timeout=20_000)

QUEUE = "task/test-sleepy-steps"


def queue_row(tab, name: str):
    return tab.locator(f'tr[data-queue="{name}"]')


def test_queue_counts_update_live_while_it_is_paused_limited_and_resumed(page):
    wait_finished(run_trigger(task_id="test-sleepy-steps", payload={"steps": 0})[0].id)
    wait_finished(run_trigger(task_id="test-noop", payload={})[0].id)
    page.goto("/queues/")
    page.evaluate("window.stillTheSamePage = true")
    row = queue_row(page, QUEUE)
    executing, queued = row.locator('[data-count="executing"]'), row.locator('[data-count="queued"]')
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    expect(queued).to_have_text("0")

    row.get_by_role("button", name="Pause").click()
    expect(page.locator("#toasts")).to_contain_text(f"Queue {QUEUE} paused")
    expect(row).to_have_attribute("data-paused", "1")
    expect(row.locator(".badge", has_text="Paused")).to_be_visible()
    assert Queue.objects.get(environment_id="dev", name=QUEUE).paused

    # Each run holds the queue's one slot for ~3 s, long enough to see "1 executing, 2 queued" on a busy machine.
    runs = [run_trigger(task_id="test-sleepy-steps", payload={"steps": 2, "sleep": 1.5})[0] for _ in range(3)]
    expect(queued).to_have_text("3")
    expect(executing).to_have_text("0")

    row.locator("input[name=concurrency_limit]").fill("1")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text(f"Queue {QUEUE} is now 1 at a time per key.")
    assert Queue.objects.get(environment_id="dev", name=QUEUE).concurrency_limit == 1
    expect(row.locator(".meter")).to_be_visible()
    screenshot(page, "queues-paused")

    row.get_by_role("button", name="Resume").click()
    expect(row).to_have_attribute("data-paused", "0")
    expect(executing).to_have_text("1")
    expect(queued).to_have_text("2")
    screenshot(page, "queues-running")
    for run in runs:
        wait_finished(run.id, timeout=60)
    expect(queued).to_have_text("0")
    expect(executing).to_have_text("0")
    assert page.evaluate("window.stillTheSamePage") is True

    row.locator("input[name=concurrency_limit]").fill("")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text(f"Queue {QUEUE} is now unlimited.")
    expect(row.locator(".meter")).to_be_hidden()
    assert Queue.objects.get(environment_id="dev", name=QUEUE).concurrency_limit is None


def test_schedule_is_created_with_field_errors_first_then_shows_its_next_five_runs(page):
    environments_ensure()
    schedule_upsert(environment="dev", task_id="test-noop", cron="0 * * * *", timezone="Europe/Paris",
                    dedup_key="declared:test-noop", declared=True)
    page.goto("/schedules/")
    form = page.locator("#new-schedule form")
    form.locator("select[name=task_id]").select_option("test-sleepy-steps")
    form.locator("input[name=cron]").fill("61 9 * * 1-5")
    form.locator("input[name=timezone]").fill("America/New_York")
    form.locator("input[name=dedup_key]").fill("weekday-report")
    form.locator("textarea[name=payload]").fill('{"steps": 1, "sleep": 0.1}')
    form.get_by_role("button", name="Create schedule").click()

    cron_field = page.locator(".field.has-error", has=page.locator("input[name=cron]"))
    expect(cron_field.locator(".field-error")).to_contain_text("invalid cron expression '61 9 * * 1-5'")
    expect(page.locator("input[name=timezone]")).to_have_value("America/New_York")
    assert not Schedule.objects.exclude(declared=True).exists()
    screenshot(page, "schedules-error")

    page.locator("input[name=cron]").fill("0 9 * * 1-5")
    page.get_by_role("button", name="Create schedule").click()

    expect(page).to_have_url(re.compile(r"/schedules/\?env=dev$"))
    expect(page.locator("#toasts")).to_contain_text("Created schedule 'weekday-report' of test-sleepy-steps.")
    schedule = Schedule.objects.get(dedup_key="weekday-report")
    row = page.locator(f"#schedule-{schedule.id}")
    expect(row.locator(".next-runs li")).to_have_count(5)
    for item in row.locator(".next-runs li").all_inner_texts():
        assert re.fullmatch(r"\w{3} \w{3} \d+, 09:00 E[SD]T", item), item
    expect(row).to_contain_text("America/New_York")
    expect(page.locator("tr", has_text="declared:test-noop")).to_contain_text("from code")
    screenshot(page, "schedules")

    row.get_by_role("button", name="Disable").click()
    expect(row.locator(".badge")).to_have_text("Disabled")
    expect(row.locator(".next-runs")).to_contain_text("none while disabled")
    row.locator("summary", has_text="Edit").click()
    row.locator("input[name=cron]").fill("15 18 * * *")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text("now runs at '15 18 * * *' (America/New_York)")
    assert Schedule.objects.get(id=schedule.id).cron == "15 18 * * *"

    row.locator("summary", has_text="Delete").click()
    expect(row.locator(".confirm .pop-panel")).to_contain_text("Delete weekday-report?")
    screenshot(page, "schedules-delete-confirm")
    row.locator(".confirm .pop-panel").get_by_role("button", name="Delete").click()
    expect(page.locator("#toasts")).to_contain_text("Schedule 'weekday-report' deleted")
    expect(page.locator(f"#schedule-{schedule.id}")).to_have_count(0)
    assert not Schedule.objects.filter(id=schedule.id).exists()


def test_secret_is_set_shown_masked_and_deleted(page):
    environments_ensure()
    secret_set(environment="prod", name="STRIPE_KEY", value="sk_live_not_a_real_one")
    canary = f"canary-{uuid.uuid4().hex}"
    page.goto("/secrets/?env=prod")
    expect(page.locator(".env-tabs a[aria-current=page]")).to_have_text("prod")
    form = page.locator("#set-secret form")

    form.locator("input[name=name]").fill("9LIVES")
    form.locator("input[name=value]").fill(canary)
    form.get_by_role("button", name="Save secret").click()
    expect(page.locator(".field-error")).to_contain_text("letters, digits and underscores")
    expect(page.locator("input[name=value]")).to_have_value("")
    assert canary not in page.content()
    screenshot(page, "secrets-error")

    page.locator("input[name=name]").fill("DATABASE_PASSWORD")
    page.locator("input[name=value]").fill(canary)
    expect(page.locator("input[name=value]")).to_have_attribute("type", "password")
    page.get_by_role("button", name="Save secret").click()

    expect(page.locator("#toasts")).to_contain_text("Saved secret DATABASE_PASSWORD in prod.")
    row = page.locator("#secret-DATABASE_PASSWORD")
    expect(row.locator(".mask")).to_have_text("••••")
    expect(page.locator("input[name=value]")).to_have_value("")
    assert canary not in page.content()
    assert secrets_for_environment("prod")["DATABASE_PASSWORD"] == canary
    screenshot(page, "secrets")

    page.locator(".env-tabs a", has_text="dev").click()
    expect(page.locator("#secret-DATABASE_PASSWORD")).to_have_count(0)
    page.go_back()
    row = page.locator("#secret-DATABASE_PASSWORD")
    row.locator("summary", has_text="Delete").click()
    row.locator(".pop-panel").get_by_role("button", name="Cancel").click()
    expect(row.locator(".pop-panel")).to_be_hidden()
    row.locator("summary", has_text="Delete").click()
    row.locator(".pop-panel").get_by_role("button", name="Delete").click()
    expect(page.locator("#toasts")).to_contain_text("Deleted secret DATABASE_PASSWORD from prod.")
    expect(page.locator("#secret-DATABASE_PASSWORD")).to_have_count(0)
    assert list(Secret.objects.values_list("name", flat=True)) == ["STRIPE_KEY"]


def test_api_key_is_shown_once_copied_then_only_its_prefix_and_revoked(page):
    environments_ensure()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/api-keys/")

    page.locator("#create-api-key input[name=name]").fill("ci-deploys")
    page.get_by_role("button", name="Create key").click()

    expect(page.locator("h1")).to_have_text("API key created")
    expect(page.locator(".callout-warn")).to_contain_text("Copy it now: it won't be shown again.")
    secret = page.locator("#new-api-key").inner_text()
    assert re.fullmatch(r"sk_dev_[\w-]{40,}", secret)
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#toasts")).to_contain_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "api-key-created")

    page.reload()
    expect(page.locator("h1")).to_have_text("API keys")
    key = ApiKey.objects.get()
    assert ApiKey.objects.count() == 1  # the reload did not post again
    row = page.locator(f"#api-key-{key.id}")
    expect(row.locator(".key-prefix")).to_have_text(f"{key.prefix}…")
    assert secret not in page.content()
    screenshot(page, "api-keys")

    row.locator("summary", has_text="Revoke").click()
    row.locator(".pop-panel").get_by_role("button", name="Revoke").click()
    expect(page.locator("#toasts")).to_contain_text("Revoked API key ci-deploys")
    expect(page.locator(f"#api-key-{key.id} .badge")).to_have_text("Revoked")
    screenshot(page, "api-keys-revoked")
    assert ApiKey.objects.get().revoked_at is not None
