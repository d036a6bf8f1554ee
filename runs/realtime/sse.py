"""Server-sent events: one run's events, and the runs carrying a tag, for any HTTP client.

``GET /api/runs/<id>/events/stream?after=<seq>`` sends a ``run`` snapshot (status, metadata,
output), then the run's stored events after ``seq`` (or after ``Last-Event-ID`` on a
reconnect), then live ones, each once and in seq order, with its seq as the event id; it
ends with a last ``run`` snapshot (its output or error) and an ``end`` event once the run has
finished and every event is sent.
``GET /api/runs/stream?tag=<tag>`` sends a ``run`` snapshot of each run carrying the tag and
a new one whenever one of them changes (created, status, metadata); ``?runs=<id>,<id>`` does the
same for the runs it names (a batch).

The credential is an API key with the read scope or a public token, always in the
``Authorization: Bearer`` header (never in the URL, so it stays out of access logs). A comment
line goes out every STEPWISE_SSE_HEARTBEAT_SECONDS so proxies keep the connection open.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone

from stepwise.console.failed_attempts import (
    API_KEY,
    TooManyFailedAttempts,
    client_address,
    failed_attempt_record,
    failed_attempts_check,
)
from stepwise.runs.engine.errors import error_summary
from stepwise.runs.events import RUNS_GROUP, events_of, run_group_name
from stepwise.runs.models import Run
from stepwise.runs.realtime.feeds import RunEventFeed
from stepwise.runs.realtime.readers import Reader, reader_from_authorization
from stepwise.runs.realtime.tokens import OutOfScope, PublicTokenRefused
from stepwise.runs.selectors import RunFilters, runs_filtered
from stepwise.runs.statuses import FINAL_STATUSES
from stepwise.tasks.access import payloads_hidden
from stepwise.tasks.redaction import RunDisplay, run_shown

FINAL = frozenset(str(s) for s in FINAL_STATUSES)
TAG_SNAPSHOT_LIMIT = 100
MAX_BATCH_RUNS = 100
RUNS_REMEMBERED = 10_000  # per tag stream: whether a run carries the tag
RECONNECT_MS = 2000
CORS_HEADERS = {
    # The credential is a bearer header, never a cookie: any site may read with a token it was given.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Last-Event-ID",
    "Access-Control-Max-Age": "600",
}


class StreamRefused(Exception):
    """A stream request the server answers with a 4xx before streaming anything."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def sse_frame(data: Any, *, event: str | None = None, id: int | None = None) -> str:
    """Return one server-sent event (JSON data on one line)."""
    head = (f"id: {id}\n" if id is not None else "") + (f"event: {event}\n" if event else "")
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


