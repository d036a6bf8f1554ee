"""A run's trace exported as JSON lines, a markdown report and OTLP-JSON, from the API, the console and the CLI."""
from __future__ import annotations

import base64
import json

import pytest
from django.core.management import CommandError
from django.test import Client
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stepwise.runs.models import Attempt, Run, RunEvent, Step
from stepwise.runs.selectors import run_spans
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.api.conftest import ApiClient
from tests.commands import run_command
from tests.roles import grant
from tests.waiting import run_requeue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def flaky_run(processes) -> Run:
    """A run whose third step failed on attempts 1 and 2 and that completed on attempt 3."""
    run, _ = run_trigger(task_id="test-third-step-flaky", payload={"order": "A-17"})
    for _ in range(2):
        assert run_attempt(run.id).result == "retrying"
        run_requeue(run.id)
    assert run_attempt(run.id).result == "completed"
    return Run.objects.select_related("version").get(id=run.id)


@pytest.fixture
def chatty_run(processes) -> Run:
    """A run whose steps log a line and open a span of their own."""
    run, _ = run_trigger(task_id="test-chatty-steps", payload={"steps": 2, "sleep": 0})
    assert run_attempt(run.id).result == "completed"
    return Run.objects.select_related("version").get(id=run.id)


def _body(response) -> str:
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


def test_the_markdown_report_tells_the_attempts_their_errors_and_the_steps(flaky_run):
    report = run_command("runs", "export", flaky_run.id, "--format", "markdown")

    assert report.startswith(f"# test-third-step-flaky · {flaky_run.id}\n")
    assert "- **Status:** COMPLETED" in report and "- **Attempts:** 3" in report
    assert '"order": "A-17"' in report
    failed = [line for line in report.splitlines() if line.startswith(("| 1 | FAILED", "| 2 | FAILED"))]
    assert len(failed) == 2 and all("Flaky: third step fails on attempt" in line for line in failed)
    assert "| 3 | COMPLETED |" in report
    assert [line.split("|")[2].strip() for line in report.splitlines() if line.startswith("| ") and " step |" in line
            ] == ["first", "second", "third"]


def test_json_lines_hold_every_row_of_the_run_one_object_a_line(chatty_run):
    lines = run_command("runs", "export", chatty_run.id, "--format", "jsonl").splitlines()
    objects = [json.loads(line) for line in lines]

    kinds = [o["type"] for o in objects]
    assert kinds[0] == "run" and objects[0]["id"] == chatty_run.id
    assert kinds.count("attempt") == Attempt.objects.filter(run=chatty_run).count() == 1
    assert kinds.count("step") == Step.objects.filter(run=chatty_run).count() == 2
    assert kinds.count("span") == len(run_spans(run_id=chatty_run.id))
    assert kinds.count("event") == RunEvent.objects.filter(run=chatty_run).count()
    assert {o["name"] for o in objects if o["type"] == "span"} >= {"work a1", "step s0", "step s1"}
    logs = [o["data"]["message"] for o in objects if o["type"] == "event" and o["event"] == "log"]
    assert logs == ["step 0 of attempt 1", "step 1 of attempt 1"]


def test_otlp_json_is_a_valid_export_request_with_every_span_and_its_parent(chatty_run):
    request = json.loads(run_command("runs", "export", chatty_run.id, "--format", "otlp"))

    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == len(run_spans(run_id=chatty_run.id))
    ids = {s["spanId"] for s in spans}
    roots = [s["name"] for s in spans if s.get("parentSpanId") not in ids]
    assert roots == ["run test-chatty-steps"], "every span but the run's own hangs under another span of the run"
    assert {s["traceId"] for s in spans} == {chatty_run.trace_id}
    # OTLP/JSON writes ids in hex; protobuf's JSON mapping reads bytes as base64.
    for span in spans:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    parsed = json_format.Parse(json.dumps(request), ExportTraceServiceRequest())
    assert parsed.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano > 0


def test_the_api_and_the_console_serve_each_format_as_a_download(chatty_run, django_user_model):
    signed_in = Client()
    viewer = django_user_model.objects.create_user(username="ada")
    grant(viewer, "dev", "viewer")  # reading a run is all an export needs
    signed_in.force_login(viewer)
    environments_ensure()
    api = ApiClient(api_key_create(environment="dev", name="exports").secret)

    for fmt, kind in (("jsonl", "application/x-ndjson"), ("markdown", "text/markdown"), ("otlp", "application/json")):
        answer = api.get(f"/api/runs/{chatty_run.id}/export", format=fmt)
        assert answer.status_code == 200 and answer["Content-Type"].startswith(kind)
        assert chatty_run.id in answer["Content-Disposition"]
        page = signed_in.get(f"/runs/{chatty_run.id}/export.{fmt}")
        assert page.status_code == 200 and _body(page) == _body(answer)

    refused = api.get(f"/api/runs/{chatty_run.id}/export", format="pdf")
    assert refused.status_code == 422 and "jsonl" in refused.content.decode()
    assert signed_in.get(f"/runs/{chatty_run.id}/export.pdf").status_code == 404
    detail = signed_in.get(f"/runs/{chatty_run.id}/").content.decode()
    assert f'href="/runs/{chatty_run.id}/export.markdown"' in detail
    stranger = Client()
    stranger.force_login(django_user_model.objects.create_user(username="bob"))  # no role anywhere
    assert stranger.get(f"/runs/{chatty_run.id}/export.markdown").status_code == 403


def test_the_cli_writes_an_export_to_a_file_and_names_what_is_wrong(chatty_run, tmp_path):
    target = tmp_path / "trace.jsonl"

    said = run_command("runs", "export", chatty_run.id, "--format", "jsonl", "--output", str(target))

    assert said.startswith(f"wrote {target}") and json.loads(target.read_text().splitlines()[0])["type"] == "run"
    with pytest.raises(CommandError, match="no run with id 'run_nope'"):
        run_command("runs", "export", "run_nope")
    with pytest.raises(CommandError, match="cannot write"):
        run_command("runs", "export", chatty_run.id, "--output", str(tmp_path / "missing" / "x.md"))
