"""The engine's spans (attempt, step, wait) opened with the OpenTelemetry API.

The process decides where spans go by installing a tracer provider (``stepwise.runs.tracing``);
without one, these spans are free no-ops.
"""
from __future__ import annotations

import random
import time
import traceback
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN_ID, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from stepwise.runs.engine.store import Claim

RUN_ID = "stepwise.run_id"
KIND = "stepwise.kind"
_disabled = trace.NoOpTracer()
# A proxy until the process installs a provider; it then delegates to the real tracer.
_tracer = trace.get_tracer("stepwise")
_tracing_enabled = True


class SpanSink(Protocol):
    """Where the engine's spans recorded without the SDK go when they end: the span processor that stores them.

    Such a span carries its run and its attempt's lease, so the sink needs no word of its start.
    """

    def on_end(self, span: Any) -> None: ...


_direct_sink: SpanSink | None = None
_direct_limits: SpanLimits | None = None


def engine_tracer() -> trace.Tracer:
    """Return the tracer the engine opens its spans with."""
    return _tracer if _tracing_enabled else _disabled


def tracing_enabled_set(enabled: bool) -> None:
    """Turn the engine's own spans on or off in this process (the benchmark compares both)."""
    global _tracing_enabled
    _tracing_enabled = enabled


def engine_spans_direct(sink: SpanSink | None, limits: SpanLimits | None = None) -> None:
    """Record attempt and step spans without the SDK and hand them to ``sink`` (None: through the SDK, the default).

    A step's span through the SDK costs about as much Python as the rest of the step around its
    statement, and an attempt's a fifth of a no-op run's. The tracing setup chooses this when
    the database is the only place spans go: an exporter, or a tracer provider the project
    installed with processors of its own, gets them through the SDK.
    """
    global _direct_sink, _direct_limits
    _direct_sink, _direct_limits = sink, limits or SpanLimits()


def run_span_context(claim: Claim) -> Context | None:
    """Return a context whose current span is the run's root span, so attempts join the run's trace."""
    if not claim.trace_id or not claim.span_id:
        return None
    return trace.set_span_in_context(NonRecordingSpan(_run_span(claim)))


