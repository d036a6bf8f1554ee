"""The ``wait`` API of the SDK: pause a run without holding a worker.

Example::

    from stepwise.tasks.sdk import task, wait

    @task(id="remind")
    def remind(payload, ctx):
        wait.for_(hours=24)
        answer = wait.for_event("reply", filter={"ticket": payload["ticket"]}, timeout="7d")
        return {"answered": answer.ok}
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from stepwise.runs.engine.context import RunContext, current_context
from stepwise.runs.engine.durations import duration_seconds
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.engine.waits import ChildSpec, WaitResult, WaitSpec, event_name_check
from stepwise.runs.waits import waitpoint_callback_url


class NotInRun(StepwiseError):
    """A durable wait was called outside a running task."""


def _ctx() -> RunContext:
    ctx = current_context.get()
    if ctx is None:
        raise NotInRun("wait.* can only be called inside a running task")
    return ctx


def _deadline(timeout: str | float | timedelta | None) -> datetime | None:
    from django.utils import timezone

    if timeout is None:
        return None
    return timezone.now() + timedelta(seconds=duration_seconds(timeout))


def _duration_spec(seconds: float, minutes: float, hours: float, days: float) -> WaitSpec:
    total = seconds + 60 * minutes + 3600 * hours + 86400 * days
    if total <= 0:
        raise ValueError("wait.for_ needs a positive duration, e.g. wait.for_(minutes=5)")
    return WaitSpec(kind="DURATION", resume_at=_deadline(total))


def _date_spec(when: datetime) -> WaitSpec:
    if when.tzinfo is None:
        raise ValueError("wait.until needs a timezone-aware datetime")
    return WaitSpec(kind="DATE", resume_at=when)


def _event_spec(name: str, filter: dict | None, timeout, lookback) -> WaitSpec:
    return WaitSpec(
        kind="EVENT",
        event_name=event_name_check(name),
        event_filter=dict(filter or {}),
        resume_at=_deadline(timeout),
        lookback_seconds=None if lookback is None else duration_seconds(lookback),
    )


def _token_spec(token: str | None, timeout, description: str) -> WaitSpec:
    return WaitSpec(kind="TOKEN", waitpoint_id=token, resume_at=_deadline(timeout), description=description)


class WaitToken(str):
    """A token's waitpoint id (use it as the string it is), with its callback ``url``."""

    @property
    def id(self) -> str:
        return str(self)

    @property
    def url(self) -> str:
        """The URL a POST of JSON completes this token at (no API key needed; once; until it times out)."""
        return waitpoint_callback_url(str(self))


class Wait:
    """Durable waits; each returns a WaitResult (``ok`` is False when it timed out)."""

    def for_(self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0) -> WaitResult:
        """Pause the run for a duration. Example: ``wait.for_(hours=1)``."""
        return _ctx().wait("wait.for", _duration_spec(seconds, minutes, hours, days))

    def until(self, when: datetime) -> WaitResult:
        """Pause the run until a date. Example: ``wait.until(invoice_due)``."""
        return _ctx().wait("wait.until", _date_spec(when))

    def for_event(
        self, name: str, *, filter: dict[str, Any] | None = None, timeout=None, lookback=None
    ) -> WaitResult:
        """Pause until an event with this name whose payload holds ``filter`` is sent.

        Events sent since the run was triggered count, also those sent before the run
        reached this wait (``lookback`` widens that window further back); each event
        resumes a given run's waits at most once.

        Example: ``wait.for_event("invoice.paid", filter={"invoiceId": inv}, timeout="30d")``
        """
        return _ctx().wait(f"wait.event:{name}", _event_spec(name, filter, timeout, lookback))

    def create_token(self, *, timeout=None, description: str = "") -> WaitToken:
        """Create a token (waitpoint id) to hand to a person or a system before waiting on it.

        ``token.url`` is its callback URL: a POST of JSON to it completes the token with that
        JSON, with no API key (the URL's signature is the credential; it works once, until the
        token times out).

        Example::

            token = wait.create_token(timeout="2d", description="approve refund")
            send_email(approver, link=f"/waitpoints/{token}")
            payments.refund(order, on_done=token.url)   # or a service calls back
            result = wait.for_token(token)
        """
        return WaitToken(_ctx().create_token("wait.token", _token_spec(None, timeout, description)))

    def for_token(self, token: str | None = None, *, timeout=None, description: str = "") -> WaitResult:
        """Pause until a token is completed (approve/reject or any JSON); creates one when none is given."""
        return _ctx().wait("wait.for_token", _token_spec(token, timeout, description))

    async def afor_(self, **duration: float) -> WaitResult:
        """Async twin of ``for_``."""
        return await sync_to_async(self.for_)(**duration)

    async def auntil(self, when: datetime) -> WaitResult:
        """Async twin of ``until``."""
        return await sync_to_async(self.until)(when)

    async def afor_event(self, name: str, **options: Any) -> WaitResult:
        """Async twin of ``for_event``."""
        return await sync_to_async(self.for_event)(name, **options)

    async def acreate_token(self, **options: Any) -> str:
        """Async twin of ``create_token``."""
        return await sync_to_async(self.create_token)(**options)

    async def afor_token(self, token: str | None = None, **options: Any) -> WaitResult:
        """Async twin of ``for_token``."""
        return await sync_to_async(self.for_token)(token, **options)


wait = Wait()


def children_wait(task_id: str, items: list[dict[str, Any]], *, timeout=None) -> WaitResult:
    """Trigger child runs and wait for all of them; the result's output lists each child's outcome."""
    from stepwise.runs.triggers import trigger_options_from

    children = []
    for item in items:
        options = {k: v for k, v in item.items() if k != "payload"}
        trigger_options_from(options)  # unknown option names fail here, before anything is stored
        children.append(ChildSpec(task_id=task_id, payload=item.get("payload"), options=options))
    spec = WaitSpec(kind="CHILDREN", children=tuple(children), resume_at=_deadline(timeout))
    return _ctx().wait(f"wait.children:{task_id}", spec)


def send_event(name: str, payload: Any = None, *, environment: str | None = None) -> int:
    """Send an event; every pending wait it matches resumes. Returns how many waits it resumed.

    Inside a run the event goes to the run's environment (unless told otherwise) and is sent
    once per run: a replay returns what the first send returned.

    Example: ``send_event("approval", {"documentId": "doc-1", "approved": True})``
    """
    from stepwise.runs.waits import event_send

    ctx = current_context.get()
    if ctx is None:
        return event_send(name=name, payload=payload, environment=environment or "dev")[1]

    def send(key: str) -> dict[str, Any]:
        event, matched = event_send(name=name, payload=payload, environment=environment or ctx.environment,
                                    idempotency_key=key)
        return {"event_id": event.id, "matched": matched}

    return ctx.once(f"send_event:{name}", "event", send)["matched"]
