"""Log lines inside a run: span events on the current span, and "log" events of the run.

``ctx.logger`` and any stdlib logger used while a run executes in this thread go through
``RunLogHandler``; secrets are masked before a record reaches any handler.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from stepwise.runs.engine import context as run_context
from stepwise.runs.engine.context import ATTRIBUTES, RunContext
from stepwise.runs.engine.redaction import redactor_for, sensitive_redactor
from stepwise.runs.engine.store import LogEntry

# Our own plumbing logs from inside a run too; recording those would loop or add noise.
IGNORED_LOGGERS = ("runs.", "celery", "kombu", "django", "opentelemetry", "asyncio", "channels", "urllib3")
_PRIMITIVES = (str, bool, int, float)
_guard = threading.local()
_off_loop = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepwise-log")


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return repr(value)


def _span_attribute(value: Any) -> Any:
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return repr(value)


def log_entry_from(record: logging.LogRecord, run_id: str) -> LogEntry:
    """Return the stored form of a log record, with the run's secrets masked."""
    redactor = redactor_for(run_id)
    attributes = redactor.value(_json_safe(getattr(record, ATTRIBUTES, {})))
    if record.exc_info and record.exc_info[0] is not None:
        attributes["exception.type"] = record.exc_info[0].__qualname__
        attributes["exception.message"] = redactor.text(str(record.exc_info[1]))
    span_context = trace.get_current_span().get_span_context()
    return LogEntry(
        level=record.levelname,
        message=redactor.text(record.getMessage()),
        logger=record.name,
        attributes=attributes,
        span_id=f"{span_context.span_id:016x}" if span_context.is_valid else "",
        at=datetime.fromtimestamp(record.created, UTC),
    )


def log_record(ctx: RunContext, record: logging.LogRecord) -> None:
    """Add a log record to the current span and store it as a "log" event of the run."""
    entry = log_entry_from(record, ctx.run_id)
    span_attributes = {"log.severity": entry.level, "log.message": entry.message, "log.logger": entry.logger}
    span_attributes.update({f"log.attr.{k}": _span_attribute(v) for k, v in entry.attributes.items()})
    trace.get_current_span().add_event("log", span_attributes)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        ctx.store.log_append(ctx.claim, entry)
        return
    # Inside an async task the ORM may not run on the event loop's thread.
    _off_loop.submit(ctx.store.log_append, ctx.claim, entry).result(timeout=30)


class RunLogHandler(logging.Handler):
    """Records every log line written while a run executes in this thread."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = run_context.current_context.get()
        if ctx is None or getattr(_guard, "active", False) or record.name.startswith(IGNORED_LOGGERS):
            return
        _guard.active = True
        try:
            log_record(ctx, record)
        except Exception:  # a log line must never fail the run
            pass
        finally:
            _guard.active = False


def _redacting_factory(factory):
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        ctx = run_context.current_context.get()
        redactor = sensitive_redactor(ctx.run_id) if ctx is not None else None
        if redactor is None:
            return record
        # Format now and mask, so no handler (console, file, Sentry) ever sees the secret.
        record.msg = redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redactor.text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    make_record.stepwise_redacting = True
    return make_record


def run_logging_install() -> None:
    """Capture log lines written inside runs and mask secrets in every log record of this process."""
    root = logging.getLogger()
    if not any(isinstance(h, RunLogHandler) for h in root.handlers):
        root.addHandler(RunLogHandler(level=logging.DEBUG))
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "stepwise_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(factory))
