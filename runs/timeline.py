"""The run timeline: one JSON shape of spans (run, attempts, retry delays, steps) that the console draws.

Spans and waitpoints from the tracing and waits work slot in here as more span kinds; the
browser only knows this shape and the RunEvent messages that extend it live.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from stepwise.runs.models import Attempt, Run, RunEvent, Span, Step, Waitpoint
from stepwise.runs.selectors import spans_held
from stepwise.tasks.redaction import RunDisplay, run_display

# Attempt statuses drawn as failures on the timeline.
FAILED_ATTEMPTS = frozenset({"FAILED", "CRASHED", "TIMED_OUT"})


def epoch_ms(moment: datetime | None) -> float | None:
    """Return a timestamp as Unix milliseconds (the timeline's time unit)."""
    return None if moment is None else round(moment.timestamp() * 1000, 3)


# Events drawn as log markers on the run's bar.
NOTED_EVENTS = ("version.mismatch", "version.waiting")


def _note(type_: str, data: dict[str, Any]) -> str:
    if type_ == "version.mismatch":
        worker, pinned = str(data.get("worker"))[:10], str(data.get("pinned"))[:10]
        return f"version mismatch: attempt {data.get('attempt')} ran code {worker}, the run is pinned to {pinned}"
    if type_ == "version.waiting":
        return (f"waiting for a worker of version {data.get('version')}: no running worker holds it "
                f"(fails after {data.get('grace_seconds', 0):g}s)")
    return f"{type_} {data}"


def _error_summary(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return an error without its traceback (the inspector reads a step's full error on demand)."""
    if not error:
        return None
    return {"type": error.get("type", ""), "message": error.get("message", ""),
            **{k: error[k] for k in ("causes", "causes_left_off") if error.get(k)}}


def _run_span(run: Run) -> dict[str, Any]:
    return {
        "id": "run",
        "parent": None,
        "kind": "run",
        "name": run.task_id,
        "status": run.status,
        "start": epoch_ms(run.created_at),
        "end": epoch_ms(run.finished_at),
        "error": run.error,
        "attributes": {"run_id": run.id, "version": run.version.label, "version_policy": run.version_policy,
                       "queue": run.queue},
        "logs": [],
    }


def _attempt_spans(attempt: Attempt) -> list[dict[str, Any]]:
    spans = [
        {
            "id": f"attempt-{attempt.number}",
            "parent": "run",
            "kind": "attempt",
            "name": f"Attempt {attempt.number}",
            "status": attempt.status,
            "start": epoch_ms(attempt.started_at),
            "end": epoch_ms(attempt.finished_at),
            "error": attempt.error,
            "attributes": {"attempt": attempt.number, "worker": attempt.worker_id, "version": attempt.version.label},
            "logs": [],
        }
    ]
    if attempt.retry_delay and attempt.finished_at:
        spans.append(
            {
                "id": f"retry-{attempt.number}",
                "parent": "run",
                "kind": "retry",
                "name": f"Retry in {attempt.retry_delay:.1f}s",
                "status": "RETRYING",
                "start": epoch_ms(attempt.finished_at),
                "end": epoch_ms(attempt.finished_at + timedelta(seconds=attempt.retry_delay)),
                "error": None,
                "attributes": {"retry_delay_s": round(attempt.retry_delay, 3)},
                "logs": [],
            }
        )
    return spans


def step_span(*, position: int, key: str, name: str, attempt: int, status: str, start: datetime,
              end: datetime | None, error: dict[str, Any] | None = None, kind: str = "step") -> dict[str, Any]:
    """Return the span of one step (recorded, running, or interrupted by its attempt's end)."""
    return {
        "id": f"step-{attempt}-{position}",
        "parent": f"attempt-{attempt}",
        "kind": kind,
        "name": name,
        "status": status,
        "start": epoch_ms(start),
        "end": epoch_ms(end),
        "error": _error_summary(error),
        "attributes": {"key": key, "position": position, "attempt": attempt},
        "logs": [],
    }


def _unrecorded_status(attempt: Attempt) -> str:
    """Return the status of a step its attempt left unrecorded: running, canceled with it, or cut short."""
    if attempt.finished_at is None:
        return "EXECUTING"
    return "CANCELED" if attempt.status == "CANCELED" else "INTERRUPTED"


def _queued_span(run: Run, previous: Attempt | None, waits: list[Waitpoint], *, until: datetime | None,
                 number: int) -> dict[str, Any] | None:
    """Return the time the run sat in its queue before attempt ``number`` (open while it still does).

    It starts when the run became ready: created (or its delay ended) before the first attempt; the
    retry delay's end, or the last wait's completion, before a later one.
    """
    if previous is None:
        ready = max(run.created_at, run.delay_until) if run.delay_until else run.created_at
    else:
        if previous.finished_at is None:
            return None
        ready = previous.finished_at + timedelta(seconds=previous.retry_delay or 0)
        done = [wp.completed_at for wp in waits if wp.completed_at and wp.created_at >= previous.started_at
                and (until is None or wp.completed_at <= until)]
        ready = max([ready, *done])
    if until is not None and (until - ready).total_seconds() < 0.001:
        return None
    return {
        "id": f"queued-{number}",
        "parent": "run",
        "kind": "queued",
        "name": "Queued" if number == 1 else f"Queued for attempt {number}",
        "status": "QUEUED" if until is None else "COMPLETED",
        "start": epoch_ms(ready),
        "end": epoch_ms(until),
        "error": None,
        "attributes": {"attempt": number, "queue": run.queue},
        "logs": [],
    }


WAIT_STATUS = {"PENDING": "WAITING", "COMPLETED": "COMPLETED", "TIMED_OUT": "TIMED_OUT", "CANCELED": "CANCELED"}


def _wait_span(wp: Waitpoint, display: RunDisplay) -> dict[str, Any]:
    what = wp.description or (f"event {wp.event_name}" if wp.event_name else wp.get_kind_display())
    return {
        "id": f"wait-{wp.id}",
        "parent": "run",
        "kind": "wait",
        "name": f"Wait: {what}",
        "status": WAIT_STATUS.get(wp.status, wp.status),
        "start": epoch_ms(wp.created_at),
        "end": epoch_ms(wp.completed_at),
        "error": None,
        "attributes": {
            "waitpoint": wp.id,
            "kind": wp.kind,
            "key": wp.key,
            **({"event": wp.event_name, "filter": wp.event_filter} if wp.event_name else {}),
            **({"timeout_at": wp.resume_at.isoformat()} if wp.resume_at else {}),
            **({"completed_by": wp.completed_by} if wp.completed_by else {}),
            "output": display.value(wp.output),  # the run resumes with it as a step result: shown as those are
        },
        "logs": [],
    }


def _traced(spans: list[Span]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Map stored OpenTelemetry spans onto timeline ids; return (span id -> timeline id, user spans)."""
    ids: dict[str, str] = {}
    for span in spans:
        attempt = span.attributes.get("stepwise.attempt")
        if span.kind == "run":
            ids[span.span_id] = "run"
        elif span.kind == "attempt" and attempt:
            ids[span.span_id] = f"attempt-{attempt}"
        elif span.kind == "step" and not span.attributes.get("stepwise.step.replayed"):
            ids[span.span_id] = f"step-{attempt}-{span.attributes.get('stepwise.step.position')}"
    users = []
    for span in spans:
        if span.kind != "user":
            continue
        ids[span.span_id] = f"span-{span.span_id}"
        users.append(
            {
                "id": f"span-{span.span_id}",
                "parent": ids.get(span.parent_span_id, "run"),
                "kind": "user",
                "name": span.name,
                "status": "FAILED" if span.status == "ERROR" else "COMPLETED",
                "start": epoch_ms(span.started_at),
                "end": epoch_ms(span.ended_at),
                "error": {"type": "Error", "message": span.status_message} if span.status == "ERROR" else None,
                "attributes": span.attributes,
                "logs": [],
            }
        )
    return ids, users


def _span_logs(spans: list[Span], ids: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    logs: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        target = ids.get(span.span_id)
        for event in span.events or []:
            attributes = dict(event.get("attributes") or {})
            level = str(attributes.pop("log.severity", "info")).lower()
            message = attributes.pop("log.message", None) or event.get("name", "")
            logs.setdefault(target or "run", []).append(
                {"at": epoch_ms(datetime.fromisoformat(event["at"])), "level": level, "message": str(message),
                 "attributes": attributes}
            )
    return logs


def run_timeline(*, run: Run, first: int | None = None, viewer: Any = None) -> dict[str, Any]:
    """Return the spans of a run in display order (each attempt followed by its steps), in three queries.

    With ``first``, a run with more recorded steps than that gets only the first ones and none of its
    stored OpenTelemetry spans: a quick first screen, marked ``partial``, that the whole timeline replaces.
    Waitpoints' outputs are shown as ``viewer`` may see them (stepwise.tasks.redaction.run_display).
    """
    attempts = list(Attempt.objects.filter(run_id=run.id).select_related("version").order_by("number"))
    recorded_steps = (
        Step.objects.filter(run_id=run.id, kind="step")
        .order_by("position")
        .only("position", "key", "name", "kind", "status", "error", "attempt_number", "started_at", "finished_at",
              "span_id", "parent_span_id")
    )
    steps = list(recorded_steps[:first] if first else recorded_steps)
    noted = RunEvent.objects.filter(run_id=run.id, type__in=["step.started", *NOTED_EVENTS])
    started = []
    run_span = _run_span(run)
    for type_, data, at in noted.order_by("seq").values_list("type", "data", "created_at"):
        if type_ == "step.started":
            started.append((data, at))
        else:
            run_span["logs"].append({"at": epoch_ms(at), "level": "warning", "message": _note(type_, data)})
    recorded = {(s.attempt_number, s.key) for s in steps}
    by_attempt: dict[int, list[dict[str, Any]]] = {a.number: [] for a in attempts}
    for step in steps:
        by_attempt.setdefault(step.attempt_number, []).append(
            step_span(position=step.position, key=step.key, name=step.name, attempt=step.attempt_number,
                      status=step.status, start=step.started_at, end=step.finished_at, error=step.error,
                      kind=step.kind)
        )
    ends = {a.number: a for a in attempts}
    partial = bool(first) and len(steps) == first
    stored = [] if partial else list(Span.objects.filter(run_id=run.id).order_by("started_at", "id"))
    traced = [] if partial else spans_held(run, stored, steps, attempts)
    # Steps that left no record: running now, or cut short by a failed attempt. Their stored span
    # says so (older runs stored a "step.started" event instead).
    unrecorded: dict[tuple[Any, Any], tuple[int, str, datetime, datetime | None]] = {}
    for span in traced:
        if span.kind == "step" and not span.attributes.get("stepwise.step.replayed"):
            a = span.attributes
            unrecorded[(a.get("stepwise.attempt"), a.get("stepwise.step.key"))] = (
                a.get("stepwise.step.position", 0), a.get("stepwise.step.name", ""), span.started_at, span.ended_at)
    for data, at in started:
        unrecorded.setdefault((data.get("attempt"), data.get("key")), (data.get("position", 0), data.get("name", ""),
                                                                     at, None))
    for (number, key), (position, name, start, end) in unrecorded.items():
        if (number, key) in recorded or number not in ends:
            continue
        attempt = ends[number]
        status = _unrecorded_status(attempt)
        by_attempt[number].append(
            step_span(position=position, key=key or "", name=name, attempt=number, status=status, start=start,
                      end=end or attempt.finished_at, error=attempt.error if status == "INTERRUPTED" else None)
        )
    ids, user_spans = _traced(traced)
    children: dict[str, list[dict[str, Any]]] = {}
    for span in user_spans:
        children.setdefault(span["parent"], []).append(span)

    def with_children(span: dict[str, Any]) -> list[dict[str, Any]]:
        return [span, *[row for child in children.get(span["id"], []) for row in with_children(child)]]

    waits = list(Waitpoint.objects.filter(run_id=run.id).order_by("created_at"))
    display = run_display(run, viewer=viewer)
    spans = [run_span]
    for index, attempt in enumerate(attempts):
        own = sorted(by_attempt.get(attempt.number, []), key=lambda span: span["attributes"]["position"])
        head, *retry = _attempt_spans(attempt)
        queued = _queued_span(run, attempts[index - 1] if index else None, waits, until=attempt.started_at,
                              number=attempt.number)
        spans += [queued] if queued else []
        spans += with_children(head)
        for step_row in own:
            spans += with_children(step_row)
        spans += retry
        later = attempts[index + 1].started_at if index + 1 < len(attempts) else None
        spans += [_wait_span(wp, display) for wp in waits if wp.created_at >= attempt.started_at
                  and (later is None or wp.created_at < later)]
    if run.status == "QUEUED":
        queued = _queued_span(run, attempts[-1] if attempts else None, waits, until=None,
                              number=len(attempts) + 1)
        spans += [queued] if queued else []
    logs = _span_logs(traced, ids)
    for span in spans:
        span["logs"] = sorted(span["logs"] + logs.get(span["id"], []), key=lambda line: line["at"] or 0)
    return {
        "run": {"id": run.id, "status": run.status, "is_finished": run.is_finished, "attempts": run.attempt_count},
        "last_seq": run.last_event_seq,
        "now": epoch_ms(timezone.now()),
        "partial": partial,
        "spans": [_compact(span) for span in spans],
    }


def _compact(span: dict[str, Any]) -> dict[str, Any]:
    """Leave out what a span does not have (no error, no logs): a 5,000-step timeline stays small."""
    return {k: v for k, v in span.items() if k not in ("error", "logs") or v}
