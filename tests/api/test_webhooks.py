"""Signed webhook triggers: valid signatures run the task; anything doubtful is refused, nothing enqueued."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client

from stepwise.runs.models import Run
from stepwise.tasks.webhooks import webhook_secret_create, webhook_sign
from stepwise.webhooks import webhook_headers


@pytest.fixture
def signing(environments):
    return webhook_secret_create(environment="prod").secret


def deliver(body: bytes, *, secret: str | None, timestamp: int | None = None, signature: str | None = None,
            delivery: str | None = None, send_delivery: bool = True, task: str = "test-noop"):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    delivery = delivery or uuid.uuid4().hex
    headers = {"Stepwise-Timestamp": ts}
    if signature is None and secret is not None:
        signature = f"v1={webhook_sign(secret, ts, delivery, body)}"
    if signature is not None:
        headers["Stepwise-Signature"] = signature
    if send_delivery:
        headers["Stepwise-Delivery"] = delivery
    return Client().post(f"/api/webhooks/{task}", body, content_type="application/json", headers=headers)


def test_a_signed_delivery_triggers_the_task_in_the_secrets_environment(signing):
    response = deliver(b'{"order": 7}', secret=signing, delivery="d-1")
    assert response.status_code == 201, response.content
    run = Run.objects.get(id=response.json()["id"])
    assert run.payload == {"order": 7} and run.environment_id == "prod" and run.task_id == "test-noop"


def test_several_secrets_are_valid_at_once_for_rotation(signing):
    newer = webhook_secret_create(environment="prod").secret
    body = b'{"a": 1}'
    ts = str(int(time.time()))
    both = f"v1={webhook_sign(newer, ts, 'd-2', body)}, v1={webhook_sign(signing, ts, 'd-2', body)}"
    assert deliver(body, secret=None, timestamp=int(ts), signature=both, delivery="d-2").status_code == 201
    assert deliver(body, secret=newer).status_code == 201
    assert Run.objects.count() == 2


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong signature", "no valid signature"),
        ("stale", "away from now"),
        ("future", "away from now"),
        ("no signature header", "headers are required"),
        ("malformed signature", "must look like"),
        ("malformed timestamp", "Unix time"),
        ("not json", "not valid JSON"),
        ("unknown task", "unknown task"),
        ("revoked secret", "no valid signature"),
    ],
)
def test_doubtful_deliveries_are_refused_and_nothing_is_enqueued(signing, case, expected):
    body = b'{"order": 7}'
    now = int(time.time())
    if case == "wrong signature":
        response = deliver(body, secret="whsec_not-the-one")
    elif case == "stale":
        response = deliver(body, secret=signing, timestamp=now - 301)
    elif case == "future":
        response = deliver(body, secret=signing, timestamp=now + 301)
    elif case == "no signature header":
        response = deliver(body, secret=None)
    elif case == "malformed signature":
        response = deliver(body, secret=None, signature="sha256=abc")
    elif case == "malformed timestamp":
        response = Client().post("/api/webhooks/test-noop", body, content_type="application/json",
                                 headers={"Stepwise-Timestamp": "yesterday", "Stepwise-Signature": "v1=00",
                                          "Stepwise-Delivery": "d-1"})
    elif case == "not json":
        response = deliver(b"{order", secret=signing)
    elif case == "unknown task":
        response = deliver(body, secret=signing, task="nope")
    else:
        from stepwise.tasks.models import WebhookSecret
        from stepwise.tasks.webhooks import webhook_secret_revoke

        webhook_secret_revoke(environment="prod", secret_id=WebhookSecret.objects.get().id)
        response = deliver(body, secret=signing)
    assert 400 <= response.status_code < 500, response.content
    assert expected in response.json()["detail"]
    assert not Run.objects.exists()


def test_a_replayed_delivery_id_is_refused(signing):
    assert deliver(b'{"n": 1}', secret=signing, delivery="evt_1").status_code == 201
    again = deliver(b'{"n": 1}', secret=signing, delivery="evt_1")
    assert again.status_code == 401 and "already received" in again.json()["detail"]
    assert Run.objects.count() == 1


def test_a_signature_over_a_different_body_is_refused(signing):
    ts = int(time.time())
    signature = f"v1={webhook_sign(signing, str(ts), 'd-1', json.dumps({'amount': 1}).encode())}"
    response = deliver(json.dumps({"amount": 1000}).encode(), secret=None, timestamp=ts, signature=signature,
                       delivery="d-1")
    assert response.status_code == 401 and not Run.objects.exists()


def test_a_replay_without_its_delivery_id_or_with_another_is_refused(signing):
    body, ts = b'{"n": 1}', int(time.time())
    signature = f"v1={webhook_sign(signing, str(ts), 'evt_1', body)}"
    assert deliver(body, secret=None, timestamp=ts, signature=signature, delivery="evt_1").status_code == 201
    without = deliver(body, secret=None, timestamp=ts, signature=signature, send_delivery=False)
    assert without.status_code == 401 and "Stepwise-Delivery" in without.json()["detail"]
    other = deliver(body, secret=None, timestamp=ts, signature=signature, delivery="evt_2")
    assert other.status_code == 401 and "no valid signature" in other.json()["detail"]
    assert Run.objects.count() == 1


def test_the_senders_helper_signs_a_delivery_the_api_accepts_once(signing):
    body = b'{"order": 8}'
    headers = webhook_headers(signing, body)
    first = Client().post("/api/webhooks/test-noop", body, content_type="application/json", headers=headers)
    again = Client().post("/api/webhooks/test-noop", body, content_type="application/json", headers=headers)
    assert first.status_code == 201 and again.status_code == 401
    assert Run.objects.get().metadata == {"delivery_id": headers["Stepwise-Delivery"]}
