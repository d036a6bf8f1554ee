"""The run page's Reset key button in a real browser."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from stepwise.runs.models import Run
from stepwise.runs.triggers import TriggerOptions, run_trigger
from tests.console.conftest import screenshot

pytestmark = pytest.mark.xdist_group("browser")
expect.set_options(timeout=20_000)


def test_the_reset_key_button_frees_the_key_and_the_page_shows_it_reset(page):
    # Delayed: no worker starts it, so the page stays as it is while the test looks at it.
    run = run_trigger(task_id="test-idem-echo", payload={"orderId": "A-17"},
                      options=TriggerOptions(idempotency_key="order-A-17", delay=3600, tags=["vip"]))[0]

    page.goto(f"/runs/{run.id}/")
    fact = page.locator("#fact-idempotency-key")
    expect(fact).to_contain_text("order-A-17")
    expect(fact).to_contain_text("global scope")
    expect(fact.locator(".badge")).to_have_text("Active")
    screenshot(page, "run-idempotency-key-active")

    fact.locator("summary", has_text="Reset key").click()  # it asks first
    expect(fact.locator(".pop-panel")).to_contain_text("The next trigger with it starts a new run")
    fact.get_by_role("button", name="Reset key").click()

    expect(page.locator("#toasts")).to_contain_text("Idempotency key 'order-A-17' reset")
    expect(page.locator("#fact-idempotency-key .badge")).to_have_text("Reset")
    expect(page.locator("#fact-idempotency-key button")).to_have_count(0)
    assert Run.objects.get(id=run.id).idempotency_key_state == "reset"
    screenshot(page, "run-idempotency-key-reset")
