"""The dependency-free JS client in a real browser: the example page follows a run with a public token."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

import examples.realtime  # noqa: F401  (registers summarise-document in this process)
from stepwise.runs.realtime.tokens import public_token_create
from stepwise.runs.triggers import run_trigger
from tests.console.conftest import browser, screenshot  # noqa: F401  (the module's browser)
from tests.waiting import wait_finished


@pytest.fixture
def tab(realtime, browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 900, "height": 720}, base_url=realtime)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def test_the_example_page_shows_a_runs_progress_and_streamed_summary_to_its_end(tab):
    run, _ = run_trigger(task_id="summarise-document", payload={"sections": 3})
    token = public_token_create(environment="dev", scopes={"runs": [run.id]})[0]
    tab.goto(f"/static/stepwise/example.html#run={run.id}&token={token}")
    expect(tab.locator("#status")).to_have_text("COMPLETED", timeout=60_000)
    expect(tab.locator("#percent")).to_have_text("100%")
    expect(tab.locator("#heading")).to_have_text("Your summary is ready")
    summary = wait_finished(run.id).output["summary"]
    expect(tab.locator("#summary")).to_have_text(summary + " ")
    screenshot(tab, "realtime-example-page")


def test_the_example_page_says_why_a_token_is_refused(tab):
    run, _ = run_trigger(task_id="test-noop", payload={})
    elsewhere = public_token_create(environment="dev", scopes={"runs": ["run_other"]})[0]
    tab.goto(f"/static/stepwise/example.html#run={run.id}&token={elsewhere}")
    expect(tab.locator("#error")).to_have_text(
        f"this token may not read run '{run.id}': it is outside the token's scopes (HTTP 403)")
