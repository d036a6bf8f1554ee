"""A run's trace as a file: JSON lines (everything stored), a markdown report, OTLP-JSON (its spans)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, StreamingHttpResponse

from stepwise.runs.engine.errors import error_text
from stepwise.runs.models import Attempt, Run, RunEvent, Step
from stepwise.runs.selectors import run_spans
from stepwise.tasks.redaction import RunDisplay, run_display, run_shown, step_shown

FORMATS = {
    # format: (content type, file extension)
    "jsonl": ("application/x-ndjson", "jsonl"),
    "markdown": ("text/markdown; charset=utf-8", "md"),
    "otlp": ("application/json", "otlp.json"),
}


class UnknownExportFormat(ValueError):
    """The export format is not one of FORMATS."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown export format '{name}' (formats: {', '.join(FORMATS)})")


def _line(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **data}, cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def run_export_jsonl(run: Run, display: RunDisplay) -> Iterator[str]:
    """Yield the run, its attempts, steps, spans and events as JSON objects, one per line, each with a ``type``.

    ``run`` comes as shown to the viewer (run_shown) and ``display`` is theirs, decided before the first line.
    """
    yield _line("run", {
        "id": run.id, "task": run.task_id, "version": run.version.label, "environment": run.environment_id,
        "status": run.status, "payload": run.payload, "output": run.output, "error": run.error,
        "metadata": run.metadata, "tags": run.tags, "queue": run.queue, "idempotency_key": run.idempotency_key,
        "parent_run_id": run.parent_run_id, "root_run_id": run.root_run_id, "trace_id": run.trace_id,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
    })
    for attempt in Attempt.objects.filter(run_id=run.id).order_by("number"):
        yield _line("attempt", {
            "number": attempt.number, "status": attempt.status, "worker": attempt.worker_id,
            "error": attempt.error, "retry_delay": attempt.retry_delay, "started_at": attempt.started_at,
            "finished_at": attempt.finished_at,
        })
    for step in Step.objects.filter(run_id=run.id).order_by("position"):
        step_shown(step, display)
        yield _line("step", {
            "position": step.position, "key": step.key, "name": step.name, "kind": step.kind,
            "status": step.status, "attempt": step.attempt_number, "output": step.output, "error": step.error,
            "started_at": step.started_at, "finished_at": step.finished_at,
        })
    for span in run_spans(run_id=run.id):
        yield _line("span", {
            "trace_id": span.trace_id, "span_id": span.span_id, "parent_span_id": span.parent_span_id,
            "name": span.name, "kind": span.kind, "status": span.status, "status_message": span.status_message,
            "attributes": span.attributes, "events": span.events, "started_at": span.started_at,
            "ended_at": span.ended_at,
        })
    for event in RunEvent.objects.filter(run_id=run.id).order_by("seq").iterator():
        data = display.event({"type": event.type, "data": event.data})["data"]
        yield _line("event", {"seq": event.seq, "event": event.type, "data": data, "at": event.created_at})


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC" if value else "—"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    ms = (end - start).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder), "```", ""]


def run_export_markdown(run: Run) -> str:
    """Return a readable report of the run: what it was asked, how each attempt went, its steps, errors and logs."""
    out = [
        f"# {run.task_id} · {run.id}",
        "",
        f"- **Status:** {run.status}",
        f"- **Task:** {run.task_id}, version {run.version.label}, environment {run.environment_id}, queue {run.queue}",
        f"- **Created:** {_when(run.created_at)}; started {_when(run.started_at)}; finished {_when(run.finished_at)}"
        f" ({_duration(run.started_at, run.finished_at)})",
        f"- **Attempts:** {run.attempt_count}",
    ]
    if run.tags:
        out.append(f"- **Tags:** {', '.join(run.tags)}")
    if run.idempotency_key:
        out.append(f"- **Idempotency key:** `{run.idempotency_key}`")
    if run.parent_run_id:
        out.append(f"- **Parent run:** {run.parent_run_id}")
    out += ["", "## Payload", "", *_json_block(run.payload)]
    if run.error:
        out += ["## Error", "", f"**{_cell(error_text(run.error))}**", ""]
        if run.error.get("traceback"):
            out += ["```", run.error["traceback"].rstrip(), "```", ""]
    else:
        out += ["## Output", "", *_json_block(run.output)]
    if run.metadata:
        out += ["## Metadata", "", *_json_block(run.metadata)]
    attempts = list(Attempt.objects.filter(run_id=run.id).order_by("number"))
    if attempts:
        out += ["## Attempts", "", "| # | status | worker | started | duration | error |", "|---|---|---|---|---|---|"]
        for a in attempts:
            error = error_text(a.error) if a.error else ""
            out.append(f"| {a.number} | {a.status} | {_cell(a.worker_id)} | {_when(a.started_at)} | "
                       f"{_duration(a.started_at, a.finished_at)} | {_cell(error)} |")
        out.append("")
    steps = list(Step.objects.filter(run_id=run.id).order_by("position"))
    if steps:
        out += ["## Steps", "", "| position | key | kind | status | attempt | duration |",
                "|---|---|---|---|---|---|"]
        for s in steps:
            out.append(f"| {s.position} | {_cell(s.key)} | {s.kind} | {s.status} | {s.attempt_number} | "
                       f"{_duration(s.started_at, s.finished_at)} |")
        out.append("")
    logs = RunEvent.objects.filter(run_id=run.id, type="log").order_by("seq")
    lines = [f"{_when(e.created_at)[11:]}  {e.data.get('level', ''):<7} [attempt {e.data.get('attempt', '?')}] "
             f"{e.data.get('message', '')}" for e in logs]
    if lines:
        out += ["## Logs", "", "```", *lines, "```", ""]
    return "\n".join(out)


def _nanos(value: datetime | None) -> str:
    return str(int(value.timestamp() * 1_000_000) * 1000) if value else "0"


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value, cls=DjangoJSONEncoder)}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _any_value(value)} for key, value in values.items()]


_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def run_export_otlp(run: Run) -> dict[str, Any]:
    """Return the run's spans as an OTLP-JSON ExportTraceServiceRequest (ids in hex, as OTLP/JSON has them)."""
    spans = []
    for span in run_spans(run_id=run.id):
        spans.append({
            "traceId": span.trace_id,
            "spanId": span.span_id,
            **({"parentSpanId": span.parent_span_id} if span.parent_span_id else {}),
            "name": span.name,
            "kind": 1,  # SPAN_KIND_INTERNAL
            "startTimeUnixNano": _nanos(span.started_at),
            "endTimeUnixNano": _nanos(span.ended_at or span.started_at),
            "attributes": _attributes({"stepwise.run_id": run.id, "stepwise.kind": span.kind, **span.attributes}),
            "events": [
                {"timeUnixNano": _nanos(datetime.fromisoformat(e["at"])) if e.get("at") else "0",
                 "name": e.get("name", ""), "attributes": _attributes(e.get("attributes") or {})}
                for e in span.events or []
            ],
            "status": {"code": _STATUS.get(span.status, 0), **({"message": span.status_message}
                                                                  if span.status_message else {})},
        })
    resource = {"service.name": "stepwise", "stepwise.environment": run.environment_id}
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes(resource)},
        "scopeSpans": [{"scope": {"name": "stepwise"}, "spans": spans}],
    }]}


def run_export(run: Run, fmt: str, *, viewer: Any) -> tuple[Iterator[str] | str, str, str]:
    """Return (content, content type, file name) of a run's export in ``fmt``, as ``viewer`` may see it.

    Raises UnknownExportFormat. ``viewer`` None is Stepwise itself (the CLI): everything, PII redacted.
    """
    if fmt not in FORMATS:
        raise UnknownExportFormat(fmt)
    content_type, extension = FORMATS[fmt]
    filename = f"{run.id}.{extension}"
    run = run_shown(run, viewer=viewer)  # a no-op for a run its reader already showed
    if fmt == "jsonl":
        # Decided here, not in the generator: it is read after the view has returned.
        return run_export_jsonl(run, run_display(run, viewer=viewer)), content_type, filename
    if fmt == "markdown":
        return run_export_markdown(run), content_type, filename
    return json.dumps(run_export_otlp(run), ensure_ascii=False), content_type, filename


def run_export_response(run: Run, fmt: str, *, viewer: Any) -> HttpResponse | StreamingHttpResponse:
    """Return the run's export in ``fmt``, as ``viewer`` may see it, as a download."""
    content, content_type, filename = run_export(run, fmt, viewer=viewer)
    response_class = StreamingHttpResponse if not isinstance(content, str) else HttpResponse
    response = response_class(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
