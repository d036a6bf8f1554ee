"""Fixtures of the console tests: a signed-in client and a user."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client

from tests.processes import Processes

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password=PASSWORD, is_superuser=True)


@pytest.fixture
def signed_in(user) -> Client:
    """A client signed in as a user, with CSRF checks enforced like a browser's."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_post(client: Client, url: str, data: dict | None = None, **extra):
    """POST like the console's pages do: with the CSRF cookie and its token."""
    client.get("/waitpoints/")  # every signed-in page carries the token (the sign-out form)
    token = client.cookies["csrftoken"].value
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture
def console_url(live) -> str:
    """The console served by a real ASGI server (uvicorn) on the test database.

    One server per test: the server caches task-version rows, which the flush between tests removes.
    """
    with console_served() as url:
        yield url


@contextmanager
def console_served(**env: str) -> Iterator[str]:
    """Serve the console with uvicorn, with ``env`` added to its environment, until the block ends."""
    procs = Processes("console")
    try:
        yield procs.console(**env)
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright, for one test module.

    Module scope: while Playwright's sync API runs, its event loop is the thread's running loop,
    and the asyncio tests (websockets) of a later module on the same worker could not start theirs.
    """
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django refuse
    # the test's own ORM calls; they are plain synchronous calls, so allow them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                              args=BROWSER_ARGS)
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(live, console_url, browser, django_user_model):
    """A fresh browser tab signed in to the console through its sign-in form."""
    django_user_model.objects.create_user(username="ada", password=PASSWORD, is_superuser=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=console_url)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto("/login/")
    tab.fill("input[name=username]", "ada")
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{console_url}/")
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def screenshot(tab, name: str) -> Path:
    """Save a full-page screenshot under artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path
