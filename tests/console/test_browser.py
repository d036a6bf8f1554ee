"""The console in a real browser: headless Chromium against uvicorn, with real Celery workers."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from stepwise.runs.models import Run
from stepwise.runs.triggers import TriggerOptions, run_trigger
from tests.console.conftest import SCREENSHOTS, screenshot
from tests.factories import ELSEWHERE, run_build, run_pinned_elsewhere
from tests.waiting import wait_finished

pytestmark = pytest.mark.xdist_group("browser")
# The suite shares two cores with real workers; give every expectation room under load.
expect.set_options(timeout=20_000)

RUN_URL = re.compile(r"/runs/(run_[0-9a-z]+)/$")


def status_badge(tab):
    return tab.locator("#run-status .badge")


def step_rows(tab):
    return tab.locator('.tl-row[data-span-id^="step-"]')


def cancel_run(tab):
    """Cancel the run of the page: the button, then its confirmation."""
    tab.locator("#cancel-confirm summary").click()
    tab.locator("#cancel-form button").click()


def test_a_run_triggered_from_the_test_form_completes_live_on_its_timeline(page):
    page.goto("/tasks/")
    page.fill("#payload-test-sleepy-steps", '{"steps": 4, "sleep": 0.5}')
    page.locator("#task-test-sleepy-steps button[type=submit]").click()
    page.wait_for_url(RUN_URL)
    run_id = RUN_URL.search(page.url).group(1)
    page.evaluate("window.stillTheSamePage = true")

    expect(page.locator("#toasts")).to_contain_text(f"Triggered test-sleepy-steps as {run_id}")
    expect(step_rows(page).first).to_be_visible(timeout=30_000)
    expect(status_badge(page)).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    expect(step_rows(page)).to_have_count(4)
    expect(page.locator('.tl-row[data-span-id="attempt-1"]')).to_have_attribute("data-status", "COMPLETED")
    expect(page.locator("#result-card")).to_contain_text("sum")
    assert page.evaluate("window.stillTheSamePage") is True

    page.locator(".tl-row", has=page.locator(".tl-name", has_text=re.compile(r"^s2$"))).click()
    inspector = page.locator("#inspector")
    expect(inspector).to_be_visible()
    expect(inspector).to_contain_text("Output")
    expect(inspector.locator("#inspector-facts")).to_contain_text("s2")
    expect(inspector.locator(".json-tree, .jt-number").first).to_be_visible()
    screenshot(page, "run-detail")


def test_a_run_with_retries_shows_failed_attempts_and_retry_delays(page):
    run = run_trigger(task_id="test-third-step-flaky", payload={})[0]
    wait_finished(run.id)

    page.goto(f"/runs/{run.id}/")

    expect(page.locator('.tl-row[data-span-id^="attempt-"][data-status="FAILED"]')).to_have_count(2)
    expect(page.locator('.tl-row[data-span-id^="retry-"]')).to_have_count(2)
    expect(page.locator(".tl-bar.bar-failed").first).to_be_visible()
    page.locator('.tl-row[data-span-id="attempt-1"]').click()
    expect(page.locator("#inspector-body")).to_contain_text("third step fails on attempt 1")
    expect(page.locator("#inspector-body .traceback")).to_contain_text("Traceback")
    page.locator("#checkpoint summary").click()  # folded until opened
    page.fill("#checkpoint-position", "2")
    page.locator("#checkpoint-form button").click()
    expect(page.locator("#checkpoint-tree")).to_contain_text("second")
    expect(page.locator("#checkpoint-tree")).not_to_contain_text("third")
    screenshot(page, "run-detail-retries")


def test_cancel_from_the_run_page_stops_the_run_and_the_page_shows_it(page):
    run = run_trigger(task_id="test-sleepy-steps", payload={"steps": 40, "sleep": 0.5})[0]
    page.goto(f"/runs/{run.id}/")
    expect(step_rows(page).first).to_be_visible(timeout=30_000)

    cancel_run(page)

    expect(page.locator("#toasts")).to_contain_text(f"Run {run.id} canceled.")
    expect(status_badge(page)).to_have_attribute("data-status", "CANCELED", timeout=10_000)
    expect(page.locator('.tl-row[data-span-id="attempt-1"]')).to_have_attribute("data-status", "CANCELED")
    assert Run.objects.get(id=run.id).status == "CANCELED"


def test_replay_with_an_edited_payload_validates_it_and_follows_the_new_run(page):
    original = wait_finished(run_trigger(task_id="test-sleepy-steps", payload={"steps": 1, "sleep": 0.1})[0].id)
    page.goto(f"/runs/{original.id}/")
    editor = page.locator("#replay textarea")
    submit = page.locator("#replay button[type=submit]")

    editor.fill('{"steps": 2, "sleep": ')
    expect(page.locator("#replay-validation")).to_have_class(re.compile("invalid"))
    expect(submit).to_be_disabled()
    editor.fill('{"steps": 2, "sleep": 0.2}')
    expect(page.locator("#replay-validation")).to_have_text("Valid JSON")
    submit.click()

    expect(page).not_to_have_url(re.compile(original.id), timeout=30_000)
    replay = Run.objects.get(replayed_from=original)
    assert page.url.endswith(f"/runs/{replay.id}/")
    expect(page.locator("#toasts")).to_contain_text(f"Replayed as {replay.id}.")
    assert replay.payload == {"steps": 2, "sleep": 0.2}
    expect(page.locator(".summary")).to_contain_text(original.id)
    expect(status_badge(page)).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    expect(step_rows(page)).to_have_count(2)


def test_runs_list_shows_new_runs_and_their_status_changes_without_reloading(page):
    older = wait_finished(run_trigger(task_id="test-noop", payload={})[0].id)
    page.goto("/")
    expect(page.locator(f'tr[data-run-id="{older.id}"]')).to_be_visible()
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")  # over its websocket
    page.evaluate("window.stillTheSamePage = true")

    run = run_trigger(task_id="test-sleepy-steps", payload={"steps": 2, "sleep": 0.3}, )[0]

    row = page.locator(f'tr[data-run-id="{run.id}"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row.locator(".badge")).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.locator("tr[data-run-id]").first.get_attribute("data-run-id") == run.id
    for i in range(3):
        run_build(task_id="test-third-step-flaky" if i else "test-abort", status="FAILED" if i == 1 else "COMPLETED",
                  tags=["vip"] if i else [])
    expect(page.locator("tr[data-run-id]")).to_have_count(5, timeout=15_000)
    screenshot(page, "runs-list")


def test_bulk_cancel_from_the_runs_list(page):
    runs = [run_trigger(task_id="test-sleepy-steps", payload={"steps": 40, "sleep": 0.5})[0] for _ in range(2)]
    page.goto("/")
    for run in runs:
        page.locator(f'tr[data-run-id="{run.id}"] input[type=checkbox]').check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")

    page.locator("#bulk-cancel-confirm summary").click()
    expect(page.locator("#bulk-cancel-count")).to_have_text("2 selected runs")
    page.locator("#bulk-bar button[value=cancel]").click()

    expect(page.locator("#toasts")).to_contain_text("Canceled 2 runs.")
    for run in runs:
        expect(page.locator(f'tr[data-run-id="{run.id}"] .badge')).to_have_attribute("data-status", "CANCELED")
    assert set(Run.objects.values_list("status", flat=True)) == {"CANCELED"}


def test_a_run_with_5000_steps_renders_without_freezing_the_page(page):
    run = run_build(steps=5000)
    started = time.monotonic()

    page.goto(f"/runs/{run.id}/")
    expect(step_rows(page).first).to_be_visible(timeout=30_000)
    interactive_after = time.monotonic() - started

    # Only the visible rows exist in the DOM; scrolling renders the rest (once every span arrived).
    expect(page.locator("#timeline-count")).to_have_text("5003 spans")
    assert page.locator(".tl-row").count() < 100
    page.locator("#timeline-viewport").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = page.locator('.tl-row[data-span-id="step-1-5000"]')
    expect(last).to_be_visible()
    last.click()
    expect(page.locator("#inspector-body")).to_contain_text("50000")
    assert interactive_after < 20, f"the page took {interactive_after:.1f}s to show its timeline"


def test_approving_a_waitpoint_from_the_run_page_resumes_the_run_live(page):
    from stepwise.runs.models import Waitpoint
    from tests.waiting import wait_for

    run = run_trigger(task_id="test-wait-token", payload={})[0]
    wait_for(lambda: Run.objects.filter(id=run.id, status="WAITING").exists(), message="the run to wait")
    waitpoint = Waitpoint.objects.get(run_id=run.id)

    page.goto("/waitpoints/")
    expect(page.locator(f"#waitpoint-{waitpoint.id}")).to_contain_text("approve the test")
    page.goto(f"/runs/{run.id}/")
    expect(page.locator(f'.tl-row[data-span-id="wait-{waitpoint.id}"]')).to_have_attribute("data-status", "WAITING")
    screenshot(page, "run-detail-waiting")
    page.fill(f"#answer-{waitpoint.id}", '{"note": "ship it"}')
    page.locator(f"#waitpoint-{waitpoint.id} button[value=approve]").click()

    expect(page.locator("#toasts")).to_contain_text(f"Approved {waitpoint.id}")
    assert wait_finished(run.id).output == {"ok": True, "output": {"note": "ship it", "approved": True}}
    expect(status_badge(page)).to_have_attribute("data-status", "COMPLETED", timeout=30_000)


def test_the_metadata_card_follows_a_long_steps_progress_live(page):
    run = run_trigger(task_id="test-metadata-progress", payload={"sleep": 2})[0]
    page.goto(f"/runs/{run.id}/")
    page.locator("#tab-metadata").click()
    card = page.locator("#metadata-card")

    # Progress arrives while the step still runs, without reloading the page.
    expect(card.locator("#metadata-tree")).to_contain_text("progress", timeout=30_000)
    assert Run.objects.get(id=run.id).status == "EXECUTING"
    expect(card.locator("#metadata-updated")).to_contain_text("updated")
    expect(status_badge(page)).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    expect(card.locator("#metadata-tree")).to_contain_text("1")
    screenshot(page, "run-detail-metadata")


def causes_of(panel) -> list[str]:
    return [" ".join(text.split()) for text in panel.locator(".error-causes li .cause-text").all_inner_texts()]


ABORT_LINE = "stepwise.runs.engine.errors.AbortRun: could not charge order A-17"
CHAIN = ["ConnectionError: partner refused key ••••", "ValueError: bad total", "KeyError: 'total'"]


def test_a_failed_run_shows_its_cause_chain_in_the_error_panel_and_the_attempts_it_failed(page):
    run = run_trigger(task_id="test-chained-failure", payload={"hold": 4}, options=TriggerOptions(delay=2))[0]
    page.goto(f"/runs/{run.id}/")

    # The first attempt failed while the page watched: its inspector still shows the whole chain.
    first = page.locator('.tl-row[data-span-id="attempt-1"][data-status="FAILED"]')
    expect(first).to_be_visible(timeout=30_000)
    first.click()
    inspector = page.locator("#inspector-body")
    expect(inspector.locator(".error-line")).to_have_text("tests.engine_tasks.Flaky: charge failed, trying again")
    expect(inspector.locator(".error-causes li")).to_have_count(3)
    assert causes_of(inspector) == CHAIN
    expect(inspector.locator(".caused-by").first).to_have_text("caused by")
    expect(inspector.locator(".traceback")).not_to_have_attribute("open", "")
    assert Run.objects.get(id=run.id).status == "EXECUTING", "the run should still be going"

    expect(status_badge(page)).to_have_attribute("data-status", "FAILED", timeout=30_000)
    panel = page.locator("#result-card")
    expect(panel.locator(".error-line")).to_have_text(ABORT_LINE)
    assert causes_of(panel) == CHAIN
    expect(panel.locator(".error-causes .error-where").nth(1)).to_contain_text("in read_total")
    traceback = panel.locator(".traceback pre")
    expect(traceback).to_be_hidden()
    panel.locator(".traceback summary").click()
    expect(traceback).to_contain_text("The above exception was the direct cause of the following exception")
    panel.locator(".traceback summary").click()
    chain = "  <- caused by ".join(CHAIN)
    expect(first.locator(".tl-bar")).to_have_attribute(
        "title", f"tests.engine_tasks.Flaky: charge failed, trying again  <- caused by {chain}"
    )
    assert "canary-" not in page.content()
    screenshot(page, "run-detail-cause-chain")
    panel.screenshot(path=str(SCREENSHOTS / "run-detail-cause-chain-error.png"))
    page.emulate_media(color_scheme="dark")
    panel.screenshot(path=str(SCREENSHOTS / "run-detail-cause-chain-error-dark.png"))
    page.emulate_media(color_scheme="light")

    page.locator('.tl-row[data-span-id^="step-2-"]').click()
    expect(inspector.locator(".error-line")).to_have_text(ABORT_LINE)
    expect(inspector.locator(".error-causes li")).to_have_count(3)
    assert causes_of(inspector) == CHAIN
    page.locator(".timeline-card").screenshot(path=str(SCREENSHOTS / "run-detail-cause-chain-inspector.png"))


def test_a_pinned_run_that_no_running_worker_can_take_says_so_live_on_its_page(page):
    run = run_pinned_elsewhere(delay=3)  # no worker holds its version
    page.goto(f"/runs/{run.id}/")
    expect(page.locator(".summary dl.facts")).to_contain_text(f"{ELSEWHERE[:10]} pinned")
    notice = page.locator("#version-wait .callout")
    expect(notice).to_have_count(0)

    # Queued when its delay is over, the run finds no worker of its version: the page says so, live.
    expect(notice).to_contain_text(f"Waiting for a worker of version {ELSEWHERE[:10]}", timeout=30_000)
    expect(status_badge(page)).to_have_attribute("data-status", "QUEUED")
    screenshot(page, "run-detail-waiting-for-version")

    cancel_run(page)
    expect(status_badge(page)).to_have_attribute("data-status", "CANCELED", timeout=10_000)
    expect(notice).to_have_count(0)


def test_the_export_menu_downloads_the_runs_report(page):
    run = run_trigger(task_id="test-third-step-flaky", payload={})[0]
    wait_finished(run.id)
    page.goto(f"/runs/{run.id}/")

    page.locator("#export-menu summary").click()
    expect(page.locator("#export-menu .export-panel a")).to_have_count(3)
    screenshot(page, "run-detail-export-menu")
    with page.expect_download() as download:
        page.locator("#export-menu a", has_text="Report").click()
    assert download.value.suggested_filename == f"{run.id}.md"
    assert f"# test-third-step-flaky · {run.id}" in open(download.value.path(), encoding="utf-8").read()
