"""A Django project of its own installs Stepwise with pip, from scratch, and runs tasks on its own models.

examples/shop_site is copied out of the repository, so that only what pip installed is importable;
it gets a fresh virtualenv and database, migrates, runs a worker on its own Celery app, triggers a
Stepwise task and a Django task that read and write its ``Order``, and serves the console under
the prefix it chose (``/stepwise/``), its live pages' websockets too. Then ``manage.py up`` serves
the same project, its console and a worker on its Celery app in one process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.sync.client import connect as websocket_connect

from tests.console.conftest import BROWSER_ARGS
from tests.processes import _die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop_site"
ORDER_SCRIPT = "from shop.models import Order; print(Order.objects.create(item='book', quantity=2).id)"
DJANGO_TASK_SCRIPT = """
import json, time
from shop.models import Order
from shop.tasks import mark_paid
result = mark_paid.enqueue({order})
for _ in range(300):
    result.refresh()
    if result.is_finished:
        break
    time.sleep(0.1)
print(json.dumps({{"status": result.status, "value": result.return_value if result.is_finished else None,
                  "order": Order.objects.filter(id={order}).values("status", "shipped_by").get()}}))
"""

# The shop's apps tasks and runs, and Stepwise's, side by side in one process and one database.
OWN_APPS_SCRIPT = """
import json, os, runs.models, tasks.models
from django.db import connection
from stepwise.runs.models import Run as StepwiseRun
from stepwise.tasks.models import Task as StepwiseTask
todo = tasks.models.Task.objects.create(title="pack order")
tables = connection.introspection.table_names()
print(json.dumps({"tasks": tasks.models.__file__.removeprefix(os.getcwd()),
                  "runs": runs.models.__file__.removeprefix(os.getcwd()),
                  "tables": sorted(t for t in tables if t in ("runs_run", "tasks_task")),
                  "todo": tasks.models.Task.objects.get().title,
                  "stepwise": [StepwiseRun._meta.db_table, StepwiseTask._meta.db_table, StepwiseRun.objects.count()]}))
"""


def _admin_url() -> urllib.parse.ParseResult:
    return urllib.parse.urlparse(os.environ["DATABASE_URL"])


def _admin_connection() -> psycopg.Connection:
    url = _admin_url()._replace(path="/postgres").geturl()
    return psycopg.connect(url, autocommit=True)


class Shop:
    """The copied project, its virtualenv and environment, and the processes it started."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "shop_site"
        self.venv = base / "venv"
        self.db_name = f"stepwise_shop_{uuid.uuid4().hex[:10]}"
        self.queue = f"shop-{uuid.uuid4().hex[:10]}"
        self.env = {
            "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(base)), "LANG": "C.UTF-8",
            "DATABASE_URL": _admin_url()._replace(path=f"/{self.db_name}").geturl(),
            "REDIS_URL": os.environ["REDIS_URL"], "SHOP_CELERY_QUEUE": self.queue,
            "DJANGO_SUPERUSER_PASSWORD": "shop-admin-password",
        }
        self.procs: list[subprocess.Popen] = []

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def manage(self, *args: str, timeout: float = 120) -> str:
        return self.run(self.bin("python"), "manage.py", *args, timeout=timeout).stdout

    def start(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.dir.parent / f"{name}.log", "wb")
        proc = subprocess.Popen(args, cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        while self.procs:
            proc = self.procs.pop()
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass


@pytest.fixture
def shop(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "shop_site", ignore=shutil.ignore_patterns("__pycache__"))
    project = Shop(tmp_path)
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{project.db_name}"')
    try:
        yield project
    finally:
        project.stop()
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{project.db_name}" WITH (FORCE)')


def _console_signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10)
    deadline = time.monotonic() + 60
    while True:
        try:
            page = client.get("/stepwise/")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the shop's console did not start"
            time.sleep(0.3)
    assert page.status_code == 302 and page.headers["location"].startswith("/stepwise/login/")
    sign_in = client.get("/stepwise/login/")
    assert "Stepwise" in sign_in.text and "The shop's own" not in sign_in.text  # its own templates, not the shop's
    signed_in = client.post("/stepwise/login/", data={
        "username": "admin", "password": "shop-admin-password", "csrfmiddlewaretoken": client.cookies["csrftoken"],
    })
    assert signed_in.status_code == 302, signed_in.text[:500]
    return client


def _run_id(output: str) -> str:
    return re.search(r"run_[0-9a-z]+", output).group(0)


def _runs_list_follows_a_new_run_live(shop: Shop, base: str, order: int) -> None:
    """Sign in to the console in a browser; its runs list must show a new run over its websocket, never polling."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=BROWSER_ARGS)
        try:
            tab = browser.new_page(base_url=base)
            tab.goto("/stepwise/login/")
            tab.fill("input[name=username]", "admin")
            tab.fill("input[name=password]", "shop-admin-password")
            tab.click("button[type=submit]")
            tab.wait_for_url(f"{base}/stepwise/")
            indicator = tab.locator("#live-indicator")
            expect(indicator).to_have_attribute("data-state", "live", timeout=20_000)  # the socket opened
            run_id = _run_id(shop.manage("trigger", "shop-fulfil-order", json.dumps({"order_id": order})))
            row = tab.locator(f'tr[data-run-id="{run_id}"]')
            expect(row.locator(".badge")).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
            expect(indicator).to_have_attribute("data-state", "live")  # it never fell back to polling
        finally:
            browser.close()


def _first_event(url: str, session: str, origin: str) -> dict:
    """Open a run's websocket as the signed-in console would and return the first event it sends."""
    with websocket_connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={session}"},
                           open_timeout=10) as socket:
        return json.loads(socket.recv(timeout=10))


