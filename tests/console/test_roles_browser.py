"""Roles in a real browser: a viewer's pages offer no action; an admin creates a scoped key and reads the audit log."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import ApiKey
from tests.console.conftest import PASSWORD, screenshot
from tests.roles import grant

pytestmark = pytest.mark.xdist_group("browser")
expect.set_options(timeout=20_000)


def sign_in(browser, console_url: str, username: str):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=console_url)
    tab = context.new_page()
    tab.goto("/login/")
    tab.fill("input[name=username]", username)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{console_url}/")
    return tab


def test_a_viewer_sees_the_run_without_any_action(live, console_url, browser):
    val = User.objects.create_user("val", password=PASSWORD)
    grant(val, "prod", "viewer")
    run = run_trigger(task_id="test-noop", payload={"orderId": "9"}, options=TriggerOptions(environment="prod"))[0]
    tab = sign_in(browser, console_url, "val")

    tab.goto(f"/runs/{run.id}/")
    expect(tab.locator("h1")).to_contain_text("test-noop")
    expect(tab.get_by_role("button", name="Retry")).to_have_count(0)
    expect(tab.locator("#replay")).to_have_count(0)
    expect(tab.get_by_role("link", name="Secrets")).to_have_count(0)
    screenshot(tab, "roles-viewer-run")
    tab.goto("/queues/?env=prod")
    expect(tab.locator('tr[data-queue="task/test-noop"]')).to_be_visible()
    expect(tab.get_by_role("button", name="Pause")).to_have_count(0)
    screenshot(tab, "roles-viewer-queues")
    tab.context.close()


def test_an_admin_creates_a_key_with_chosen_scopes_and_finds_it_in_the_audit_log(live, console_url, browser):
    ada = User.objects.create_user("ada", password=PASSWORD)
    grant(ada, "prod", "admin")
    tab = sign_in(browser, console_url, "ada")

    tab.goto("/api-keys/?env=prod")
    tab.fill("input[name=name]", "deployer")
    tab.get_by_label("trigger: runs and events").uncheck()
    tab.get_by_role("button", name="Create key").click()
    expect(tab.locator("body")).to_contain_text("sk_prod_")
    assert ApiKey.objects.get(name="deployer").scopes == ["read"]
    tab.goto("/api-keys/?env=prod")
    screenshot(tab, "roles-api-keys")
    tab.goto("/audit/?env=prod")
    expect(tab.locator(".audit-table")).to_contain_text("api_key.create")
    expect(tab.locator(".audit-table")).to_contain_text("ada")
    screenshot(tab, "roles-audit")
    tab.goto("/members/?env=prod")
    expect(tab.locator(".members-table")).to_contain_text("ada")
    screenshot(tab, "roles-members")
    tab.context.close()
