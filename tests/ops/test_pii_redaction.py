"""PII canary: a personal value reaches the task, but no log, span, event, error, page, API answer, export or frame."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from stepwise.runs.engine.redaction import REDACTED, redact_keys
from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.statuses import WaitpointKind, WaitpointStatus
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.api.conftest import ApiClient
from tests.api.test_secret_canary import RedisMonitor
from tests.factories import run_build
from tests.roles import grant
from tests.waiting import wait_finished


def rows_containing(needle: str) -> list[str]:
    """Return the stored rows holding ``needle`` among those that must never (run rows: their error only)."""
    hits = []
    with connection.cursor() as cursor:
        for table in ("stepwise_runs_attempt", "stepwise_runs_runevent", "stepwise_runs_span"):
            cursor.execute(f"SELECT row_to_json(t)::text FROM {table} t")  # noqa: S608
            hits += [f"{table}: {row[0][:200]}" for row in cursor.fetchall() if needle in row[0]]
        cursor.execute("SELECT id, error::text FROM stepwise_runs_run")
        hits += [f"stepwise_runs_run.error of {row[0]}" for row in cursor.fetchall() if row[1] and needle in row[1]]
    return hits


@pytest.mark.django_db(transaction=True)
def test_a_personal_value_reaches_the_task_but_is_never_stored_in_logs_spans_events_or_errors_nor_shown(live_api):
    canary = f"canary-{uuid.uuid4().hex}@example.com"
    with RedisMonitor() as monitor:
        ok = live_api.post("/api/tasks/test-pii/trigger", {"payload": {"email": canary}}).json()["id"]
        failing = live_api.post("/api/tasks/test-pii/trigger",
                                {"payload": {"email": canary, "fail": True}}).json()["id"]
        wait_finished(ok)
        wait_finished(failing)
    done, failed = Run.objects.get(id=ok), Run.objects.get(id=failing)
    assert done.status == "COMPLETED" and failed.status == "FAILED"
    # The task had the real value: it counted its characters.
    assert done.output == {"email": canary, "length": len(canary)}  # stored as given: replays and parents read it
    assert "no mailbox for [redacted]" in failed.error["message"]

    assert rows_containing(canary) == []
    assert [c for c in monitor.commands if canary in c] == []
    # The log line and the span are there, redacted.
    assert done.spans.filter(name="send to [redacted]").exists()

    # Shown: the API, exports, the console (as a viewer), its JSON endpoints.
    for run_id in (ok, failing):
        detail = live_api.get(f"/api/runs/{run_id}")
        assert detail.status_code == 200 and canary not in detail.content.decode()
        for fmt in ("jsonl", "markdown", "otlp"):
            exported = live_api.get(f"/api/runs/{run_id}/export", format=fmt)
            body = b"".join(exported.streaming_content) if exported.streaming else exported.content
            assert exported.status_code == 200 and canary.encode() not in body, fmt
    shown = live_api.get(f"/api/runs/{ok}").json()
    assert shown["payload"] == {"email": REDACTED} and shown["output"] == {"email": REDACTED, "length": len(canary)}
    assert shown["metadata"]["contact"] == {"email": REDACTED} and shown["steps"][0]["output"]["email"] == REDACTED

    viewer = User.objects.create_user("vera", password="pw-long-enough-123")
    grant(viewer, "dev", "viewer")
    console = Client()
    console.force_login(viewer)
    for path in (f"/runs/{ok}/", f"/runs/{ok}/timeline.json", f"/runs/{ok}/events.json", f"/runs/{ok}/steps/1.json",
                 f"/runs/{ok}/checkpoint.json", f"/runs/{ok}/export.jsonl", f"/runs/{failing}/", "/"):
        response = console.get(path)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert response.status_code == 200, path
        assert canary.encode() not in body, path


def test_redact_keys_hides_keys_at_any_depth_and_patterns_in_any_text():
    hook = redact_keys("Email", "card", patterns=[r"\b\d{3}-\d{2}-\d{4}\b"])
    value = {"user": {"EMAIL": "a@b.c", "name": "Ada", "notes": ["ssn 123-45-6789"]}, "card": "", "n": 3}
    assert hook(value) == {"user": {"EMAIL": REDACTED, "name": "Ada", "notes": [f"ssn {REDACTED}"]}, "card": "",
                           "n": 3}
    assert json.dumps(hook("call 123-45-6789")) == json.dumps(f"call {REDACTED}")


def test_a_hook_that_fails_hides_the_whole_value():
    from stepwise.runs.engine.redaction import MASK, pii_apply

    def broken(value):
        raise RuntimeError("bug in the hook")

    assert pii_apply(broken, {"email": "a@b.c"}) == MASK



def test_a_run_s_stream_and_its_waitpoints_are_shown_redacted(processes, transactional_db):
    environments_ensure()
    console = processes.console()
    canary = f"canary-{uuid.uuid4().hex}@example.com"
    run = run_build(task_id="test-pii", payload={"email": canary})
    Run.objects.filter(id=run.id).update(output={"email": canary}, metadata={"contact": {"email": canary}})
    waitpoint = Waitpoint.objects.create(run=run, key="approval", position=1, kind=WaitpointKind.TOKEN,
                                         status=WaitpointStatus.COMPLETED, output={"email": canary})
    reader = ApiClient(api_key_create(environment="dev", name="reader", scopes=["read"]).secret)

    # The run is finished: its stream sends the snapshot and the stored events, then ends.
    stream = httpx.get(f"{console}/api/runs/{run.id}/events/stream",
                       headers={"Authorization": f"Bearer {reader.secret}"}, timeout=30)
    assert stream.status_code == 200 and '"output":{"email":"[redacted]"}' in stream.text
    assert canary not in stream.text
    for url in (f"/api/waitpoints/{waitpoint.id}", f"/api/waitpoints?status=COMPLETED&run_id={run.id}"):
        shown = reader.get(url)
        assert shown.status_code == 200 and REDACTED in shown.content.decode(), url
        assert canary not in shown.content.decode(), url
