"""Payloads hidden from viewers, in a real browser: the run page's inspectors and streams show the placeholder."""
from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from stepwise.tasks.redaction import HIDDEN_FROM_VIEWERS
from tests.console.conftest import PASSWORD, console_served, screenshot
from tests.console.test_roles_browser import sign_in
from tests.ops.test_payloads_hidden import run_holding
from tests.roles import grant

pytestmark = pytest.mark.xdist_group("browser")
expect.set_options(timeout=20_000)


@pytest.fixture
def console_hiding_prod(live):
    """The console served with prod's payloads hidden from viewers, as a deployment would set it."""
    with console_served(STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS="prod") as url:
        yield url


def test_a_viewer_s_run_page_shows_the_placeholder_and_never_the_values(live, console_hiding_prod, browser):
    canary = f"canary-{uuid.uuid4().hex}"
    run = run_holding(canary, environment="prod")
    User.objects.create_user("val", password=PASSWORD)
    grant(User.objects.get(username="val"), "prod", "viewer")
    tab = sign_in(browser, console_hiding_prod, "val")

    tab.goto(f"/runs/{run.id}/")

    expect(tab.locator("h1")).to_contain_text("test-noop")
    expect(tab.locator("#streams-card .stream-text")).to_have_text(HIDDEN_FROM_VIEWERS)
    expect(tab.get_by_text(HIDDEN_FROM_VIEWERS).first).to_be_visible()
    tab.wait_for_load_state("networkidle")  # the timeline and inspectors fill in from their JSON
    assert canary not in tab.content()
    screenshot(tab, "payloads-hidden-viewer-run")
    tab.context.close()
