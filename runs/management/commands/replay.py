"""manage.py replay: fetch a run from a Stepwise server and execute its task here, in this code base."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from stepwise.runs.engine.errors import error_text
from stepwise.runs.engine.executor import attempt_execute
from stepwise.runs.engine.memory import MemoryRunStore
from stepwise.runs.engine.spans import tracing_enabled_set
from stepwise.runs.engine.store import Claim, RecordedStep
from stepwise.runs.management.remote import remote_client, server_options
from stepwise.tasks.registry import UnknownTask, task_get
from stepwise.tasks.secrets import secrets_for_environment


def _recorded(steps: list[dict[str, Any]]) -> tuple[RecordedStep, ...]:
    """The server's completed steps, as a replay takes them; failed ones run again."""
    return tuple(
        RecordedStep(s["position"], s["key"], s["name"], "COMPLETED", s["output"], None, s["kind"],
                     datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
        for s in sorted(steps, key=lambda s: s["position"]) if s["status"] == "COMPLETED"
    )


class Command(BaseCommand):
    help = ("Fetch a run from a Stepwise server over its REST API and execute its task locally, printing each "
            "step, log line and metadata change: the steps the server recorded as completed replay their "
            "results (--fresh runs every step again). Timers resolve at once; a wait for an event, a token or "
            "child runs stops the replay there. SDK writes the code makes (triggers, events) go to the local "
            "database.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("run_id")
        server_options(parser, flag="--from")
        parser.add_argument("--fresh", action="store_true", help="run every step again, recorded or not")
        parser.add_argument("--payload", help="run with this JSON payload instead of the run's")
        parser.add_argument("--secrets-env", help="read ctx.env from this local environment's secrets")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["server"] or not opts["api_key"]:
            raise CommandError("give the server with --from URL and a key with --api-key KEY "
                               "(or set STEPWISE_URL and STEPWISE_API_KEY)")
        run = self._fetch(opts["server"], opts["api_key"], opts["run_id"])
        try:
            definition = task_get(run["task_id"])
        except UnknownTask as exc:
            raise CommandError(f"run {run['id']} is of task '{run['task_id']}', which this code base does not "
                               f"register: {exc}") from None
        payload = run["payload"]
        if opts["payload"] is not None:
            try:
                payload = json.loads(opts["payload"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--payload is not valid JSON: {exc.msg} at column {exc.colno}") from None
        steps = () if opts["fresh"] else _recorded(run["steps"])
        claim = Claim(
            run_id=run["id"], task_id=run["task_id"], payload=payload, attempt_number=1, lease_token="local",
            worker_id="local", version_hash=definition.version_hash, environment=run["environment"],
            max_duration=None, executed_seconds=0.0, tags=list(run["tags"]), metadata=dict(run["metadata"]),
            steps=steps,
        )
        w = self.stdout.write
        w(f"{run['id']} ({run['task_id']}, {run['status']} on {opts['server']}) runs here with "
          + ("every step again" if opts["fresh"] else f"{len(steps)} recorded step(s) replayed"))
        store = MemoryRunStore(claim, report=self._report)
        tracing_enabled_set(False)  # nothing of a local run goes to the database
        try:
            attempt_execute(
                store=store, run_id=run["id"], worker_id="local", lookup=lambda _: definition.executable(),
                heartbeat_interval=3600, max_output_bytes=settings.STEPWISE_MAX_PAYLOAD_BYTES,
                env_loader=(lambda _: secrets_for_environment(opts["secrets_env"])) if opts["secrets_env"] else None,
            )
        finally:
            tracing_enabled_set(True)
        if store.status == "COMPLETED":
            w(self.style.SUCCESS(f"COMPLETED output={json.dumps(store.output)}"))
        elif store.status == "WAITING":
            w("stopped at a wait that a local replay cannot resolve (an event, a token or child runs)")
        else:
            raise CommandError(f"{store.status}: {error_text(store.error) if store.error else 'no error'}")

    def _fetch(self, server: str, api_key: str, run_id: str) -> dict[str, Any]:
        with remote_client(server, api_key) as client:
            return client.get_run(run_id)

    def _report(self, kind: str, data: dict[str, Any]) -> None:
        w = self.stdout.write
        if kind == "step.completed":
            w(f"  ✓ {data['key']:<24} {data['duration_ms']:>8.1f} ms  {json.dumps(data['output'])[:80]}")
        elif kind == "step.failed":
            w(f"  ✗ {data['key']:<24} {error_text(data['error'])}")
        elif kind == "log":
            w(f"  · {data['level']:<7} {data['message']}")
        elif kind == "metadata":
            w(f"  ◆ metadata {json.dumps(data['metadata'])[:100]}")
        elif kind == "waits":
            w(f"  ⏸ wait {data['key']} for {data['kind'].lower()}{' ' + data['event'] if data['event'] else ''}")
        elif kind == "failed" and data["retryable"]:
            w("  (the server would retry this attempt)")
