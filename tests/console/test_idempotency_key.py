"""The run page's idempotency key: its scope and state, and the button that resets it."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from stepwise.runs.models import Run
from stepwise.runs.triggers import TriggerOptions, run_trigger
from tests.console.conftest import csrf_post

pytestmark = pytest.mark.django_db


def _keyed(key: str = "order-1", **options) -> Run:
    return run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(idempotency_key=key, **options))[0]


def _key_fact(page: str) -> str:
    """Return the text of the key's fact on a run page, tags stripped and spaces collapsed."""
    fact = re.search(r'<div class="wide idempotency-key".*?</dd>', page, re.S).group(0)
    return " ".join(re.sub(r"<[^>]+>", " ", fact).split())


def test_an_active_key_shows_its_scope_expiry_and_a_reset_button(signed_in):
    run = _keyed()

    page = signed_in.get(f"/runs/{run.id}/").content.decode()

    expires = Run.objects.get(id=run.id).idempotency_expires_at
    assert _key_fact(page).startswith(f"Idempotency key order-1 global scope Active until "
                                      f"{timezone.localtime(expires).strftime('%b %-d, %H:%M')} Reset key")
    assert f'action="/runs/{run.id}/idempotency-key/reset/"' in page


def test_the_reset_button_frees_the_key_and_the_page_then_shows_it_reset(signed_in):
    run = _keyed()

    response = csrf_post(signed_in, f"/runs/{run.id}/idempotency-key/reset/", follow=True)

    page = response.content.decode()
    assert "Idempotency key &#x27;order-1&#x27; reset: the next trigger with it starts a new run." in page
    assert _key_fact(page).startswith("Idempotency key order-1 global scope Reset")
    assert "/idempotency-key/reset/" not in page, "a freed key has nothing left to reset"
    stored = Run.objects.get(id=run.id)
    assert stored.idempotency_key_state == "reset"
    assert stored.events.get(type="idempotency_key.reset").data["by"] == "ada"
    again = _keyed()
    assert again.id != run.id, "the next trigger with the key starts a new run"


def test_resetting_a_key_the_run_no_longer_holds_answers_why(signed_in):
    run = _keyed()
    csrf_post(signed_in, f"/runs/{run.id}/idempotency-key/reset/")
    plain = run_trigger(task_id="test-idem-echo", payload={})[0]

    twice = csrf_post(signed_in, f"/runs/{run.id}/idempotency-key/reset/", HTTP_ACCEPT="application/json")
    keyless = csrf_post(signed_in, f"/runs/{plain.id}/idempotency-key/reset/", HTTP_ACCEPT="application/json")

    assert twice.status_code == 409
    assert twice.json()["message"] == (f"run {run.id} no longer holds its idempotency key 'order-1': "
                                       "it was reset already")
    assert keyless.status_code == 409
    assert keyless.json()["message"] == f"run {plain.id} was triggered without an idempotency key"


def test_reset_needs_the_csrf_token(signed_in):
    run = _keyed()

    assert signed_in.post(f"/runs/{run.id}/idempotency-key/reset/").status_code == 403

    assert Run.objects.get(id=run.id).idempotency_key_state == "active"


def test_an_expired_key_is_shown_expired_with_its_scope(signed_in):
    parent = run_trigger(task_id="test-idem-echo", payload={})[0]
    child = _keyed("receipt", idempotency_key_scope="run", parent_run_id=parent.id)
    Run.objects.filter(id=child.id).update(idempotency_expires_at=timezone.now() - timedelta(minutes=1))

    page = signed_in.get(f"/runs/{child.id}/").content.decode()

    assert _key_fact(page).startswith("Idempotency key receipt run scope Expired")
    assert 'title="unique within the parent run"' in page
    assert "/idempotency-key/reset/" not in page
    assert "idempotency-key" not in signed_in.get(f"/runs/{parent.id}/").content.decode()
