"""Health of a Stepwise process: the checks behind /health/ready and ``manage.py health``.

Each check answers quickly (a bounded timeout) and never raises: it returns a ``Check`` that
says what is wrong. The scheduler records a beat after its passes (at most every
``BEAT_SECONDS``) and workers announce themselves every heartbeat (``tasks.WorkerVersion``),
so a probe can tell a wedged process from a live one.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from stepwise.runs.models import SchedulerBeat
from stepwise.tasks.models import WorkerVersion

# A scheduler writes its beat at most this often: one small UPDATE, however short its passes.
BEAT_SECONDS = 5.0
CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    """The outcome of one health check."""

    name: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class SchedulerHeartbeat:
    """Records that this scheduler is alive: a row per scheduler process, its time updated after passes."""

    def __init__(self) -> None:
        self.scheduler = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._started_at = timezone.now()
        self._last: float | None = None

    def beat(self, now: datetime, monotonic: float) -> None:
        """Store a beat unless one was stored just before: one UPDATE; the first beat inserts the row."""
        # Well within the staleness limit, so one slow pass does not read as a dead scheduler.
        every = min(BEAT_SECONDS, settings.STEPWISE_SCHEDULER_STALE_SECONDS / 4)
        if self._last is not None and monotonic - self._last < every:
            return
        if self._last is None or not SchedulerBeat.objects.filter(scheduler=self.scheduler).update(beat_at=now):
            SchedulerBeat.objects.filter(beat_at__lt=now - timedelta(days=1)).delete()  # long-gone schedulers
            SchedulerBeat.objects.update_or_create(
                scheduler=self.scheduler, defaults={"beat_at": now},
                create_defaults={"beat_at": now, "started_at": self._started_at},
            )
        self._last = monotonic

    def leave(self) -> None:
        """Say that this scheduler stopped."""
        try:
            SchedulerBeat.objects.filter(scheduler=self.scheduler).delete()
        except DatabaseError:
            pass  # its row ages out instead


def scheduler_beat_age(*, host: str | None = None, now: datetime | None = None) -> float | None:
    """Return the seconds since the freshest scheduler beat (of schedulers on ``host`` if given), or None."""
    beats = SchedulerBeat.objects.all()
    if host is not None:
        beats = beats.filter(scheduler__startswith=f"{host}:")
    latest = beats.order_by("-beat_at").values_list("beat_at", flat=True).first()
    if latest is None:
        return None
    return max(0.0, ((now or timezone.now()) - latest).total_seconds())


def database_check() -> Check:
    """Tell whether the database answers a query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Check("database", True)
    except DatabaseError as exc:
        connection.close()
        return Check("database", False, f"{type(exc).__name__}: {exc}".strip())


def broker_check() -> Check:
    """Tell whether the Celery broker answers (Redis PING); the embedded memory broker always does."""
    if not settings.REDIS_URL:
        return Check("broker", True, "in-process memory transport")
    from kombu import Connection

    # One try, bounded: a probe reports the broker as it is now instead of waiting for it to come back.
    options = {"max_retries": 0, "socket_connect_timeout": CHECK_TIMEOUT_SECONDS,
               "socket_timeout": CHECK_TIMEOUT_SECONDS}
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS,
                        transport_options=options) as conn:
            conn.default_channel.client.ping()
        return Check("broker", True)
    except Exception as exc:  # any failure to reach it is the answer
        return Check("broker", False, f"{type(exc).__name__}: {exc}")


def channel_layer_check() -> Check:
    """Tell whether the channel layer carries a message to a fresh channel and back."""
    import asyncio

    from channels import DEFAULT_CHANNEL_LAYER
    from channels.layers import channel_layers

    async def round_trip() -> None:
        # A layer of its own: the shared one binds its receive state to the loop that first receives.
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = f"health.{uuid.uuid4().hex}"
        try:
            await asyncio.wait_for(layer.send(channel, {"type": "health.ping"}), CHECK_TIMEOUT_SECONDS)
            message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_SECONDS)
        finally:
            if hasattr(layer, "close_pools"):
                await layer.close_pools()
        if message.get("type") != "health.ping":
            raise RuntimeError(f"received {message!r} instead of the ping")

    try:
        async_to_sync(round_trip)()
        return Check("channel_layer", True)
    except Exception as exc:  # a timeout or a connection error: either way it is down
        return Check("channel_layer", False, f"{type(exc).__name__}: {exc}")


def scheduler_check(*, host: str | None = None) -> Check:
    """Tell whether a scheduler (on ``host`` if given) finished a pass recently."""
    stale = settings.STEPWISE_SCHEDULER_STALE_SECONDS
    where = f" on {host}" if host else ""
    try:
        age = scheduler_beat_age(host=host)
    except DatabaseError as exc:
        connection.close()
        return Check("scheduler", False, f"cannot read scheduler beats: {exc}")
    if age is None:
        return Check("scheduler", False, f"no scheduler{where} has recorded a pass")
    if age > stale:
        return Check("scheduler", False, f"the last scheduler pass{where} was {age:.0f}s ago (limit {stale:g}s)")
    return Check("scheduler", True, f"last pass {age:.1f}s ago")


def worker_check(*, host: str | None = None) -> Check:
    """Tell whether a worker (on ``host`` if given) announced itself within a lease."""
    since = timezone.now() - timedelta(seconds=settings.STEPWISE_LEASE_SECONDS)
    where = f" on {host}" if host else ""
    try:
        workers = WorkerVersion.objects.filter(seen_at__gte=since)
        if host is not None:
            workers = workers.filter(worker__startswith=f"{host}:")
        alive = workers.values("worker").distinct().count()
    except DatabaseError as exc:
        connection.close()
        return Check("worker", False, f"cannot read worker heartbeats: {exc}")
    if not alive:
        return Check("worker", False, f"no worker{where} announced itself in the last "
                                      f"{settings.STEPWISE_LEASE_SECONDS:g}s")
    return Check("worker", True, f"{alive} worker process{'es' if alive > 1 else ''}{where}")


def web_checks() -> list[Check]:
    """Run the checks a web process depends on, plus the scheduler's (reported, see ``READY_REQUIRES``)."""
    return _concurrently([database_check, broker_check, channel_layer_check, scheduler_check])


# What /health/ready needs to answer 200. The scheduler's health is reported beside them but a
# stopped scheduler does not take the console out of its load balancer: people need the console
# most when runs stall, and `manage.py health --scheduler` probes the scheduler itself.
READY_REQUIRES = ("database", "broker", "channel_layer")


def _concurrently(checks) -> list[Check]:
    """Run the checks in threads, so a slow one does not add to the others' time; keep their order."""
    results: list[Check | None] = [None] * len(checks)

    def run(index: int, check) -> None:
        try:
            results[index] = check()
        finally:
            connection.close()  # each thread opened its own connection

    threads = [threading.Thread(target=run, args=(i, check), daemon=True) for i, check in enumerate(checks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CHECK_TIMEOUT_SECONDS * 2)
    return [result or Check(check.__name__.removesuffix("_check"), False, "timed out")
            for result, check in zip(results, checks, strict=True)]
