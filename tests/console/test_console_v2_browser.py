"""Console v2 in a real browser: the waterfall beside the inspector, a 5,000-span run, live status from a
queued page, confirmations, the run's context, logs and waits, keyboard use and the runs list's tools.

Screenshots land in artifacts/screenshots/ (light and dark); the timings measured by the browser itself
land in artifacts/timings/console-v2.json.
"""
from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import Queue
from stepwise.tasks.queues import queue_pause, queue_resume
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import SCREENSHOTS, screenshot
from tests.factories import run_build
from tests.waiting import wait_finished, wait_for

pytestmark = pytest.mark.xdist_group("browser")
expect.set_options(timeout=20_000)

TIMINGS = SCREENSHOTS.parent / "timings" / "console-v2.json"


def record_timing(name: str, figures: dict) -> None:
    """Keep what the browser measured, for the notes (never asserted: the machine is shared)."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    known[name] = figures
    TIMINGS.write_text(json.dumps(known, indent=2))


def both_schemes(tab, name: str) -> None:
    screenshot(tab, name)
    tab.emulate_media(color_scheme="dark")
    screenshot(tab, f"{name}-dark")
    tab.emulate_media(color_scheme="light")


def box(tab, selector: str) -> dict:
    return tab.locator(selector).first.evaluate("el => el.getBoundingClientRect().toJSON()")


def test_opening_the_inspector_redraws_the_waterfall_beside_it(page):
    run = run_build(steps=12, failed_attempts=2)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"/runs/{run.id}/")
    run_bar = page.locator('.tl-row[data-span-id="run"] .tl-bar')
    expect(run_bar).to_be_visible()
    wide = box(page, '.tl-row[data-span-id="run"] .tl-bar')["width"]

    page.locator('.tl-row[data-span-id="attempt-3"]').click()

    inspector = page.locator("#inspector")
    expect(inspector).to_be_visible()
    expect(inspector.locator("#inspector-title")).to_have_text("Attempt 3")
    # The bars shrink to the narrower track at once (no window resize needed) ...
    page.wait_for_function(
        "w => document.querySelector('.tl-row[data-span-id=\"run\"] .tl-bar').getBoundingClientRect().width < w - 50",
        arg=wide)
    timeline, panel = box(page, "#timeline"), box(page, "#inspector")
    last = box(page, '.tl-row[data-span-id="attempt-3"] .tl-bar')
    assert last["right"] <= timeline["right"], "the end of the run is hidden under the inspector"
    # ... and the axis stays in its column.
    assert box(page, "#timeline-axis")["right"] <= panel["left"] + 1
    both_schemes(page, "console-v2-inspector-1280")

    page.keyboard.press("Escape")
    expect(inspector).to_be_hidden()
    page.wait_for_function(
        "w => document.querySelector('.tl-row[data-span-id=\"run\"] .tl-bar').getBoundingClientRect().width > w - 5",
        arg=wide)


def test_a_5000_span_run_shows_its_first_row_fast_and_keeps_few_rows_in_the_dom(page):
    run = run_build(steps=5000)

    page.goto(f"/runs/{run.id}/")
    expect(page.locator('.tl-row[data-span-id="step-1-2"]')).to_be_visible(timeout=30_000)
    first_row_ms = page.evaluate(
        "performance.getEntriesByName('stepwise:timeline-first-row')[0].startTime")
    expect(page.locator("#timeline-count")).to_have_text("5003 spans")
    expect(page.locator('.tl-row[data-span-id="step-1-2"] .tl-name')).to_have_text("step-2")  # the step key

    # Scroll the whole waterfall, a few rows per frame, timing every frame in the page.
    frames = page.evaluate("""async () => {
        const viewport = document.getElementById('timeline-viewport');
        const gaps = []; const rows = [];
        let last = performance.now();
        for (let i = 0; i < 150; i++) {
            viewport.scrollTop += 84;
            await new Promise(requestAnimationFrame);
            const now = performance.now(); gaps.push(now - last); last = now;
            rows.push(document.querySelectorAll('.tl-row').length);
        }
        gaps.sort((a, b) => a - b);
        return {p50: gaps[Math.floor(gaps.length / 2)], p95: gaps[Math.floor(gaps.length * 0.95)],
                most_rows: Math.max(...rows)};
    }""")
    record_timing("5000-span run", {"first_row_ms": round(first_row_ms), "scroll_frame_p50_ms": round(frames["p50"], 1),
                                    "scroll_frame_p95_ms": round(frames["p95"], 1), "rows_in_dom": frames["most_rows"]})
    assert frames["most_rows"] < 80  # only the rows in view, whatever the run's size

    # Search by step key.
    page.fill("#timeline-search", "step-4321")
    expect(page.locator('.tl-row[data-span-id^="step-"]')).to_have_count(1)
    expect(page.locator("#timeline-count")).to_have_text("1 of 5003 spans")
    page.locator('.tl-row[data-span-id="step-1-4321"]').click()
    expect(page.locator("#inspector-body")).to_contain_text("43210")
    page.fill("#timeline-search", "")
    # Filter by kind, collapse attempts.
    page.select_option("#timeline-kind", "attempt")
    expect(page.locator(".tl-row")).to_have_count(2)  # the run and its one attempt
    page.select_option("#timeline-kind", "")
    page.locator("#timeline-collapse").click()
    expect(page.locator(".tl-row")).to_have_count(3)  # run, queued, the folded attempt
    expect(page.locator('.tl-row[data-span-id="attempt-1"]')).to_have_attribute("aria-expanded", "false")
    expect(page.locator('.tl-row[data-span-id="attempt-1"] .tl-kind')).to_contain_text("5000 hidden")
    page.locator("#timeline-collapse").click()
    # Zoom to a range by dragging across the axis, then back.
    axis = box(page, "#timeline-axis")
    first_tick = page.locator("#timeline-axis .tick").first.inner_text()
    page.mouse.move(axis["left"] + axis["width"] * 0.6, axis["top"] + 10)
    page.mouse.down()
    page.mouse.move(axis["left"] + axis["width"] * 0.8, axis["top"] + 10, steps=5)
    page.mouse.up()
    expect(page.locator("#timeline-zoom-reset")).to_be_visible()
    expect(page.locator("#timeline-axis .tick").first).not_to_have_text(first_tick)
    both_schemes(page, "console-v2-5000-spans-zoomed")
    page.locator("#timeline-zoom-reset").click()
    expect(page.locator("#timeline-axis .tick").first).to_have_text(first_tick)
    # The checkpoint panel starts folded, and opens with one line per key.
    expect(page.locator("#checkpoint-tree")).to_be_hidden()
    page.locator("#checkpoint summary").click()
    expect(page.locator("#checkpoint-note")).to_have_text("5000 recorded steps, latest")
    assert page.locator("#checkpoint-tree details[open]").count() == 1  # the root only


def test_a_page_opened_while_the_run_is_queued_follows_its_status_and_checkpoints_live(page):
    environments_ensure()
    Queue.objects.create(environment_id="dev", name="held")
    queue_pause(environment="dev", name="held")
    # 12 steps of 1 s: it still executes while the page's live parts are checked, even on a busy machine.
    run = run_trigger(task_id="test-sleepy-steps", payload={"steps": 12, "sleep": 1.0},
                      options=TriggerOptions(queue="held"))[0]
    released = []

    def release_when_executing(route):
        # The page was rendered Queued; its timeline is read only once the run executes, so the
        # status change is older than what the page reads next: the page must still show it.
        if not released:
            released.append(True)
            queue_resume(environment="dev", name="held")
            wait_for(lambda: Run.objects.filter(id=run.id, status="EXECUTING").exists(), message="the run to start")
        route.continue_()

    page.route(re.compile(r"/timeline\.json"), release_when_executing)
    page.goto(f"/runs/{run.id}/")

    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "EXECUTING", timeout=30_000)
    expect(page.locator("#fact-attempts")).to_have_text("1")  # rendered as 0 while queued; the claim's event says 1
    assert Run.objects.get(id=run.id).status == "EXECUTING"
    queued = page.locator('.tl-row[data-span-id="queued-1"]')
    expect(queued).to_have_attribute("data-status", "COMPLETED")
    expect(queued.locator(".tl-bar")).to_have_class(re.compile("bar-queued"))
    # The checkpoint panel, once opened, follows the steps recorded meanwhile.
    page.locator("#checkpoint summary").click()
    expect(page.locator("#checkpoint-tree")).to_contain_text("s3", timeout=30_000)
    assert Run.objects.get(id=run.id).status == "EXECUTING"
    screenshot(page, "console-v2-live-from-queued")
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    expect(page.locator("#checkpoint-tree")).to_contain_text("s11")


def test_cancel_asks_first_and_the_step_it_stopped_is_drawn_canceled(page):
    run = run_trigger(task_id="test-sleepy-steps", payload={"steps": 40, "sleep": 0.5})[0]
    page.goto(f"/runs/{run.id}/")
    expect(page.locator('.tl-row[data-span-id^="step-"]').first).to_be_visible(timeout=30_000)

    page.locator("#cancel-confirm summary").click()
    dialog = page.locator("#cancel-confirm .pop-panel")
    expect(dialog).to_be_visible()
    expect(page.locator("#cancel-form button")).to_be_focused()  # Enter confirms, Escape backs out
    screenshot(page, "console-v2-cancel-confirm")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert Run.objects.get(id=run.id).status == "EXECUTING"

    page.locator("#cancel-confirm summary").click()
    expect(page.locator("#cancel-form button")).to_be_focused()  # the panel moves focus once it is open
    page.keyboard.press("Enter")

    expect(page.locator("#toasts")).to_contain_text(f"Run {run.id} canceled.")
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "CANCELED", timeout=10_000)
    expect(page.locator('.tl-row[data-span-id="attempt-1"]')).to_have_attribute("data-status", "CANCELED")
    # Nothing the cancel stopped is drawn as a failure: a step it cut short is grey, marked canceled.
    failed_looking = page.locator('.tl-row[data-kind="step"] .bar-failed, .tl-row[data-kind="step"] .bar-interrupted')
    expect(failed_looking).to_have_count(0)
    page.reload()
    expect(page.locator('.tl-row[data-span-id="attempt-1"]')).to_have_attribute("data-status", "CANCELED")
    expect(failed_looking).to_have_count(0)
    canceled_steps = page.locator('.tl-row[data-kind="step"][data-status="CANCELED"] .tl-bar')
    expect(canceled_steps.and_(page.locator(":not(.bar-canceled)"))).to_have_count(0)


def test_a_run_waiting_for_an_event_is_resumed_from_its_page_and_shows_its_context_and_logs(page):
    run = run_trigger(task_id="test-wait-event", payload={"event": "order.paid", "filter": {"orderId": "7"}})[0]
    wait_for(lambda: Run.objects.filter(id=run.id, status="WAITING").exists(), message="the run to wait")
    page.goto(f"/runs/{run.id}/")

    waiting = page.locator("#waiting-for")
    expect(waiting).to_contain_text("Waiting for event order.paid")
    box_ = waiting.locator("textarea")
    expect(box_).to_have_value('{"orderId": "7"}')
    send = waiting.locator("button[type=submit]")
    box_.fill('{"orderId": ')
    expect(send).to_be_disabled()
    expect(waiting.locator(".validation")).to_have_class(re.compile("invalid"))
    box_.fill('{"orderId": "7", "amount": 12}')
    expect(send).to_be_enabled()
    both_schemes(page, "console-v2-send-event")
    send.click()

    expect(page.locator("#toasts")).to_contain_text("Sent event order.paid: 1 wait resumes.")
    expect(page.locator("#waiting-for-slot button")).to_have_count(0)  # sent: the form goes, the run resumes
    expect(page.locator("#run-status .badge")).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    assert wait_finished(run.id).output["event"] == {"orderId": "7", "amount": 12}

    page.locator("#tab-context").click()
    context = page.locator("#run-context")
    expect(context).to_be_visible()
    expect(context).to_contain_text("Environment")
    worker = Run.objects.get(id=run.id).worker_id
    assert worker
    # The resumed attempt may run on another worker than the first: the panel says so once the page has
    # re-read it after the run ended (a moment after the badge turned Completed).
    expect(context).to_contain_text(worker)
    page.locator("#tab-logs").click()
    expect(page.locator("#panel-logs")).to_be_visible()
    both_schemes(page, "console-v2-context")


def test_waitpoints_page_checks_answers_lists_timers_and_drops_buttons_once_decided(page):
    token_run = run_trigger(task_id="test-wait-token", payload={})[0]
    timer_run = run_trigger(task_id="test-wait-then-return", payload={})[0]
    for run in (token_run, timer_run):
        wait_for(lambda run=run: Run.objects.filter(id=run.id, status="WAITING").exists(), message="the run to wait")
    token = Waitpoint.objects.get(run_id=token_run.id)

    page.goto("/waitpoints/")
    expect(page.locator("#timer-waits")).to_contain_text(timer_run.id)
    item = page.locator(f"#waitpoint-{token.id}")
    item.locator("textarea").fill('{"note": ')
    expect(item.locator("button[value=approve]")).to_be_disabled()
    expect(item.locator(".validation")).to_have_class(re.compile("invalid"))
    item.locator("textarea").fill('{"note": "ship it"}')
    both_schemes(page, "console-v2-waitpoints")
    item.locator("button[value=approve]").click()

    expect(item.locator(".decided-note")).to_contain_text("Approved by you")
    expect(item.locator("button")).to_have_count(0)
    assert wait_finished(token_run.id).output["output"] == {"note": "ship it", "approved": True}


def test_timing_a_token_out_from_the_waitpoints_page_asks_first(page):
    run = run_trigger(task_id="test-wait-token", payload={})[0]
    wait_for(lambda: Run.objects.filter(id=run.id, status="WAITING").exists(), message="the run to wait")
    token = Waitpoint.objects.get(run_id=run.id)
    page.goto("/waitpoints/")
    time_out = page.locator(f"#waitpoint-{token.id} button[value=timeout]")

    time_out.click()  # the first press only asks
    expect(time_out).to_have_text("Time out now?")
    expect(time_out).to_have_class(re.compile("btn-armed"))
    expect(page.locator("#toasts")).to_contain_text("Press again to confirm.")
    screenshot(page, "console-v2-waitpoint-confirm")
    assert Waitpoint.objects.get(id=token.id).status == "PENDING"
    expect(time_out).to_have_text("Time out now", timeout=10_000)  # left alone, it disarms
    assert Waitpoint.objects.get(id=token.id).status == "PENDING"

    time_out.focus()
    page.keyboard.press("Enter")
    expect(time_out).to_have_text("Time out now?")
    page.keyboard.press("Enter")
    expect(page.locator(f"#waitpoint-{token.id} .decided-note")).to_be_visible()
    finished = wait_finished(run.id)
    assert finished.output["ok"] is False


def test_keyboard_skip_link_runs_list_keys_and_timeline_tree(page):
    runs = [run_build(steps=2) for _ in range(3)]  # newest first on the list
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link").first).to_be_focused()
    expect(page.locator(".skip-link").first).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link", has_text="Skip to the runs")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#runs-table")).to_be_focused()

    page.keyboard.press("j")
    expect(page.locator("tr.focused")).to_have_attribute("data-run-id", runs[2].id)
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    expect(page.locator("tr.focused")).to_have_attribute("data-run-id", runs[0].id)
    page.keyboard.press("k")
    expect(page.locator("tr.focused")).to_have_attribute("data-run-id", runs[1].id)
    screenshot(page, "console-v2-runs-keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/runs/{runs[1].id}/")

    tree = page.locator("#timeline")
    expect(tree).to_have_attribute("role", "tree")
    expect(page.locator('.tl-row[data-span-id="run"]')).to_have_attribute("role", "treeitem")
    tree.focus()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#inspector")).to_be_visible()
    expect(page.locator('.tl-row[aria-selected="true"]')).to_have_attribute("data-span-id", "run")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator('.tl-row[aria-selected="true"]')).to_have_attribute("data-span-id", "attempt-1")
    page.keyboard.press("ArrowLeft")  # fold the attempt
    expect(page.locator('.tl-row[data-span-id="attempt-1"]')).to_have_attribute("aria-expanded", "false")
    expect(page.locator('.tl-row[data-span-id^="step-"]')).to_have_count(0)
    page.keyboard.press("Escape")
    expect(page.locator("#inspector")).to_be_hidden()
    expect(tree).to_be_focused()


def test_runs_list_counts_presets_saved_views_environments_and_the_test_form(page):
    run_build(status="FAILED")
    run_build(status="COMPLETED")
    page.goto("/")

    expect(page.locator('.count-chip[data-status="FAILED"]')).to_contain_text("1")
    expect(page.locator("td.col-attempts").first).to_have_text("1")
    expect(page.locator("tr[data-run-id] time").first).to_have_text(re.compile("just now|ago"))
    page.locator('.count-chip[data-status="FAILED"]').click()
    page.wait_for_url(re.compile(r"status=FAILED"))
    expect(page.locator("tr[data-run-id]")).to_have_count(1)
    page.locator(".periods a", has_text="24h").click()
    page.wait_for_url(re.compile(r"period=24h"))
    expect(page.locator(".periods a", has_text="24h")).to_have_attribute("aria-current", "true")
    page.locator("#save-filter summary").click()
    page.fill("#save-filter-name", "Failed today")
    page.locator("#save-filter-form button[type=submit]").click()
    page.goto("/")
    saved = page.locator("#saved-list a", has_text="Failed today")
    expect(saved).to_be_visible()
    both_schemes(page, "console-v2-runs-list")
    saved.click()
    page.wait_for_url(re.compile(r"status=FAILED.*period=24h|period=24h.*status=FAILED"))
    page.locator(".env-tabs a", has_text="prod").click()
    page.wait_for_url(re.compile(r"env=prod"))
    expect(page.locator("tr[data-run-id]")).to_have_count(0)

    # The Test form: a refused payload stays in the box with the reason; the last payload is offered again.
    page.goto("/tasks/")
    box_ = page.locator("#payload-test-noop")
    too_big = '{"blob": "' + "x" * 600_000 + '"}'
    box_.fill(too_big)
    page.locator("#task-test-noop button[type=submit]").click()
    expect(page.locator("#validation-test-noop")).to_contain_text("payload")
    expect(page.locator("#validation-test-noop")).to_have_class(re.compile("invalid"))
    assert box_.input_value() == too_big
    assert page.url.endswith("/tasks/")
    box_.fill('{"order": 7}')
    page.locator("#task-test-noop button[type=submit]").click()
    page.wait_for_url(re.compile(r"/runs/run_"))
    page.goto("/tasks/")
    expect(box_).to_have_value("{}")
    page.locator("#task-test-noop .last-payload").click()
    expect(box_).to_have_value('{"order": 7}')
    favicon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(favicon).headers["content-type"].startswith("image/svg")
