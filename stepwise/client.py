"""A small HTTP client that triggers and follows Stepwise runs, sends events and completes waitpoints.

Example::

    from stepwise.client import Client

    with Client("https://stepwise.example.com", api_key="sk_prod_...") as client:
        run = client.trigger("process-order", {"id": "1"}, idempotency_key="order-1")
        done = client.wait(run["id"], timeout=60)
        print(done["status"], done["output"])
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "CRASHED", "EXPIRED"})
PUBLIC_TOKEN_PREFIX = "pt_"


class StepwiseApiError(Exception):
    """The API answered with an error; ``status_code`` and ``detail`` say why."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {detail}")


class RunTimeout(TimeoutError):
    """A run did not finish within the time given to ``wait``."""


class StreamEnded(Exception):
    """A run's stream ended before the run did: its public token expired, or the run was deleted."""


class Client:
    """Talk to one Stepwise environment with one API key (sent as a bearer header).

    A public token works in its place for what it may read (``events``, ``follow``).
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        # The REST API refuses public tokens: with one, ``follow`` reads the run from its stream alone.
        self._public_token = api_key.startswith(PUBLIC_TOKEN_PREFIX)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api",
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "stepwise-client/1"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _raise_for(self, response: httpx.Response) -> None:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise StepwiseApiError(response.status_code, detail)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self._raise_for(response)
        return response.json() if response.content else None

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> dict[str, Any]:
        """Trigger a run; options are those of the API (idempotency_key, tags, delay, priority...)."""
        return self._call("POST", f"/tasks/{task_id}/trigger", json={"payload": payload, **options})

    def batch_trigger(self, task_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Trigger many runs of one task at once: each item is ``{"payload": ..., **options}``."""
        return self._call("POST", f"/tasks/{task_id}/batch", json={"items": items})["runs"]

    def get_run(self, run_id: str) -> dict[str, Any]:
        """Return a run with its attempts, steps, output and error."""
        return self._call("GET", f"/runs/{run_id}")

    def _pages(self, path: str, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Yield the items of every page of a list endpoint, following ``next_cursor``."""
        params = {k: v for k, v in filters.items() if v is not None}
        while True:
            page = self._call("GET", path, params=params)
            yield from page["items"]
            if not page["next_cursor"]:
                return
            params["cursor"] = page["next_cursor"]

    def list_runs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield runs newest first across pages (filters: task, status, tag, idempotency_key)."""
        return self._pages("/runs", filters)

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a run that has not finished."""
        return self._call("POST", f"/runs/{run_id}/cancel")

    def replay(self, run_id: str, payload: Any = ...) -> dict[str, Any]:
        """Start a new run like this one, optionally with an edited payload."""
        return self._call("POST", f"/runs/{run_id}/replay", json={} if payload is ... else {"payload": payload})

    def reset_idempotency_key(
        self, task_id: str, key: str, *, scope: str = "global", parent_run_id: str | None = None,
        parent_attempt: int | None = None,
    ) -> dict[str, Any]:
        """Free an idempotency key: the next trigger with it starts a new run. Return the run that held it.

        Example: ``client.reset_idempotency_key("process-order", "order-1")``
        """
        body = {"key": key, "scope": scope, "parent_run_id": parent_run_id, "parent_attempt": parent_attempt}
        return self._call("POST", f"/tasks/{task_id}/idempotency-keys/reset", json=body)

    def send_event(self, name: str, payload: Any = None) -> dict[str, Any]:
        """Send an event; return its ``id`` and ``resumed_runs``, how many waiting runs it resumed.

        Example: ``client.send_event("invoice.paid", {"invoiceId": "inv_1"})``
        """
        return self._call("POST", "/events", json={"name": name, "payload": payload})

    def list_waitpoints(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield waitpoints oldest first across pages (filters: status (default PENDING), kind, run_id)."""
        return self._pages("/waitpoints", filters)

    def get_waitpoint(self, waitpoint_id: str) -> dict[str, Any]:
        """Return one waitpoint with its status and, once resolved, its output."""
        return self._call("GET", f"/waitpoints/{waitpoint_id}")

    def complete_waitpoint(self, waitpoint_id: str, output: Any = None) -> dict[str, Any]:
        """Complete a pending token with any JSON; its run resumes with it."""
        return self._call("POST", f"/waitpoints/{waitpoint_id}/complete", json={"output": output})

    def approve(self, waitpoint_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Approve a pending token; its run resumes with ``{"approved": True, **data}``."""
        return self._call("POST", f"/waitpoints/{waitpoint_id}/approve", json={"data": data})

    def reject(self, waitpoint_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reject a pending token; its run resumes with ``{"approved": False, **data}``."""
        return self._call("POST", f"/waitpoints/{waitpoint_id}/reject", json={"data": data})

    def create_public_token(self, scopes: dict[str, list[str]], expires_in: float | str | None = None
                            ) -> dict[str, Any]:
        """Make a read-only token for a browser, scoped to runs and tags; return ``token`` and ``expires_at``.

        Example: ``client.create_public_token({"runs": [run["id"]]}, expires_in="1h")["token"]``
        """
        return self._call("POST", "/auth/public-tokens", json={"scopes": scopes, "expires_in": expires_in})

    def events(self, run_id: str, *, after: int = 0, timeout: float = 300, reconnect_delay: float = 0.5
               ) -> Iterator[dict[str, Any]]:
        """Yield a run's events (stored ones after ``after``, then live ones) until it finishes.

        Server-sent events: a dropped connection is opened again where it stopped (``Last-Event-ID``),
        so every event comes once and in order. Raise RunTimeout after ``timeout`` seconds, and
        StreamEnded when the stream ends before the run (a public token expired, the run was deleted).

        Example: ``for event in client.events(run["id"]): print(event["seq"], event["type"])``
        """
        for kind, data in self._run_messages(run_id, after=after, timeout=timeout, reconnect_delay=reconnect_delay):
            if kind != "run":
                yield data

    def _run_messages(self, run_id: str, *, after: int, timeout: float, reconnect_delay: float
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event name, data) of a run's stream, snapshots included, until it ends; reopen it when dropped."""
        deadline = time.monotonic() + timeout
        last = after
        while True:
            try:
                for kind, data in self._stream(f"/runs/{run_id}/events/stream", last, deadline):
                    if kind == "end":
                        if data.get("status") in FINAL_STATUSES:
                            return
                        raise StreamEnded(f"run {run_id}: {data.get('reason') or 'the stream ended'}")
                    if kind != "run" and data.get("seq") is not None:
                        last = data["seq"]
                    yield kind, data  # an event without a seq is live only (a step started)
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # the connection dropped: open it again after the last event received
            if time.monotonic() > deadline:
                raise RunTimeout(f"run {run_id} did not finish within {timeout:g}s")
            time.sleep(reconnect_delay)

    def _stream(self, path: str, after: int, deadline: float) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event name, data) of one server-sent event stream until the server ends it."""
        timeout = httpx.Timeout(10.0, read=max(1.0, min(60.0, deadline - time.monotonic())))
        with self._http.stream("GET", path, headers={"Last-Event-ID": str(after), "Accept": "text/event-stream"},
                               timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            kind, data = "message", []
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    return
                if not line:
                    if data:
                        yield kind, json.loads("\n".join(data))
                    kind, data = "message", []
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def follow(self, run_id: str, *, timeout: float = 300, interval: float = 0.5) -> Iterator[dict[str, Any]]:
        """Yield the run each time its status changes, until it finishes (live, over server-sent events).

        With an API key each is the run as ``get_run`` returns it; with a public token, the stream's
        snapshot of it (status, tags, metadata, output, error). ``interval`` is how long to wait
        before opening a dropped stream again.

        Example: ``for run in client.follow(run_id): print(run["status"])``
        """
        if self._public_token:
            yield from self._follow_snapshots(run_id, timeout=timeout, interval=interval)
            return
        run = self.get_run(run_id)
        yield run
        if run["status"] in FINAL_STATUSES:
            return
        last = run["status"]
        for event in self.events(run_id, timeout=timeout, reconnect_delay=interval):
            if event["type"] != "run.status" or event["data"].get("to") == last:
                continue
            run = self.get_run(run_id)
            if run["status"] != last:
                last = run["status"]
                yield run
            if last in FINAL_STATUSES:
                return

    def _follow_snapshots(self, run_id: str, *, timeout: float, interval: float) -> Iterator[dict[str, Any]]:
        """Yield the stream's snapshot of a run each time its status changes, until it finishes."""
        run: dict[str, Any] | None = None
        last = None
        for kind, data in self._run_messages(run_id, after=0, timeout=timeout, reconnect_delay=interval):
            if kind == "run":
                run = data
            elif (kind == "run.status" and run is not None and data["seq"] > run["last_event_seq"]
                  and data["data"].get("to") not in FINAL_STATUSES):
                # A final status is yielded from the snapshot sent after it, which carries the output or error.
                run = {**run, "status": data["data"]["to"]}
            else:
                continue
            if run["status"] != last:
                last = run["status"]
                yield run
            if last in FINAL_STATUSES:
                return

    def wait(self, run_id: str, timeout: float = 300, *, interval: float = 0.5) -> dict[str, Any]:
        """Wait for a run to finish and return it; raise RunTimeout after ``timeout`` seconds."""
        states = list(self.follow(run_id, timeout=timeout, interval=interval))
        return states[-1]
