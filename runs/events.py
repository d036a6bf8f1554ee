"""Append RunEvents with a gap-free per-run seq, and broadcast them after commit."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.utils import timezone

from stepwise.runs.batches import BatchThread
from stepwise.runs.engine.errors import RunInterrupted
from stepwise.runs.engine.redaction import redact_for_run
from stepwise.runs.models import NewEvent, Run, RunEvent, Span, event_message
from stepwise.runs.statements import NewRow, fenced_append, is_postgresql, lease_fence, span_fields, with_spans
from stepwise.runs.statuses import RunStatus

logger = logging.getLogger(__name__)

RUNS_GROUP = "runs"


def run_group_name(run_id: str) -> str:
    """Return the channel-layer group that carries one run's events."""
    return f"run.{run_id}"


# The runs list shows status, not every step and log line of every run.
RUNS_GROUP_EVENT_TYPES = frozenset({"run.created", "run.status"})


def _seq_next(run_id: str, lease_token: str | None) -> int | None:
    """Bump and return a run's event counter (locking its row); None if the lease did not match."""
    where, where_params = lease_fence(lease_token)
    table = connection.ops.quote_name(Run._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_event_seq = last_event_seq + 1 WHERE {where} RETURNING last_event_seq",
            [run_id, *where_params],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def event_append(*, run_id: str, type: str, data: dict[str, Any] | None = None, lease_token: str | None = None):
    """Append an event to a run inside the caller's transaction and publish it after commit.

    With ``lease_token``, the append doubles as the fencing check: it raises
    RunInterrupted unless the run is EXECUTING under that token.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_append must run inside a transaction")
    data = redact_for_run(run_id, data or {})
    seq = _seq_next(run_id, lease_token)
    if seq is None:
        raise RunInterrupted(f"run {run_id} is no longer held by this attempt")
    event = RunEvent.objects.create(run_id=run_id, seq=seq, type=type, data=data or {})
    publish_run_event_on_commit(event)
    return event


def events_append_fenced(
    *,
    run_id: str,
    lease_token: str | None,
    events: list[tuple[str, dict[str, Any]]],
    rows: Sequence[models.Model | NewRow] = (),
    spans: Sequence[dict[str, Any]] = (),
    run_fields: dict[str, Any] | None = None,
) -> None:
    """Append events, insert unsaved ``rows`` and ended ``spans``, all or nothing, in one statement.

    ``run_fields`` are set on the run row by the same fenced write (the run's metadata).

    The hot path of a run (a step is recorded, a log line): on PostgreSQL the fenced seq bump,
    the events, the rows and the spans (listed in the last event's data) go to the database as
    one statement. Raises RunInterrupted when ``lease_token`` no longer holds the run, and
    IntegrityError when a row breaks a constraint (nothing is stored then). Elsewhere it is a
    transaction of the same writes.
    """
    if spans:  # the spans ride on the last event
        *head, (last_type, last_data) = events
        events = [*head, (last_type, with_spans(last_data, spans))]
    if not is_postgresql():
        with transaction.atomic():
            for type_, data in events:
                event_append(run_id=run_id, type=type_, data=data, lease_token=lease_token)
            if run_fields:
                fence = {"lease_token": lease_token, "status": RunStatus.EXECUTING} if lease_token else {}
                if not Run.objects.filter(id=run_id, **fence).update(**run_fields):
                    raise RunInterrupted(f"run {run_id} is no longer held by this attempt")
            for row in rows:
                (row.instance() if isinstance(row, NewRow) else row).save()
            if spans:
                Span.objects.bulk_create([Span(**span_fields(row)) for row in spans], ignore_conflicts=True)
        return
    now = timezone.now()
    stored = [NewEvent(type_, redact_for_run(run_id, data), now) for type_, data in events]
    last = fenced_append(run_id=run_id, lease_token=lease_token, events=stored, rows=rows, spans=spans,
                         run_fields=run_fields)
    if last is None:
        raise RunInterrupted(f"run {run_id} is no longer held by this attempt")
    stored_events_publish(run_id, last, stored)


def publish_run_event_now(*, run_id: str, type: str, data: dict[str, Any]) -> None:
    """Send a live-only event to a run's listeners: it is not stored and carries no seq.

    For what only matters while it happens (a step has started): a page opened later reads
    the stored record instead.
    """
    publish_run_event(
        {"run_id": run_id, "seq": None, "transient": True, "type": type,
         "data": redact_for_run(run_id, data), "at": timezone.now().isoformat()}
    )


def publish_run_event_on_commit(event) -> None:
    """Broadcast a stored event to websocket listeners once its transaction commits."""
    _publish_on_commit([event.as_message()])


def stored_events_publish(run_id: str, last_seq: int, events: Sequence[NewEvent]) -> None:
    """Broadcast events a statement just appended (numbered up to ``last_seq``) once their transaction commits."""
    first = last_seq - len(events) + 1
    _publish_on_commit([event_message(run_id, first + index, *event) for index, event in enumerate(events)])


def _publish_on_commit(messages: list[dict[str, Any]]) -> None:
    wrapper = connections[DEFAULT_DB_ALIAS]
    if wrapper.in_atomic_block:
        wrapper.on_commit(lambda: [publish_run_event(message) for message in messages])
    else:  # a statement of its own, committed already (what transaction.on_commit does, in fewer steps)
        for message in messages:
            publish_run_event(message)


def _publisher_start():
    """Make the publisher thread's sender: its own event loop and channel layer instance."""
    from channels import DEFAULT_CHANNEL_LAYER
    from channels.layers import channel_layers

    loop = asyncio.new_event_loop()
    # A layer instance of this thread's own: the process's shared one serves the consumers on
    # the server's event loop, and channels_redis binds some of its state to one loop.
    configured = DEFAULT_CHANNEL_LAYER in channel_layers.configs
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER) if configured else None
    if layer is not None and not type(layer).__module__.startswith("channels_redis"):
        layer = None  # the in-memory layer belongs to the ASGI server's loop: publish_run_event sends directly

    watched_now = _groups_watched_sync(layer) if layer is not None else None

    def send(batch: list[dict[str, Any]]) -> None:
        if layer is None:
            return
        try:
            if watched_now is None:
                loop.run_until_complete(publish_batch(layer, batch))
                return
            by_group = _events_by_group(batch)
            watched = watched_now(set(by_group))
            if watched:  # the event loop turns only for a batch someone is watching
                loop.run_until_complete(_groups_send(layer, by_group, watched))
        except Exception:
            logger.warning("could not publish %d run event(s); clients catch up by seq", len(batch))

    def close() -> None:
        """Close the sender's connections and its event loop (for a caller done with it: the tests)."""
        if layer is not None:
            loop.run_until_complete(layer.close_pools())
        loop.close()

    send.close = close
    return send


async def publish_batch(layer, batch: list[dict[str, Any]]) -> None:
    """Send events to their runs' groups (status events to the runs list too), only to groups someone joined.

    A group gets the batch's events in one message, in order (``events``): a run recording a
    step every half millisecond produces events faster than a subscriber could take them one
    message each (the layer's receive and the consumer's dispatch cost more than the event).
    The message keeps the shape consumers of the earlier version read, one ``run.event`` whose
    ``event`` is the batch's last stored event: during a rolling upgrade those fetch the ones
    before it from the database by seq, as after any gap, instead of failing on a message they
    do not know.
    """
    by_group = _events_by_group(batch)
    await _groups_send(layer, by_group, await _groups_watched(layer, set(by_group)))


def _events_by_group(batch: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Return the events of each group a batch goes to, in order: its run's, and the runs list's for status events."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for message in batch:
        by_group.setdefault(run_group_name(message["run_id"]), []).append(message)
        if message["type"] in RUNS_GROUP_EVENT_TYPES:
            by_group.setdefault(RUNS_GROUP, []).append(message)
    return by_group


async def _groups_send(layer, by_group: dict[str, list[dict[str, Any]]], watched: set[str]) -> None:
    await asyncio.gather(*(
        layer.group_send(group, {"type": "run.event", "event": _last_stored(events), "events": events})
        for group, events in by_group.items() if group in watched
    ))


def _last_stored(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the last event that has a seq (a live-only one has none), else the last."""
    return next((event for event in reversed(events) if event.get("seq") is not None), events[-1])


def events_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the events a channel layer message carries: a batch, or one from a publisher of the earlier version."""
    return message.get("events") or [message["event"]]


async def _groups_watched(layer, groups: set[str]) -> set[str]:
    """Return the groups someone has joined: one round trip per Redis shard for the whole batch.

    Most runs have nobody watching them; sending to an empty group would still cost the layer
    two round trips per event. A group with members is a sorted set the layer keeps (and Redis
    drops when its last member leaves).
    """
    if not hasattr(layer, "_group_key"):  # a layer that is not channels_redis: send to every group
        return groups
    watched = set()
    for shard, names in _groups_by_shard(layer, groups).items():
        pipe = layer.connection(shard).pipeline(transaction=False)
        for name in names:
            pipe.exists(layer._group_key(name))
        watched.update(name for name, found in zip(names, await pipe.execute(), strict=True) if found)
    return watched


def _groups_watched_sync(layer) -> Callable[[set[str]], set[str]] | None:
    """Return a blocking ``_groups_watched`` for the publisher thread, or None for a layer it cannot read.

    Most batches go to groups nobody watches. Asking Redis with a plain client, the thread
    turns its event loop only for a batch that has a watcher: a turn of the loop and the
    asynchronous pipeline cost twice the CPU of the plain pipeline, and a worker publishes after
    every step. A layer whose shards are found through Sentinel is left to the loop.
    """
    import redis

    if not hasattr(layer, "_group_key"):
        return None
    hosts = getattr(layer, "hosts", None) or []
    if not hosts or not all(isinstance(host, dict) and "sentinels" not in host for host in hosts):
        return None
    clients = [
        redis.Redis.from_url(host["address"], **{key: value for key, value in host.items() if key != "address"})
        if "address" in host else redis.Redis(**host)
        for host in hosts
    ]

    def watched(groups: set[str]) -> set[str]:
        found = set()
        for shard, names in _groups_by_shard(layer, groups).items():
            pipe = clients[shard].pipeline(transaction=False)
            for name in names:
                pipe.exists(layer._group_key(name))
            found.update(name for name, exists in zip(names, pipe.execute(), strict=True) if exists)
        return found

    return watched


def _groups_by_shard(layer, groups: set[str]) -> dict[int, list[str]]:
    by_shard: dict[int, list[str]] = {}
    for group in groups:
        by_shard.setdefault(layer.consistent_hash(group), []).append(group)
    return by_shard


# One background thread per process sends events to the channel layer in batches: the caller
# never waits for Redis; an event the layer loses is recovered by the browser from the database by seq.
# A batch waits PUBLISH_LINGER_SECONDS for more events: a worker recording a step every
# millisecond then pays one Redis round trip (and one turn of the thread's event loop) per
# batch of steps, not per step, for a few milliseconds more between its commit and the browser.
PUBLISH_LINGER_SECONDS = 0.01
_publisher: BatchThread[dict[str, Any]] = BatchThread(
    name="stepwise-event-publisher", start=_publisher_start, max_batch=200, linger=PUBLISH_LINGER_SECONDS
)


def publish_run_event(message: dict[str, Any]) -> None:
    """Send one event to its run's group (status events to the runs list too); losses are recovered by seq."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    if type(layer).__module__.startswith("channels_redis"):
        _publisher.submit(message)
        return
    from asgiref.sync import async_to_sync

    try:  # the embedded in-memory layer: hand the message over directly
        async_to_sync(publish_batch)(layer, [message])
    except Exception:
        logger.warning("could not publish run event %s#%s", message["run_id"], message["seq"])


def publish_flush(timeout: float = 5.0) -> bool:
    """Wait for queued events to reach the channel layer (tests and shutdown)."""
    return _publisher.flush(timeout)