def run_snapshot(run: Run) -> dict[str, Any]:
    """Return what a subscriber is told of a run's state: status, tags, metadata, output or error."""
    # Metadata and output are stored as given: redact them as every other reader sees them (snapshot_shown
    # then hides the output from a viewer of some environments).
    run = run_shown(run, viewer=None)
    return {
        "id": run.id, "task_id": run.task_id, "environment": run.environment_id, "status": run.status,
        "tags": run.tags, "metadata": run.metadata, "output": run.output,
        "error": error_summary(run.error) if run.error else None, "attempt_count": run.attempt_count,
        "last_event_seq": run.last_event_seq, "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def snapshot_shown(snapshot: dict[str, Any] | None, reader: Reader) -> dict[str, Any] | None:
    """Return a run's snapshot as the reader may see it: the output hidden from a viewer of some environments.

    A stream's reader is an API key or a public token, answered from memory: no query, so no thread.
    """
    if snapshot is None or not payloads_hidden(reader.holder, snapshot["environment"]):
        return snapshot
    return {**snapshot, "output": RunDisplay(hidden=True).value(snapshot["output"])}


@database_sync_to_async
def _reader(request: HttpRequest) -> Reader:
    """Return the request's credential; failed attempts are counted and throttled as for the REST API."""
    who = client_address(request)
    try:
        failed_attempts_check(API_KEY, who)
    except TooManyFailedAttempts as exc:
        raise StreamRefused(429, str(exc)) from None
    try:
        return reader_from_authorization(request.headers.get("Authorization", ""))
    except OutOfScope as exc:
        raise StreamRefused(403, str(exc)) from None
    except PublicTokenRefused as exc:
        if request.headers.get("Authorization"):
            failed_attempt_record(API_KEY, who)
        raise StreamRefused(401, str(exc)) from None


@database_sync_to_async
def _readable_run(reader: Reader, run_id: str) -> dict[str, Any]:
    run = Run.objects.filter(id=run_id).first()
    if run is None or (reader.environment is not None and run.environment_id != reader.environment):
        raise StreamRefused(404, f"no run with id '{run_id}' in environment '{reader.environment}'")
    if not reader.may_read_run(environment=run.environment_id, run_id=run.id, tags=run.tags):
        raise StreamRefused(403, f"this token may not read run '{run_id}': it is outside the token's scopes")
    return snapshot_shown(run_snapshot(run), reader)


@database_sync_to_async
def _snapshot(run_id: str) -> dict[str, Any] | None:
    run = Run.objects.filter(id=run_id).first()
    return None if run is None else run_snapshot(run)


@database_sync_to_async
def _tagged_snapshots(reader: Reader, environment: str, tag: str) -> list[dict[str, Any]]:
    runs = runs_filtered(RunFilters(environment=environment, tag=tag)).order_by("-created_at")[:TAG_SNAPSHOT_LIMIT]
    return [snapshot_shown(run_snapshot(run), reader) for run in reversed(runs)]


def _after(request: HttpRequest) -> int:
    """Return the seq to resume after: ``Last-Event-ID`` (a reconnect) wins over ``?after=``."""
    text = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        after = int(text)
    except ValueError:
        raise StreamRefused(400, f"after (or Last-Event-ID) must be a whole number, got '{text[:40]}'") from None
    if after < 0:
        raise StreamRefused(400, "after (or Last-Event-ID) must not be negative")
    return after


def _refused(exc: StreamRefused) -> HttpResponse:
    response = JsonResponse({"detail": exc.detail}, status=exc.status)
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


def _preflight() -> HttpResponse:
    response = HttpResponse(status=204)
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


def _streaming(frames: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes
    for name, value in CORS_HEADERS.items():
        response[name] = value
    return response


class _Subscription:
    """A channel of the channel layer, its groups, and a queue the events of its messages are pumped into."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.groups: set[str] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pump: asyncio.Task | None = None

    async def join(self, group: str) -> None:
        if self.pump is None:
            self.channel = await self.layer.new_channel()
            self.pump = asyncio.create_task(self._pump())
        if group not in self.groups:
            await self.layer.group_add(group, self.channel)
            self.groups.add(group)

    async def _pump(self) -> None:
        # Receiving here keeps the layer's per-channel buffer drained while the client is written to.
        while True:
            for event in events_of(await self.layer.receive(self.channel)):
                await self.queue.put(event)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """Return the next event, or None after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)


def _seconds_left(reader: Reader) -> float | None:
    if reader.expires_at is None:
        return None
    return (reader.expires_at - timezone.now()).total_seconds()


async def _live(subscription: _Subscription, reader: Reader,
                on_quiet: Callable[[], AsyncIterator[str]] | None = None) -> AsyncIterator[dict[str, Any] | str]:
    """Yield live events, and a heartbeat (then any of ``on_quiet``'s frames) after each quiet interval.

    Ends with an ``end`` frame when the reader's token expires.
    """
    heartbeat = settings.STEPWISE_SSE_HEARTBEAT_SECONDS
    while True:
        left = _seconds_left(reader)
        if left is not None and left <= 0:
            yield sse_frame({"reason": "the public token expired; subscribe again with a new one"}, event="end")
            return
        event = await subscription.next(heartbeat if left is None else min(heartbeat, left))
        if event is not None:
            yield event
            continue
        yield ": heartbeat\n\n"
        if on_quiet is not None:
            async for frame in on_quiet():
                yield frame


def _event_frame(event: dict[str, Any], display: RunDisplay) -> str:
    return sse_frame(display.event(event), event=event["type"], id=event["seq"])


def _is_end(frame: str) -> bool:
    return frame.startswith("event: end\n")


def _final_status(event: dict[str, Any]) -> str | None:
    """Return the final status a ``run.status`` event moves its run to; None for any other event."""
    to = event["data"].get("to") if event["type"] == "run.status" else None
    return to if to in FINAL else None


async def _run_frames(reader: Reader, run_id: str, after: int) -> AsyncIterator[str]:
    subscription = _Subscription()
    feed = RunEventFeed(run_id, after)

    async def framed(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
        """Frame events; after the run's final status, what is stored after it, a last snapshot and ``end``."""
        final = None
        async for event in events:
            if event.get("transient"):
                yield sse_frame(display.event(event), event=event["type"])
                continue
            yield _event_frame(event, display)
            final = final or _final_status(event)
        if final is None:
            return
        async for stored in feed.stored():  # anything stored with or just after the end
            yield _event_frame(stored, display)
        last = snapshot_shown(await _snapshot(run_id), reader)
        if last is not None:
            yield sse_frame(last, event="run")  # with its output or error
        yield sse_frame({"status": final}, event="end")

    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        # Join first: an event committed while the stored ones are read is then delivered live too,
        # and the feed's seq check drops whichever copy comes second.
        await subscription.join(run_group_name(run_id))
        display = await database_sync_to_async(reader.run_display)(run_id)
        snapshot = snapshot_shown(await _snapshot(run_id), reader)
        if snapshot is None:  # deleted (retention) since the request was let in
            yield sse_frame({"status": None, "reason": f"run '{run_id}' no longer exists"}, event="end")
            return
        yield sse_frame(snapshot, event="run")
        if snapshot["status"] in FINAL:  # read before the stored events: the final one is among them
            async for event in feed.stored():
                yield _event_frame(event, display)
            yield sse_frame({"status": snapshot["status"]}, event="end")
            return
        # The final status may be stored here, or below when the layer dropped its live message: its live
        # copy is then a duplicate the feed drops, so the stream ends on whichever copy is sent.
        async for frame in framed(feed.stored()):
            yield frame
            if _is_end(frame):
                return
        # After a quiet interval, look for a live message the layer dropped: it left no gap to notice yet.
        async for event in _live(subscription, reader, lambda: framed(feed.stored())):
            if isinstance(event, str):  # a heartbeat, a frame of that look, or the token's end
                yield event
                if _is_end(event):
                    return
                continue
            async for frame in framed(feed.live(event)):
                yield frame
                if _is_end(frame):
                    return
    finally:
        await subscription.close()


async def run_events_stream(request: HttpRequest, run_id: str) -> HttpResponse:
    """Stream one run's events as server-sent events (see the module docstring)."""
    if request.method == "OPTIONS":
        return _preflight()
    if request.method != "GET":
        return _refused(StreamRefused(405, "use GET"))
    try:
        reader = await _reader(request)
        after = _after(request)
        await _readable_run(reader, run_id)
    except StreamRefused as exc:
        return _refused(exc)
    return _streaming(_run_frames(reader, run_id, after))


@database_sync_to_async
def _run_access(run_id: str) -> tuple[str, list[str]] | None:
    return Run.objects.filter(id=run_id).values_list("environment_id", "tags").first()


async def _runs_frames(reader: Reader, load: Callable[[], Awaitable[list[dict[str, Any]]]], run_ids: list[str],
                       belongs: Callable[[str], Awaitable[bool]] | None) -> AsyncIterator[str]:
    """Send the snapshots ``load`` reads, then a new snapshot of a run whenever it changes.

    With ``belongs``, runs created later join when it says they do (a tag); without, the runs
    are ``run_ids`` (a batch).
    """
    subscription = _Subscription()
    sent: dict[str, str] = {}
    member: dict[str, bool] = {}
    finished: set[str] = set()

    def frame_of(snapshot: dict[str, Any]) -> str:
        if snapshot["status"] in FINAL:
            finished.add(snapshot["id"])
        sent[snapshot["id"]] = sse_frame(snapshot, event="run")
        return sent[snapshot["id"]]

    async def snapshot_frame(run_id: str) -> str | None:
        snapshot = snapshot_shown(await _snapshot(run_id), reader)
        if snapshot is None or sent.get(run_id) == sse_frame(snapshot, event="run"):
            return None  # gone, or unchanged: a status event reaches us by two groups
        return frame_of(snapshot)

    def batch_done() -> bool:
        return belongs is None and len(finished) == len(run_ids)

    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        # Join first, read next: a change made meanwhile then comes live as well.
        if belongs is not None:
            await subscription.join(RUNS_GROUP)  # runs created from now on, and status changes
        for run_id in run_ids:
            await subscription.join(run_group_name(run_id))
        for snapshot in await load():
            member[snapshot["id"]] = True
            await subscription.join(run_group_name(snapshot["id"]))  # for its metadata changes
            yield frame_of(snapshot)
        if batch_done():
            yield sse_frame({"status": "finished"}, event="end")
            return
        async for event in _live(subscription, reader):
            if isinstance(event, str):  # a heartbeat or the token's end
                yield event
                if event.startswith("event: end"):
                    return
                continue
            if event["type"] not in ("run.created", "run.status", "metadata.updated"):
                continue
            run_id = event["run_id"]
            if len(member) >= RUNS_REMEMBERED:  # what is forgotten is read again when it changes
                member = {r: True for r, yes in member.items() if yes}
            if run_id not in member:
                member[run_id] = belongs is not None and await belongs(run_id)
                if member[run_id]:
                    await subscription.join(run_group_name(run_id))
            if member[run_id]:
                frame = await snapshot_frame(run_id)
                if frame is not None:
                    yield frame
                if batch_done():  # every run of the batch has finished: nothing more will change
                    yield sse_frame({"status": "finished"}, event="end")
                    return
    finally:
        await subscription.close()


@database_sync_to_async
def _batch_snapshots(reader: Reader, run_ids: list[str]) -> list[dict[str, Any]]:
    runs = {run.id: run for run in Run.objects.filter(id__in=run_ids, environment_id=reader.environment)}
    missing = [run_id for run_id in run_ids if run_id not in runs]
    if missing:
        raise StreamRefused(404, f"no run with id '{missing[0]}' in environment '{reader.environment}'")
    for run in runs.values():
        if not reader.may_read_run(environment=run.environment_id, run_id=run.id, tags=run.tags):
            raise StreamRefused(403, f"this token may not read run '{run.id}': it is outside the token's scopes")
    return [snapshot_shown(run_snapshot(runs[run_id]), reader) for run_id in run_ids]


def _run_ids(text: str) -> list[str]:
    run_ids = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not run_ids or len(run_ids) > MAX_BATCH_RUNS or any(len(r) > 40 for r in run_ids):
        raise StreamRefused(400, f"give 1 to {MAX_BATCH_RUNS} run ids, comma-separated, as ?runs=<id>,<id>")
    return run_ids


async def runs_stream(request: HttpRequest) -> HttpResponse:
    """Stream snapshots of the runs carrying ``?tag=``, or of the runs ``?runs=`` names (a batch), as they change."""
    if request.method == "OPTIONS":
        return _preflight()
    if request.method != "GET":
        return _refused(StreamRefused(405, "use GET"))
    tag = request.GET.get("tag", "")
    try:
        reader = await _reader(request)
        environment = reader.environment
        if request.GET.get("runs") is not None and not tag:
            run_ids = _run_ids(request.GET["runs"])
            await _batch_snapshots(reader, run_ids)  # refused here, before streaming, if any is not readable
            return _streaming(_runs_frames(reader, lambda: _batch_snapshots(reader, run_ids), run_ids, None))
        if not tag or len(tag) > 255:
            raise StreamRefused(400, "give the runs' tag as ?tag=<tag> (255 characters at most), "
                                     "or their ids as ?runs=<id>,<id>")
        if not await database_sync_to_async(reader.may_read_tag)(environment=environment, tag=tag):
            raise StreamRefused(403, f"this token may not read the runs tagged '{tag}': it is outside the "
                                     "token's scopes")
    except StreamRefused as exc:
        return _refused(exc)

    async def tagged(run_id: str) -> bool:
        access = await _run_access(run_id)
        return access is not None and access[0] == environment and tag in access[1]

    return _streaming(_runs_frames(reader, lambda: _tagged_snapshots(reader, environment, tag), [], tagged))