def _run_span(claim: Claim) -> SpanContext:
    # Always sampled: the console shows every run's spans even if the caller did not sample.
    return SpanContext(
        int(claim.trace_id, 16), int(claim.span_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def attempt_span_attributes(*, task_id: str, number: int, worker_id: str, version_hash: str) -> dict[str, Any]:
    """Return the attributes the engine puts on an attempt's span (besides the run and the kind)."""
    return {"stepwise.task_id": task_id, "stepwise.attempt": number, "stepwise.worker_id": worker_id,
            "stepwise.version": version_hash[:12]}


def step_span_attributes(*, key: str, name: str, position: int, replayed: bool, attempt: int) -> dict[str, Any]:
    """Return the attributes the engine puts on a step's span (besides the run and the kind)."""
    return {"stepwise.step.key": key, "stepwise.step.name": name, "stepwise.step.position": position,
            "stepwise.step.replayed": replayed, "stepwise.attempt": attempt}


def attempt_span_start(claim: Claim) -> trace.Span:
    """Start the span of one attempt as a child of the run's span."""
    name = f"attempt {claim.attempt_number}"
    attributes = {
        RUN_ID: claim.run_id,
        KIND: "attempt",
        **attempt_span_attributes(task_id=claim.task_id, number=claim.attempt_number,
                                  worker_id=claim.worker_id, version_hash=claim.version_hash),
    }
    sink = _direct_sink if _tracing_enabled else None
    if sink is not None and claim.trace_id and claim.span_id:
        return DirectSpan(name, parent=_run_span(claim), attributes=attributes, sink=sink, limits=_direct_limits,
                          lease_token=claim.lease_token)
    return engine_tracer().start_span(name, context=run_span_context(claim), attributes=attributes)


def attempt_span_end(
    span: trace.Span, *, result: str, error: dict[str, Any] | None = None, retry_delay: float | None = None,
    claim: Claim | None = None,
) -> str:
    """End an attempt's span with its result, error and the delay before the next attempt.

    Return the span's id when the attempt's row is to hold it instead of a span row, else "".
    That is when the span goes only to the database (recorded without the SDK), the attempt
    completed, and nothing but the engine's attributes is on the span: no log line, no event or
    attribute of the task's code, the run's own trace. ``claim`` is the attempt's, whose version
    is the one its row names (None: the worker runs other code; not held).
    """
    if not span.is_recording():
        return ""
    direct = type(span) is DirectSpan
    (span.engine_attribute_set if direct else span.set_attribute)("stepwise.attempt.result", result)
    if retry_delay is not None:
        span.set_attribute("stepwise.retry_delay", round(retry_delay, 3))
    if error is not None:
        span.add_event(
            "exception",
            {"exception.type": error.get("type", ""), "exception.message": error.get("message", "")},
        )
        span.set_status(Status(StatusCode.ERROR, f"{error.get('type')}: {error.get('message')}"))
    elif result == "completed":
        span.set_status(Status(StatusCode.OK))
    held = ""
    if direct and result == "completed" and claim is not None and span.plain and _in_run_trace(span.context, claim):
        span.stored = True  # the sink stores no row of it: the attempt's row holds it
        held = f"{span.context.span_id:016x}"
    span.end()
    return held


def _in_run_trace(context: SpanContext, claim: Claim) -> bool:
    """Tell whether a span is in its run's own trace (a row holding it names no trace of its own)."""
    return bool(claim.trace_id) and context.trace_id == int(claim.trace_id, 16)


def step_span(
    claim: Claim, *, key: str, name: str, position: int, replayed: bool
) -> AbstractContextManager[trace.Span]:
    """Open the current span of one step; spans the step's code opens nest under it."""
    attributes = {
        RUN_ID: claim.run_id,
        KIND: "step",
        **step_span_attributes(key=key, name=name, position=position, replayed=replayed,
                               attempt=claim.attempt_number),
    }
    sink = _direct_sink if _tracing_enabled else None
    parent = trace.get_current_span().get_span_context() if sink is not None else None
    if parent is not None and parent.is_valid:
        return _CurrentDirectSpan(DirectSpan(f"step {key}", parent=parent, attributes=attributes, sink=sink,
                                             limits=_direct_limits, lease_token=claim.lease_token))
    return _sdk_step_span(key, attributes)


class _CurrentDirectSpan:
    """What ``trace.use_span(span, end_on_exit=True)`` does for a step's DirectSpan, as a plain class.

    A step enters one on every call: a generator-made context manager cost twice as much.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, span: DirectSpan) -> None:
        self._span = span

    def __enter__(self) -> DirectSpan:
        self._token = context_api.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        span = self._span
        try:
            if kind is None:
                span.set_status(Status(StatusCode.OK))
            elif issubclass(kind, Exception):  # as the SDK: BaseException (an interrupt) is no error
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {exc}"))
        finally:
            context_api.detach(self._token)
            span.end()


@contextmanager
def _sdk_step_span(key: str, attributes: dict[str, Any]) -> Iterator[trace.Span]:
    with engine_tracer().start_as_current_span(f"step {key}", attributes=attributes) as span:
        yield span
        span.set_status(Status(StatusCode.OK))


def step_span_ids(span: trace.Span, claim: Claim) -> tuple[str, str]:
    """Return the hex ids (span, parent) of a step's span that its record can store, or two empty strings.

    Only a plain span recorded without the SDK, in the run's own trace, qualifies: everything
    else it would say (name, attributes, OK, times) the step's row says already, and
    ``stepwise.runs.selectors.run_spans`` makes it a span again. Mark it ``step_span_stored``
    once the record is written, and its sink stores nothing more of it.
    """
    if type(span) is not DirectSpan or not span.plain or not _in_run_trace(span.context, claim):
        return "", ""
    return f"{span.context.span_id:016x}", f"{span.parent.span_id:016x}"


def step_span_stored(span: trace.Span) -> None:
    """Say that a step's span was stored with its step's record (its ids came from ``step_span_ids``)."""
    if type(span) is DirectSpan:
        span.stored = True


@contextmanager
def engine_span(
    claim: Claim, *, kind: str, name: str, attributes: dict[str, Any] | None = None
) -> Iterator[trace.Span]:
    """Open a span of another engine kind (a wait, for example) under the current span."""
    attributes = {RUN_ID: claim.run_id, KIND: kind, "stepwise.attempt": claim.attempt_number, **(attributes or {})}
    with engine_tracer().start_as_current_span(name, attributes=attributes) as span:
        yield span


def wait_span_record(claim: Claim, *, key: str, waitpoint_id: str, status: str, started, ended) -> None:
    """Record a resolved wait as a span under the run's span, from its waitpoint's creation to its resolution."""
    if started is None or ended is None:
        return
    span = engine_tracer().start_span(
        f"wait {key}",
        context=run_span_context(claim),
        start_time=int(started.timestamp() * 1e9),
        attributes={
            RUN_ID: claim.run_id,
            KIND: "wait",
            "stepwise.attempt": claim.attempt_number,
            "stepwise.wait.key": key,
            "stepwise.waitpoint": waitpoint_id,
            "stepwise.wait.status": status,
        },
    )
    if status == "COMPLETED":
        span.set_status(Status(StatusCode.OK))
    else:
        span.set_status(Status(StatusCode.ERROR, status))
    span.end(end_time=int(ended.timestamp() * 1e9))


@dataclass(frozen=True)
class SpanEvent:
    """An event of a step span, shaped as the SDK's (name, attributes, timestamp in ns)."""

    name: str
    attributes: BoundedAttributes
    timestamp: int


@dataclass(frozen=True)
class SpanLimits:
    """How much of a step's attributes and events its span keeps, as the SDK's limits say (128 each by default)."""

    attributes: int | None = 128
    events: int | None = 128
    event_attributes: int | None = 128
    span_attribute_length: int | None = None  # of a span's attribute values
    attribute_length: int | None = None  # of an event's


@dataclass(eq=False)
class DirectSpan(trace.Span):
    """An attempt's or a step's span recorded without the SDK: what the span processor reads of an ended span.

    It is the current span while the attempt or step runs, so the spans its code opens (through
    the SDK) nest under it and its log lines become its events; ending it hands it to the sink,
    which stores it like any other span of the run. Attributes and events set on it are kept as the SDK keeps
    them (values cleaned, the oldest dropped past the limits).
    """

    name: str
    parent: SpanContext
    attributes: dict[str, Any] | BoundedAttributes
    sink: SpanSink
    limits: SpanLimits = SpanLimits()
    lease_token: str | None = None  # of the attempt that opened it: its row is stored under that lease
    events: deque[SpanEvent] = field(init=False)
    status: Status = field(default_factory=Status)
    start_time: int = field(default_factory=time.time_ns)
    end_time: int | None = None
    context: SpanContext = field(init=False)
    # Nothing was set on it but what the engine sets: it can be stored as part of its step's record.
    plain: bool = field(default=True, init=False)
    # It was stored with its step's record: the sink has nothing left to store.
    stored: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        span_id = random.getrandbits(64)
        while span_id == INVALID_SPAN_ID:
            span_id = random.getrandbits(64)
        self.context = SpanContext(self.parent.trace_id, span_id, is_remote=False, trace_flags=self.parent.trace_flags)
        self.events = deque(maxlen=self.limits.events)
        if self.limits.span_attribute_length is not None:  # values to shorten, as the SDK would at the start
            self._checked_attributes()
            self.plain = False  # values may have been shortened: the row says what was kept

    def _checked_attributes(self) -> BoundedAttributes:
        if not isinstance(self.attributes, BoundedAttributes):  # the engine's own are clean; the code's are checked
            self.attributes = BoundedAttributes(
                self.limits.attributes, self.attributes, immutable=False,
                max_value_len=self.limits.span_attribute_length,
            )
        return self.attributes

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def engine_attribute_set(self, key: str, value: Any) -> None:
        """Set an attribute only the engine sets: the span stays plain (the row that holds it says it again)."""
        if self.is_recording():
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        if self.is_recording():
            self._checked_attributes()[key] = value
            self.plain = False

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self.is_recording() and self.limits.events != 0:
            kept = BoundedAttributes(
                self.limits.event_attributes, attributes, immutable=True, max_value_len=self.limits.attribute_length
            )
            self.events.append(SpanEvent(name, kept, timestamp or time.time_ns()))
            self.plain = False

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        """Links are not stored (the console shows none); accepted so code written for the SDK runs."""

    def update_name(self, name: str) -> None:
        if self.is_recording():
            self.name = name
            self.plain = False

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if not self.is_recording() or self.status.status_code is StatusCode.OK:  # OK is final, as in the SDK
            return
        self.status = status if isinstance(status, Status) else Status(status, description)
        if self.status.status_code is not StatusCode.OK:
            self.plain = False

    def record_exception(
        self, exception: BaseException, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        self.add_event("exception", {
            "exception.type": f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            self.sink.on_end(self)