@pytest.mark.timeout(900)
def test_a_project_of_its_own_installs_stepwise_with_pip_and_runs_tasks_on_its_models(shop):
    # The shop's virtualenv is made by the tests' own interpreter, which bin/venv chose: 3.12 or newer,
    # as Stepwise (Django 6.1) requires.
    assert sys.version_info >= (3, 12), f"Python {sys.version.split()[0]} cannot install Stepwise"
    subprocess.run([sys.executable, "-m", "venv", str(shop.venv)], check=True, timeout=120)
    shop.run(shop.bin("pip"), "install", "--quiet", "--no-compile", str(ROOT), timeout=600)
    installed = shop.run(shop.bin("python"), "-c", "import stepwise.runs as r; print(r.__file__)").stdout
    assert str(shop.venv) in installed and str(ROOT) not in installed  # the copy imports what pip installed

    shop.manage("migrate", "--noinput")
    # The shop's own apps named tasks and runs (models Task and Run) live beside Stepwise's, tables and all.
    own = json.loads(shop.manage("shell", "--no-imports", "-c", OWN_APPS_SCRIPT))
    assert own == {"tasks": "/tasks/models.py", "runs": "/runs/models.py", "tables": ["runs_run", "tasks_task"],
                   "todo": "pack order", "stepwise": ["stepwise_runs_run", "stepwise_tasks_task", 0]}
    shop.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    order = int(shop.manage("shell", "--no-imports", "-c", ORDER_SCRIPT).strip())
    shop.start(shop.bin("celery"), "-A", "shopsite", "worker", "--pool=threads", "--concurrency=2", "-Q", shop.queue,
               "--without-mingle", "--without-gossip", "--loglevel=INFO", name="worker")

    # A Stepwise task of the shop's app (shop/stepwise_tasks.py, found without any setting).
    followed = shop.manage("trigger", "shop-fulfil-order", json.dumps({"order_id": order}), "--follow", timeout=120)
    assert "COMPLETED" in followed and "parcel-express" in followed
    run_id = _run_id(followed)

    # A Django task of the shop's app (shop/tasks.py), enqueued through Django's Tasks framework.
    enqueued = json.loads(shop.manage("shell", "--no-imports", "-c", DJANGO_TASK_SCRIPT.format(order=order)))
    assert enqueued == {"status": "SUCCESSFUL", "value": "paid",
                        "order": {"status": "paid", "shipped_by": "parcel-express"}}

    port = free_port()
    shop.start(shop.bin("uvicorn"), "shopsite.asgi:application", "--host", "127.0.0.1", f"--port={port}", name="web")
    console = _console_signed_in(f"http://127.0.0.1:{port}")
    runs_page = console.get("/stepwise/")
    assert runs_page.status_code == 200
    assert run_id in runs_page.text and "shop.tasks.mark_paid" in runs_page.text
    assert "The shop's own layout" not in runs_page.text  # the shop's own base.html does not replace the console's
    run_page = console.get(f"/stepwise/runs/{run_id}/")
    assert run_page.status_code == 200 and "parcel-express" in run_page.text
    assert f'data-ws-path="/stepwise/ws/runs/{run_id}/"' in run_page.text  # below the console, as the shop routes it
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', run_page.text).group(1)
    assert console.get(stylesheet).status_code == 200  # the console's own static files, from the package
    api = console.get(f"/stepwise/api/runs/{run_id}")
    assert api.status_code == 200 and api.json()["status"] == "COMPLETED"
    console.close()
    _runs_list_follows_a_new_run_live(shop, f"http://127.0.0.1:{port}", order)

    # manage.py up: the shop's own ASGI application and a worker on the shop's Celery app, in one process.
    shop.stop()
    port = free_port()
    shop.start(shop.bin("python"), "manage.py", "up", "--host", "127.0.0.1", f"--port={port}", "--concurrency=2",
               name="up")
    console = _console_signed_in(f"http://127.0.0.1:{port}")
    followed = shop.manage("trigger", "shop-fulfil-order", json.dumps({"order_id": order}), "--follow", timeout=120)
    assert "COMPLETED" in followed
    first = _first_event(f"ws://127.0.0.1:{port}/stepwise/ws/runs/{_run_id(followed)}/?after=0",
                         console.cookies["sessionid"], origin=f"http://127.0.0.1:{port}")
    assert (first["seq"], first["type"]) == (1, "run.created")
    console.close()

    # manage.py bench in the shop: its workers and scheduler start on the shop's settings and Celery app.
    shop.stop()
    bench = shop.manage("bench", "--only", "idle", "--latency-runs", "3", "--workers", "1", "--concurrency", "1",
                        timeout=300)
    assert re.search(r"trigger-to-start latency p50, idle \(3 runs\) +[\d.]+ +ms", bench), bench
