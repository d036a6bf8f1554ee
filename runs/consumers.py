"""Websocket consumers streaming RunEvents: stored events after the client's seq first, then live ones.

A console user is known by the session cookie; any other client sends an API key (read scope)
or a public token as ``Authorization: Bearer ...``, as on the REST API.
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from stepwise.console.failed_attempts import (
    API_KEY,
    TooManyFailedAttempts,
    failed_attempt_record,
    failed_attempts_check,
)
from stepwise.runs.events import RUNS_GROUP, RUNS_GROUP_EVENT_TYPES, events_of, run_group_name
from stepwise.runs.models import Run
from stepwise.runs.realtime.feeds import RunEventFeed
from stepwise.runs.realtime.readers import Reader, reader_from_authorization
from stepwise.runs.realtime.tokens import OutOfScope, PublicToken, PublicTokenRefused
from stepwise.tasks.access import Capability, environments_where

# Close codes a browser can act on: log in again, or ask for access.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_MANY_FAILURES = 4429


# What the runs list remembers of runs' environments, for a user who may see only some of them.
ENVIRONMENTS_REMEMBERED = 10_000


@database_sync_to_async
def _readable_environments(user) -> list[str] | None:
    return environments_where(user, Capability.READ)


@database_sync_to_async
def _may_read_run(reader: Reader, environment: str, run_id: str, tags: list[str]) -> bool:
    return reader.may_read_run(environment=environment, run_id=run_id, tags=tags)


@database_sync_to_async
def _run_access(run_id: str) -> tuple[str, list[str]] | None:
    """Return a run's environment and tags (what decides who may read it), or None if there is no such run."""
    return Run.objects.filter(id=run_id).values_list("environment_id", "tags").first()


@database_sync_to_async
def _bearer_reader(authorization: str, client: str) -> Reader:
    """Return the reader a bearer credential names; failures are counted and throttled as for the REST API."""
    failed_attempts_check(API_KEY, client)
    try:
        return reader_from_authorization(authorization)
    except PublicTokenRefused:
        failed_attempt_record(API_KEY, client)
        raise


def _authorization(scope: dict[str, Any]) -> str:
    return dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")


class _RunsAuthMixin:
    async def _refuse_unless_allowed(self) -> bool:
        """Accept the socket; close it with a code and return False unless the caller may watch runs somewhere.

        Sets ``self.reader`` (the credential) and ``self.readable``: the environments whose runs
        the caller may watch (None: every one). A public token closes the socket when it expires.
        """
        await self.accept()
        authorization = _authorization(self.scope)
        if authorization:
            try:
                self.reader = await _bearer_reader(authorization, (self.scope.get("client") or ["unknown"])[0])
            except TooManyFailedAttempts:
                await self.close(code=CLOSE_TOO_MANY_FAILURES)
                return False
            except OutOfScope:
                await self.close(code=CLOSE_FORBIDDEN)
                return False
            except PublicTokenRefused:
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return False
            self.readable = [self.reader.environment]
            self._close_at_expiry()
            return True
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        self.reader = Reader(user)
        self.readable = await _readable_environments(user)
        if self.readable == []:
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        return True

    def _close_at_expiry(self) -> None:
        if self.reader.expires_at is None:
            return
        seconds = max(0.0, (self.reader.expires_at - timezone.now()).total_seconds())
        self.expiry = asyncio.get_running_loop().call_later(
            seconds, lambda: asyncio.ensure_future(self.close(code=CLOSE_UNAUTHENTICATED)))

    def _stop_expiry(self) -> None:
        if getattr(self, "expiry", None) is not None:
            self.expiry.cancel()


class RunEventsConsumer(_RunsAuthMixin, AsyncJsonWebsocketConsumer):
    """``/ws/runs/<id>/?after=<seq>``: one run's events in seq order, with no gap and no duplicate."""

    async def connect(self) -> None:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        self.joined = False
        if not await self._refuse_unless_allowed():
            return
        try:
            after = int(parse_qs(self.scope.get("query_string", b"").decode()).get("after", ["0"])[0])
        except ValueError:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        if after < 0:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.feed = RunEventFeed(self.run_id, after)
        access = await _run_access(self.run_id)
        if access is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not await _may_read_run(self.reader, access[0], self.run_id, access[1]):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.display = await database_sync_to_async(self.reader.run_display)(self.run_id)
        # Join first: an event committed while we read the database is then delivered live too,
        # and the feed's seq check drops whichever copy comes second.
        await self.channel_layer.group_add(run_group_name(self.run_id), self.channel_name)
        self.joined = True
        async for event in self.feed.stored():
            await self.send_json(self.display.event(event))

    async def disconnect(self, code: int) -> None:
        self._stop_expiry()
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(run_group_name(self.run_id), self.channel_name)

    async def run_event(self, message: dict[str, Any]) -> None:
        """Forward live events; fetch any missed ones from the database first, drop duplicates."""
        for live in events_of(message):
            async for event in self.feed.live(live):
                await self.send_json(self.display.event(event))


class RunsListConsumer(_RunsAuthMixin, AsyncJsonWebsocketConsumer):
    """``/ws/runs/``: every run's creation and status changes, live, for the runs list."""

    async def connect(self) -> None:
        self.joined = False
        self.runs: dict[str, tuple[str, list[str]] | None] = {}
        if not await self._refuse_unless_allowed():
            return
        await self.channel_layer.group_add(RUNS_GROUP, self.channel_name)
        self.joined = True

    async def disconnect(self, code: int) -> None:
        self._stop_expiry()
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(RUNS_GROUP, self.channel_name)

    async def run_event(self, message: dict[str, Any]) -> None:
        """Forward runs' status events, each if the caller may see its run (its environment, a token's scope)."""
        for event in events_of(message):
            if await self._may_see(event):
                await self.send_json(event)

    async def _may_see(self, event: dict[str, Any]) -> bool:
        if event["type"] not in RUNS_GROUP_EVENT_TYPES:
            return False
        if self.readable is not None or isinstance(self.reader.holder, PublicToken):
            access = await self._access_of(event["run_id"])
            if access is None or (self.readable is not None and access[0] not in self.readable):
                return False
            if isinstance(self.reader.holder, PublicToken) and not self.reader.holder.covers_run(
                event["run_id"], access[1]
            ):
                return False
        return True

    async def _access_of(self, run_id: str) -> tuple[str, list[str]] | None:
        # A run's environment and tags never change: remembered, up to a bound.
        if run_id not in self.runs:
            if len(self.runs) >= ENVIRONMENTS_REMEMBERED:
                self.runs.clear()
            self.runs[run_id] = await _run_access(run_id)
        return self.runs[run_id]
