"""Websocket consumers streaming RunEvents: stored events after the client's seq first, then live ones."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from runs.events import RUNS_GROUP, RUNS_GROUP_EVENT_TYPES, run_group_name
from runs.models import Run
from runs.selectors import run_events_after
from tasks.access import Capability, environments_where, may

# Close codes a browser can act on: log in again, or ask for access.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
PAGE = 500


# What the runs list remembers of runs' environments, for a user who may see only some of them.
ENVIRONMENTS_REMEMBERED = 10_000


@database_sync_to_async
def _readable_environments(user) -> list[str] | None:
    return environments_where(user, Capability.READ)


@database_sync_to_async
def _may_read(user, environment: str) -> bool:
    return may(user, environment, Capability.READ)


@database_sync_to_async
def _run_environment(run_id: str) -> str | None:
    return Run.objects.filter(id=run_id).values_list("environment_id", flat=True).first()


@database_sync_to_async
def _events_after(run_id: str, after: int, upto: int | None = None) -> list[dict[str, Any]]:
    events = run_events_after(run_id=run_id, after=after, limit=PAGE)
    return [e.as_message() for e in events if upto is None or e.seq <= upto]


class _RunsAuthMixin:
    async def _refuse_unless_allowed(self) -> bool:
        """Accept the socket; close it with a code and return False unless the user may watch runs somewhere.

        Sets ``self.readable``: the environments whose runs the user may watch (None: every one).
        """
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        self.readable = await _readable_environments(user)
        if self.readable == []:
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        return True


class RunEventsConsumer(_RunsAuthMixin, AsyncJsonWebsocketConsumer):
    """``/ws/runs/<id>/?after=<seq>``: one run's events in seq order, with no gap and no duplicate."""

    async def connect(self) -> None:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        self.last_seq = 0
        self.joined = False
        if not await self._refuse_unless_allowed():
            return
        try:
            self.last_seq = int(parse_qs(self.scope.get("query_string", b"").decode()).get("after", ["0"])[0])
        except ValueError:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        if self.last_seq < 0:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        environment = await _run_environment(self.run_id)
        if environment is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not await _may_read(self.scope["user"], environment):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Join first: an event committed while we read the database is then delivered live too,
        # and the seq check below drops whichever copy comes second.
        await self.channel_layer.group_add(run_group_name(self.run_id), self.channel_name)
        self.joined = True
        await self._send_stored(upto=None)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(run_group_name(self.run_id), self.channel_name)

    async def _send_stored(self, *, upto: int | None) -> None:
        """Send stored events after the last one sent, up to ``upto`` (all if None)."""
        while True:
            events = await _events_after(self.run_id, self.last_seq, upto)
            for event in events:
                await self.send_json(event)
                self.last_seq = event["seq"]
            if len(events) < PAGE:
                return

    async def run_event(self, message: dict[str, Any]) -> None:
        """Forward a live event; fetch any missed ones from the database first, drop duplicates."""
        event = message["event"]
        if event.get("transient"):  # live only (a step started): never stored, so no seq to check
            await self.send_json(event)
            return
        seq = event["seq"]
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            await self._send_stored(upto=seq - 1)
        if seq == self.last_seq + 1:
            await self.send_json(event)
            self.last_seq = seq


class RunsListConsumer(_RunsAuthMixin, AsyncJsonWebsocketConsumer):
    """``/ws/runs/``: every run's creation and status changes, live, for the runs list."""

    async def connect(self) -> None:
        self.joined = False
        self.environments: dict[str, str | None] = {}
        if not await self._refuse_unless_allowed():
            return
        await self.channel_layer.group_add(RUNS_GROUP, self.channel_name)
        self.joined = True

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(RUNS_GROUP, self.channel_name)

    async def run_event(self, message: dict[str, Any]) -> None:
        """Forward one run's status event, if the user may see the run's environment."""
        event = message["event"]
        if event["type"] not in RUNS_GROUP_EVENT_TYPES:
            return
        if self.readable is not None and await self._environment_of(event["run_id"]) not in self.readable:
            return
        await self.send_json(event)

    async def _environment_of(self, run_id: str) -> str | None:
        if run_id not in self.environments:
            if len(self.environments) >= ENVIRONMENTS_REMEMBERED:
                self.environments.clear()
            self.environments[run_id] = await _run_environment(run_id)
        return self.environments[run_id]
