"""The console runs under a strict Content-Security-Policy: no page logs a violation in Chromium."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from stepwise.runs.triggers import run_trigger
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import screenshot
from tests.waiting import wait_finished

pytestmark = pytest.mark.xdist_group("browser")

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" +
                            e.lineNumber);
});
"""


def test_console_pages_log_no_content_security_policy_violation(page):
    environments_ensure()
    run = wait_finished(run_trigger(task_id="test-sleepy-steps", payload={"steps": 3, "sleep": 0.05})[0].id)
    page.add_init_script(RECORD_VIOLATIONS)
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text) if "Content Security Policy" in message.text
            else None)
    for url in ["/", f"/runs/{run.id}/", "/tasks/", "/waitpoints/", "/queues/", "/schedules/", "/secrets/",
                "/api-keys/", "/api/docs"]:
        response = page.goto(url)
        assert "script-src 'self'" in response.headers["content-security-policy"], url
        page.wait_for_load_state("load")
        if url.startswith("/runs/"):
            bar = page.locator(".tl-bar").first
            expect(bar).to_be_visible(timeout=20_000)
            # Bars are placed through the CSSOM, which the policy allows, not by style attributes.
            assert bar.evaluate("element => element.style.width").endswith("px")
            screenshot(page, "run-detail-under-csp")
        if url == "/api/docs":
            expect(page.locator(".swagger-ui .info")).to_be_visible(timeout=20_000)
        page.wait_for_timeout(300)  # let late scripts (live updates, inspectors) run
        assert page.evaluate("window.cspViolations") == [], url
    assert logged == []
