"""The run page's streams card, and the lease fence on stream writes."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepwise.runs.engine.errors import RunInterrupted
from stepwise.runs.models import RunEvent
from stepwise.runs.selectors import run_streams
from stepwise.runs.services import run_cancel
from stepwise.runs.store import OrmRunStore
from stepwise.runs.triggers import run_trigger
from tests.waiting import wait_finished


def test_the_run_page_shows_what_a_run_streamed(realtime):
    run, _ = run_trigger(task_id="test-fake-llm", payload={"chunks": 5})
    wait_finished(run.id)
    browser = Client()
    browser.force_login(User.objects.create_user("ops", password="x", is_superuser=True))
    page = browser.get(f"/runs/{run.id}/").content.decode()
    card = page[page.index('id="streams-card"'):]
    card = card[:card.index("</section>")]
    assert "<code>tokens</code>" in card and "5 chunks · complete" in card
    assert '<pre class="stream-text">t0 t1 t2 t3 t4 </pre>' in card


def test_a_run_without_streams_shows_no_streams_card(realtime):
    run, _ = run_trigger(task_id="test-noop", payload={})
    wait_finished(run.id)
    browser = Client()
    browser.force_login(User.objects.create_user("ops", password="x", is_superuser=True))
    page = browser.get(f"/runs/{run.id}/").content.decode()
    assert '<section class="card" id="streams-card" hidden>' in page


def test_an_attempt_that_lost_its_run_can_no_longer_stream(processes, transactional_db):
    run, _ = run_trigger(task_id="test-fake-llm", payload={"chunks": 2})  # no worker runs here: we are it
    store = OrmRunStore()
    claim = store.claim(run.id, "worker-1")
    store.stream_write(claim, stream="tokens", key="stream:tokens", first_index=0, chunks=["a"])
    run_cancel(run_id=run.id, reason="canceled while streaming")
    with pytest.raises(RunInterrupted):
        store.stream_write(claim, stream="tokens", key="stream:tokens", first_index=1, chunks=["b"], completed=True)
    assert [e.data["chunk"] for e in RunEvent.objects.filter(run_id=run.id, type="stream.chunk")] == ["a"]
    assert run_streams(run_id=run.id) == [
        {"name": "tokens", "completed": False, "chunks": [{"key": "stream:tokens", "chunk": "a"}]}]
