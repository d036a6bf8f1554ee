"""Span processors: store the spans of runs in the database in batches, and mask secrets before export."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor

from stepwise.runs.engine.context import current_context
from stepwise.runs.engine.redaction import Redactor, redactor_for
from stepwise.runs.engine.spans import KIND, RUN_ID, DirectSpan

logger = logging.getLogger(__name__)
KINDS = frozenset({"run", "attempt", "step", "wait", "user"})


def _time(nanos: int | None) -> datetime | None:
    return None if nanos is None else datetime.fromtimestamp(nanos / 1e9, UTC)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def span_row(span: ReadableSpan) -> dict[str, Any] | None:
    """Return the Span row of an ended span of a run (secrets masked), or None if it belongs to no run."""
    attributes = span.attributes or {}
    run_id = attributes.get(RUN_ID)
    if not run_id:
        return None
    redactor = redactor_for(run_id)
    kind = attributes.get(KIND)
    context = span.get_span_context()
    return {
        "run_id": run_id,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else "",
        "name": redactor.text(span.name)[:255],
        "kind": kind if kind in KINDS else "user",
        "status": span.status.status_code.name,
        "status_message": redactor.text(span.status.description or ""),
        "attributes": redactor.value({k: _plain(v) for k, v in attributes.items() if k not in (RUN_ID, KIND)}),
        "events": [
            {
                "name": event.name,
                "at": _time(event.timestamp).isoformat(),
                "attributes": redactor.value({k: _plain(v) for k, v in (event.attributes or {}).items()}),
            }
            for event in span.events
        ],
        "started_at": _time(span.start_time),
        "ended_at": _time(span.end_time),
    }


class DatabaseSpanProcessor(SpanProcessor):
    """Queues ended spans of runs for the run's next write, and stores leftovers from a background thread.

    Ending a span only converts it to a row and queues it. The attempt executing the run takes
    its spans (``take``) into the statement that records a step or its outcome, fenced by its
    lease: a step takes them once ``batch`` of them are queued or the oldest is ``batch_age``
    seconds old, so a run of short steps writes its spans in batches, not one per statement;
    the outcome (or a suspension) takes them all. Spans nobody took within ``hold`` seconds (a
    long step's user spans, spans of runs executed elsewhere in the process) are written by the
    thread every ``interval`` seconds.
    """

    def __init__(
        self,
        *,
        write: Callable[[list[dict[str, Any]]], int],
        interval: float = 0.5,
        hold: float = 2.0,
        batch: int = 64,
        batch_age: float = 0.25,
        batch_size: int = 256,
        max_queue: int = 50_000,
    ) -> None:
        self._write = write
        self._interval = interval
        self._hold = hold
        self._batch = batch
        self._batch_age = batch_age
        self._batch_size = batch_size
        self._max_queue = max_queue
        # Per run, its ended spans in order, each with when it was queued: a step asks for its own
        # run's spans at every record, and must not scan every other run's.
        self._runs: defaultdict[str, deque[tuple[float, dict[str, Any]]]] = defaultdict(deque)
        self._count = 0
        self._queue_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._leases: dict[int, str] = {}  # span id -> the lease token of the attempt that opened it
        os.register_at_fork(after_in_child=self._after_fork)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # A span the task's code opens carries no run id: the run executing in this thread owns it.
        ctx = current_context.get()
        if ctx is None:
            return
        run_id = (span.attributes or {}).get(RUN_ID)
        if not run_id:
            span.set_attribute(RUN_ID, ctx.run_id)
        if run_id in (None, ctx.run_id):
            # Opened by an attempt: it is stored under that attempt's lease, like its steps.
            self._leases[span.get_span_context().span_id] = ctx.claim.lease_token

    def on_end(self, span: ReadableSpan | DirectSpan) -> None:
        if type(span) is DirectSpan:
            if span.stored:  # with the row of its step or attempt
                return
            lease_token = span.lease_token
        else:
            lease_token = self._leases.pop(span.get_span_context().span_id, None)
        row = span_row(span)
        if row is None or self._stopped:
            return
        row["lease_token"] = lease_token
        if self._count >= self._max_queue:
            logger.warning("span queue full; dropping span %s of run %s", row["name"], row["run_id"])
            return
        with self._queue_lock:
            self._runs[row["run_id"]].append((time.monotonic(), row))
            self._count += 1
        if self._thread is None or self._pid != os.getpid():
            self._start_thread()
        if self._count >= self._batch_size:
            self._wake.set()

    def _start_thread(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="stepwise-spans", daemon=True)
        self._thread.start()

    def take(self, run_id: str, *, everything: bool = True) -> list[dict[str, Any]]:
        """Remove and return the queued spans of one run (its attempt writes them with its next record).

        With ``everything=False`` (a step's record) the spans stay queued until a batch is full
        or old enough, and an empty list comes back.
        """
        with self._queue_lock:
            mine = self._runs.get(run_id)
            if not mine:
                return []
            if not everything and len(mine) < self._batch and time.monotonic() - mine[0][0] < self._batch_age:
                return []
            del self._runs[run_id]
            self._count -= len(mine)
        return [row for _, row in mine]

    def _after_fork(self) -> None:
        self._runs.clear()
        self._count = 0
        self._leases.clear()
        self._queue_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def _loop(self) -> None:
        from django.db import connection

        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._count:
                self.write_pending(older_than=self._hold)
                # Attempts flush their own spans when they end, so this thread writes rarely:
                # holding a connection between writes would only pin a database session.
                connection.close()

    def write_pending(self, older_than: float = 0.0) -> bool:
        """Write the queued spans (those queued ``older_than`` seconds ago); on a database error keep them."""
        from django.db import DatabaseError, connection

        with self._write_lock:
            rows = []
            cutoff = time.monotonic() - older_than
            with self._queue_lock:
                for run_id in list(self._runs):
                    queued = self._runs[run_id]
                    while queued and len(rows) < 5_000 and queued[0][0] <= cutoff:
                        rows.append(queued.popleft()[1])
                    if not queued:
                        del self._runs[run_id]
                self._count -= len(rows)
            if not rows:
                return True
            try:
                self._write(rows)
            except DatabaseError as exc:
                logger.warning("could not store %d spans (%s); will try again", len(rows), exc)
                self._requeue(rows)
                connection.close()
                return False
            except Exception:  # a batch that can never be stored must not block the ones after it
                logger.exception("dropped %d spans that could not be stored", len(rows))
                return False
        return self.write_pending(older_than) if len(rows) == 5_000 else True

    def _requeue(self, rows: list[dict[str, Any]]) -> None:
        """Put rows that could not be stored back at the head of their runs' queues, in their order."""
        now = time.monotonic()
        with self._queue_lock:
            for row in reversed(rows):
                self._runs[row["run_id"]].appendleft((now, row))
            self._count += len(rows)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.write_pending()

    def shutdown(self) -> None:
        self._stopped = True
        self._wake.set()
        try:
            self.write_pending()
        except Exception:  # the process is exiting; the database may be gone already
            logger.warning("could not store the last spans at shutdown")


def _redacted_copy(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    def attrs(values: Any) -> dict[str, Any]:
        masked = redactor.value({k: _plain(v) for k, v in (values or {}).items()})
        return {k: tuple(v) if isinstance(v, list) else v for k, v in masked.items()}

    status = span.status
    if status.description:
        status = type(status)(status.status_code, redactor.text(status.description))
    return ReadableSpan(
        name=redactor.text(span.name),
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes=attrs(span.attributes),
        events=[Event(e.name, attrs(e.attributes), e.timestamp) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Hands spans to another processor (the OTLP exporter's) with the run's secrets masked."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        run_id = (span.attributes or {}).get(RUN_ID)
        self._inner.on_end(_redacted_copy(span, redactor_for(run_id)) if run_id else span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


class SampledSpanProcessor(SpanProcessor):
    """Hands on the spans of the traces ``sampler`` keeps, deciding by trace id alone.

    Every span is recorded (the console shows them all); the sampler only thins out what is
    exported. Deciding by trace id keeps or drops a run's trace whole, across every process
    that adds a span to it.
    """

    def __init__(self, inner: SpanProcessor, sampler) -> None:
        self._inner = inner
        self._sampler = sampler

    def _kept(self, span: ReadableSpan) -> bool:
        trace_id = span.get_span_context().trace_id
        return self._sampler.should_sample(None, trace_id, span.name).decision.is_sampled()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self._kept(span):
            self._inner.on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()
