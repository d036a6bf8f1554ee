"""manage.py trigger TASK_ID 'JSON' [--follow] [--server URL --api-key KEY]: start a run from the command line.

With ``--server`` (or STEPWISE_URL) the run is triggered through that server's API with the key
of ``--api-key`` (or STEPWISE_API_KEY), and ``--follow`` reads its events as server-sent events.
"""
from __future__ import annotations

import json
import time
from datetime import datetime
from types import SimpleNamespace

from django.core.management.base import BaseCommand, CommandError

from stepwise.client import Client, RunTimeout
from stepwise.runs.engine.errors import error_text
from stepwise.runs.management.base import user_errors
from stepwise.runs.management.remote import is_remote, remote_client, run_ended, server_options
from stepwise.runs.selectors import run_events_after, run_get
from stepwise.runs.statuses import IdempotencyKeyScope, RunStatus
from stepwise.runs.triggers import InvalidTrigger, TriggerOptions, payload_parse, run_trigger


def event_line(event) -> str:
    """Format one RunEvent as a line of progress."""
    data = event.data
    at = event.created_at.strftime("%H:%M:%S.%f")[:-3]
    if event.type == "run.status":
        extra = ""
        if data.get("error"):
            extra = f"  {error_text(data['error'])}"
        if data.get("retry_delay") is not None:
            extra += f"  (next attempt in {data['retry_delay']:.1f}s)"
        detail = f"{data['from']} -> {data['to']}{extra}"
    elif event.type.startswith("step."):
        detail = f"{event.type.split('.')[1]:<9} {data['key']}"
        if "duration_ms" in data:
            detail += f"  {data['duration_ms']:.0f} ms"
        if data.get("error"):
            detail += f"  {error_text(data['error'])}"
    elif event.type == "spans.ended":
        detail = ", ".join(f"{span['name']} {span['duration_ms']:.0f} ms" for span in data.get("spans", []))
    elif event.type == "log":
        detail = f"{data.get('level', 'INFO'):<7} {data.get('message', '')}"
    else:
        detail = ", ".join(f"{k}={v}" for k, v in data.items())
    if data.get("span_ids"):
        detail += f"  (+{len(data['span_ids'])} span{'s' if len(data['span_ids']) > 1 else ''})"
    return f"{at}  #{event.seq:<3} {event.type:<15} {detail}"


def follow(command: BaseCommand, run_id: str, *, timeout: float | None = None, poll: float = 0.2) -> str:
    """Print a run's events as they are stored until it finishes; return its final status."""
    after = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for event in run_events_after(run_id=run_id, after=after):
            command.stdout.write(event_line(event))
            after = event.seq
        run = run_get(run_id=run_id)
        if run.is_finished and not run_events_after(run_id=run_id, after=after):
            return run.status
        if deadline is not None and time.monotonic() > deadline:
            raise CommandError(f"run {run_id} is still {run.status} after {timeout:g}s")
        time.sleep(poll)


def follow_streamed(command: BaseCommand, client: Client, run_id: str, *, timeout: float | None = None) -> dict:
    """Print a run's events as a server streams them (server-sent events) until it finishes; return the run."""
    try:
        for message in client.events(run_id, timeout=timeout or 10 * 365 * 86400):
            if message.get("seq") is None:
                continue  # live only (a step started): the database-backed --follow never shows these either
            event = SimpleNamespace(seq=message["seq"], type=message["type"], data=message["data"],
                                    created_at=datetime.fromisoformat(message["at"]))
            command.stdout.write(event_line(event))
    except RunTimeout:
        raise CommandError(f"run {run_id} did not finish within {timeout:g}s") from None
    return client.get_run(run_id)


def _json_option(text: str | None, name: str, default):
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTrigger(f"{name} is not valid JSON: {exc.msg} at column {exc.colno}") from None


class Command(BaseCommand):
    help = "Trigger a run of a task with a JSON payload; --follow prints its progress until it ends."

    def add_arguments(self, parser) -> None:
        parser.add_argument("task_id")
        parser.add_argument("payload", nargs="?", default="{}", help="JSON payload (default {})")
        parser.add_argument("--idempotency-key")
        parser.add_argument("--idempotency-key-scope", choices=IdempotencyKeyScope.values,
                            help="what the key is unique within (default: global; run and attempt are for "
                                 "triggers made inside a run)")
        parser.add_argument("--tag", action="append", default=[], dest="tags")
        parser.add_argument("--delay", help="e.g. 30s, 5m, 1h")
        parser.add_argument("--ttl", help="expire if not started within this duration")
        parser.add_argument("--queue")
        parser.add_argument("--concurrency-key")
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--environment", help="default dev; with --server the API key decides it")
        parser.add_argument("--metadata", help="the run's starting metadata, a JSON object")
        parser.add_argument("--retry", help='this run\'s retry policy instead of the task\'s, as JSON, e.g. '
                                            '\'{"max_attempts": 1}\'')
        parser.add_argument("--follow", action="store_true", help="print progress until the run ends")
        parser.add_argument("--timeout", type=float, help="with --follow: give up after this many seconds")
        server_options(parser)

    def handle(self, *args, **opts) -> None:
        with user_errors():
            payload = payload_parse(opts["payload"])
            metadata = _json_option(opts["metadata"], "--metadata", {})
            retry = _json_option(opts["retry"], "--retry", None)
        if is_remote(opts):
            self._remote(opts, payload, metadata, retry)
            return
        with user_errors():
            options = TriggerOptions(
                metadata=metadata,
                retry=retry,
                idempotency_key=opts["idempotency_key"],
                idempotency_key_scope=opts["idempotency_key_scope"],
                tags=opts["tags"],
                delay=opts["delay"],
                ttl=opts["ttl"],
                queue=opts["queue"],
                concurrency_key=opts["concurrency_key"],
                priority=opts["priority"],
                environment=opts["environment"] or "dev",
            )
            run, created = run_trigger(task_id=opts["task_id"], payload=payload, options=options)
        note = "" if created else " (existing run for this idempotency key)"
        self.stdout.write(f"{run.id} {run.status}{note}")
        if not opts["follow"]:
            return
        status = follow(self, run.id, timeout=opts["timeout"])
        final = run_get(run_id=run.id)
        if status == RunStatus.COMPLETED:
            self.stdout.write(self.style.SUCCESS(f"{run.id} COMPLETED output={json.dumps(final.output)}"))
            return
        reason = error_text(final.error) if final.error else "no error recorded"
        raise CommandError(f"run {run.id} ended {status}: {reason}")

    def _remote(self, opts, payload, metadata, retry) -> None:
        if opts["environment"]:
            raise CommandError("with --server the API key decides the environment: leave out --environment "
                               "(or use a key of that environment)")
        options = {k: opts[k] for k in ("idempotency_key", "idempotency_key_scope", "delay", "ttl", "queue",
                                        "concurrency_key") if opts[k] is not None}
        options.update(tags=opts["tags"], priority=opts["priority"], metadata=metadata)
        if retry is not None:
            options["retry"] = retry
        with remote_client(opts["server"], opts["api_key"]) as client:
            run = client.trigger(opts["task_id"], payload, **options)
            note = "" if run["created"] else " (existing run for this idempotency key)"
            self.stdout.write(f"{run['id']} {run['status']}{note}")
            if opts["follow"]:
                run_ended(self, follow_streamed(self, client, run["id"], timeout=opts["timeout"]))
