"""Measure what observability costs: tracing overhead per step, and event latency to websocket and SSE clients.

Both run attempts in this process (so no worker can take the runs) against the configured
database and channel layer; ``manage.py bench`` can call them and print the figures.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.db import close_old_connections, connection
from django.urls import reverse
from django.utils import timezone

from stepwise.runs.benchmarks.measure import FINAL_STATUSES
from stepwise.runs.benchmarks.tasks import OBSERVABILITY_TASK_ID, observability_steps
from stepwise.runs.engine.executor import attempt_execute
from stepwise.runs.engine.spans import tracing_enabled_set
from stepwise.runs.models import RunStatus

try:
    from stepwise.runs.triggers import TriggerOptions, run_trigger
except ImportError:  # an older tree kept triggers with the other run services
    from stepwise.runs.services import TriggerOptions, run_trigger
from stepwise.runs.states import run_transition
from stepwise.runs.store import OrmRunStore
from stepwise.runs.tracing import setup as tracing

FINAL = {str(s) for s in FINAL_STATUSES}
MEASURE_TIMEOUT_SECONDS = 120


def _queued_run(steps: int) -> str:
    """Create a run no worker is told about: DELAYED far ahead, then QUEUED without a dispatch.

    ``dispatched_at`` says a hint went out, so the scheduler does not send one (it re-sends at
    once for a QUEUED run without it) and no worker races this process for the run.
    """
    run, _ = run_trigger(
        task_id=OBSERVABILITY_TASK_ID, payload={"steps": steps}, options=TriggerOptions(delay=3600)
    )
    run_transition(run_id=run.id, to=RunStatus.QUEUED, expected_from=[RunStatus.DELAYED], delay_until=None,
                   dispatched_at=timezone.now())
    return run.id


class StatementClock:
    """An execute wrapper: sums the time this thread's statements take, from sending them to their result.

    That is psycopg's part (the parameters made ready, the result read), the round trip, and
    PostgreSQL's execution and commit; the rest of an attempt's time is Python around them.
    It needs no cursor: the hot statements, sent through libpq, are timed on the path they take
    unwatched (``stepwise.runs.libpq``).
    """

    sees_libpq = True

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started


def _execute(run_id: str, clock: StatementClock | None = None, *, keep_connection: bool = False) -> float:
    """Run one attempt of a run in this thread; return its wall time in seconds.

    With ``clock``, the statements of this thread (not the heartbeat's) are timed into it; without
    one, nothing wraps them (the event-latency figures time the attempt as it is). With
    ``keep_connection`` the thread's database connection stays open for the next attempt, as a
    worker's does: a new one per attempt would add a connection and the planning of every
    prepared statement to each attempt, which no worker pays (the caller closes it).
    """
    close_old_connections()
    executable = observability_steps.executable()
    started = time.perf_counter()
    try:
        with connection.execute_wrapper(clock) if clock is not None else nullcontext():
            outcome = attempt_execute(
                run_id=run_id,
                worker_id="bench-observability",
                lookup=lambda _task_id: executable,
                heartbeat_interval=settings.STEPWISE_HEARTBEAT_SECONDS,
                on_thread_exit=lambda: connection.close(),  # the heartbeat thread's own connection
                **_span_hand_over(),
            )
        elapsed = time.perf_counter() - started
    finally:
        if not keep_connection:
            connection.close()
    if outcome is None or outcome.result != "completed":
        raise RuntimeError(f"benchmark run {run_id} did not complete: {outcome}")
    return elapsed


def _span_hand_over() -> dict[str, Any]:
    """Return the store and span arguments this tree's executor takes."""
    # The bench is also run over older trees, whose executor flushes spans after the attempt;
    # newer ones let the store take them and write them with the outcome.
    if "flush_spans" in inspect.signature(attempt_execute).parameters:
        return {"store": OrmRunStore(), "flush_spans": tracing.spans_flush}
    return {"store": OrmRunStore(span_source=tracing.database_processor.take)}


def measure_tracing_overhead(*, steps: int = 200, rounds: int = 5) -> dict[str, float]:
    """Return ms per step with and without tracing (median of ``rounds`` runs each) and their ratio."""
    tracing.tracing_setup()
    costs: dict[bool, list[float]] = {True: [], False: []}
    in_statements: list[float] = []
    try:
        _execute(_queued_run(steps), keep_connection=True)  # the connection made, its statements prepared
        for _ in range(rounds):
            for traced in (False, True):  # interleaved, so drift in the database hits both alike
                tracing_enabled_set(traced)
                clock = StatementClock()
                costs[traced].append(_execute(_queued_run(steps), clock, keep_connection=True) * 1000 / steps)
                if not traced:
                    in_statements.append(clock.seconds * 1000 / steps)
    finally:
        tracing_enabled_set(True)
        connection.close()
    untraced, traced = round(statistics.median(costs[False]), 4), round(statistics.median(costs[True]), 4)
    statements = round(statistics.median(in_statements), 4)
    return {
        "steps": steps,
        "untraced_ms_per_step": untraced,
        # Of an untraced step: the attempt's statements (claim, steps, outcome: sent, executed, committed and
        # answered) shared out over its steps, and the Python around them.
        "statement_ms_per_step": statements,
        "python_ms_per_step": round(untraced - statements, 4),
        "traced_ms_per_step": traced,
        # From the shown figures, so the ratio a reader works out from them is the one printed.
        "ratio": round(traced / untraced, 3),
    }


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


async def _latencies(run_id: str, after: int, user, dispatch: Callable[[str], None] | None) -> list[float]:
    from stepwise.runs.consumers import RunEventsConsumer

    scope = {
        "type": "websocket",
        "path": f"/ws/runs/{run_id}/",
        "query_string": f"after={after}".encode(),  # live events only: stored ones would measure nothing
        "headers": [],
        "user": user,
        "url_route": {"args": (), "kwargs": {"run_id": run_id}},
    }
    client = ApplicationCommunicator(RunEventsConsumer.as_asgi(), scope)
    await client.send_input({"type": "websocket.connect"})
    assert (await client.receive_output(5))["type"] == "websocket.accept"
    if dispatch is None:
        worker = asyncio.get_running_loop().run_in_executor(None, _execute, run_id)
    else:
        await sync_to_async(dispatch)(run_id)
        worker = None
    samples = []
    while True:
        frame = await client.receive_output(30)
        received = time.time()
        event = json.loads(frame["text"])
        if event.get("transient"):  # live-only (a step started): not a stored event's trip
            continue
        samples.append((received - datetime.fromisoformat(event["at"]).timestamp()) * 1000)
        if event["type"] == "run.status" and event["data"]["to"] in FINAL:
            break
    if worker is not None:
        await worker
    await client.send_input({"type": "websocket.disconnect", "code": 1000})
    await client.wait(5)
    await sync_to_async(close_old_connections)()
    return samples


async def _sse_latencies(run_id: str, after: int, api_key: str, dispatch: Callable[[str], None] | None) -> list[float]:
    # The project's own HTTP application and URLs: the stream lives under whatever prefix they include the API at.
    django_asgi_app = get_asgi_application()
    host = next((h for h in settings.ALLOWED_HOSTS if h not in ("*", "") and not h.startswith(".")), "localhost")
    scope = {
        "type": "http", "http_version": "1.1", "method": "GET", "scheme": "https", "root_path": "",
        "path": reverse("run-events-stream", args=[run_id]), "query_string": f"after={after}".encode(),
        "headers": [(b"host", host.encode()), (b"authorization", f"Bearer {api_key}".encode())],
        "client": ("127.0.0.1", 1), "server": (host, 443),
    }
    client = ApplicationCommunicator(django_asgi_app, scope)
    await client.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await client.receive_output(30)
    assert start["type"] == "http.response.start" and start["status"] == 200, start
    worker = (asyncio.get_running_loop().run_in_executor(None, _execute, run_id) if dispatch is None
              else await sync_to_async(dispatch)(run_id))
    samples: list[float] = []
    buffer = ""
    # Heartbeats keep the stream busy, so a run whose end never arrives would keep this loop going: bound it.
    deadline = time.monotonic() + MEASURE_TIMEOUT_SECONDS
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end within {MEASURE_TIMEOUT_SECONDS}s of SSE streaming")
        message = await client.receive_output(30)
        received = time.time()
        buffer += message.get("body", b"").decode()
        ended = not message.get("more_body", False)
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and line[0] != ":")
            if fields.get("event") == "end":
                ended = True
            elif "id" in fields:  # a stored event (a snapshot or a live-only one has no id)
                event = json.loads(fields["data"])
                samples.append((received - datetime.fromisoformat(event["at"]).timestamp()) * 1000)
        if ended:
            break
    if dispatch is None:
        await worker
    await client.wait(5)
    await sync_to_async(close_old_connections)()
    return samples


def measure_sse_latency(*, steps: int = 100, dispatch: Callable[[str], None] | None = None) -> dict[str, float]:
    """Return p50/p99 ms from an event's insert by a worker to its arrival at a server-sent events client."""
    from stepwise.runs.models import Run
    from stepwise.tasks.apikeys import api_key_create

    key = api_key_create(environment="dev", name="stepwise-bench-sse", scopes=["read"])
    try:
        run_id = _queued_run(steps)
        after = Run.objects.filter(id=run_id).values_list("last_event_seq", flat=True).get()
        samples = async_to_sync(_sse_latencies)(run_id, after, key.secret, dispatch)
    finally:
        key.key.delete()
    return {
        "events": len(samples),
        "p50_ms": round(_percentile(samples, 50), 3),
        "p99_ms": round(_percentile(samples, 99), 3),
        "max_ms": round(max(samples), 3),
    }


def measure_event_latency(*, steps: int = 100, dispatch: Callable[[str], None] | None = None) -> dict[str, float]:
    """Return p50/p99 ms from an event's insert by a worker to its arrival at a websocket client.

    With ``dispatch`` (the bench passes the Celery hint), a worker process runs the attempt, as in
    production. Without it, this process does, and its event loop then competes with the attempt
    for the GIL, which inflates the figures.
    """
    from django.contrib.auth import get_user_model

    from stepwise.runs.models import Run

    user, _ = get_user_model().objects.get_or_create(username="stepwise-bench", defaults={"is_superuser": True})
    run_id = _queued_run(steps)
    after = Run.objects.filter(id=run_id).values_list("last_event_seq", flat=True).get()
    samples = async_to_sync(_latencies)(run_id, after, user, dispatch)
    return {
        "events": len(samples),
        "p50_ms": round(_percentile(samples, 50), 3),
        "p99_ms": round(_percentile(samples, 99), 3),
        "max_ms": round(max(samples), 3),
    }
