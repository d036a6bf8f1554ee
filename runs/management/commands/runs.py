"""manage.py runs list|show|cancel|replay|export: runs from the command line, locally or on a server (--server)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from stepwise.runs.engine.errors import error_text
from stepwise.runs.exports import FORMATS, run_export
from stepwise.runs.management.base import audit, user_errors
from stepwise.runs.management.commands.trigger import event_line
from stepwise.runs.management.remote import is_remote, runs_remote, server_options
from stepwise.runs.selectors import RunFilters, run_events_after, run_get, run_page
from stepwise.runs.services import run_cancel, run_replay
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import payload_parse


class Command(BaseCommand):
    help = "List runs, or show one run with its attempts, steps and events."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="newest runs first")
        listing.add_argument("--task")
        listing.add_argument("--status", choices=[s.value for s in RunStatus])
        listing.add_argument("--limit", type=int, default=20)
        for name in ("tag", "queue", "batch", "schedule"):
            listing.add_argument(f"--{name}")
        server_options(listing)
        show = sub.add_parser("show", help="one run in full")
        show.add_argument("run_id")
        show.add_argument("--events", action="store_true", help="print the event log too")
        server_options(show)
        cancel = sub.add_parser("cancel", help="cancel a run that has not finished")
        cancel.add_argument("run_id")
        server_options(cancel)
        replay = sub.add_parser("replay", help="start a new run like this one, linked to it")
        replay.add_argument("run_id")
        replay.add_argument("--payload", help="with this JSON payload instead of the run's")
        server_options(replay)
        export = sub.add_parser("export", help="the run's trace as JSON lines, a markdown report or OTLP-JSON")
        export.add_argument("run_id")
        export.add_argument("--format", choices=list(FORMATS), default="markdown")
        export.add_argument("--output", "-o", help="write to this file instead of the standard output")

    def handle(self, *args, **opts) -> None:
        if is_remote(opts):
            if opts["action"] == "show" and opts["events"]:
                raise CommandError("--events reads the local database; with --server, leave it out")
            runs_remote(self, opts)
            return
        actions = {"list": self._list, "show": self._show, "export": self._export, "cancel": self._cancel,
                   "replay": self._replay}
        actions[opts["action"]](opts)

    def _cancel(self, opts) -> None:
        with user_errors():
            run = run_cancel(run_id=opts["run_id"], reason="canceled from the command line")
            audit("run.cancel", environment=run.environment_id, target=run.id)
        self.stdout.write(f"{run.id} {run.status}")

    def _replay(self, opts) -> None:
        with user_errors():
            payload = payload_parse(opts["payload"]) if opts["payload"] else ...
            new = run_replay(run_id=opts["run_id"], payload=payload)
            audit("run.replay", environment=new.environment_id, target=opts["run_id"],
                  data={"new_run_id": new.id, "payload_edited": payload is not ...})
        self.stdout.write(f"{new.id} {new.status} (replay of {opts['run_id']})")

    def _export(self, opts) -> None:
        run = run_get(run_id=opts["run_id"])
        if run is None:
            raise CommandError(f"no run with id '{opts['run_id']}'")
        content, _, _ = run_export(run, opts["format"], viewer=None)  # the server's own CLI: everything
        text = content if isinstance(content, str) else "".join(content)
        if opts["output"]:
            try:
                with open(opts["output"], "w", encoding="utf-8") as out:
                    out.write(text)
            except OSError as exc:
                raise CommandError(f"cannot write {opts['output']}: {exc.strerror}") from None
            self.stdout.write(f"wrote {opts['output']} ({len(text.encode())} bytes, {opts['format']})")
        else:
            self.stdout.write(text, ending="" if text.endswith("\n") else "\n")

    def _list(self, opts) -> None:
        filters = RunFilters(**{k: opts[k] or "" for k in ("task", "status", "tag", "queue", "batch", "schedule")})
        runs = run_page(filters=filters, size=max(1, opts["limit"])).runs
        self.stdout.write(f"{'RUN':<36} {'TASK':<20} {'STATUS':<10} {'ATT':>3}  CREATED")
        for run in runs:
            created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
            self.stdout.write(f"{run.id:<36} {run.task_id:<20} {run.status:<10} {run.attempt_count:>3}  {created}")

    def _show(self, opts) -> None:
        run = run_get(run_id=opts["run_id"])
        if run is None:
            raise CommandError(f"no run with id '{opts['run_id']}'")
        w = self.stdout.write
        w(f"run       {run.id}")
        w(f"task      {run.task_id} (version {run.version.label}, version_policy {run.version_policy})")
        w(f"status    {run.status}" + (" (waiting for a worker of its version)" if run.waiting_for_version else ""))
        if run.idempotency_key is not None:
            w(f"key       {run.idempotency_key} ({run.idempotency_key_scope} scope, {run.idempotency_key_state})")
        w(f"payload   {json.dumps(run.payload)}")
        if run.output is not None:
            w(f"output    {json.dumps(run.output)}")
        if run.error:
            w(f"error     {error_text(run.error)}")
        w("attempts")
        for a in run.attempts.select_related("version"):
            err = f"  {error_text(a.error)}" if a.error else ""
            w(f"  #{a.number} {a.status:<10} worker={a.worker_id} version={a.version.label}{err}")
        w("steps")
        for s in run.steps.all():
            err = f"  {error_text(s.error)}" if s.error else ""
            w(f"  {s.position:>3}. {s.key:<24} {s.status:<9} attempt {s.attempt_number}  {s.duration_ms:.0f} ms{err}")
        if opts["events"]:
            w("events")
            for event in run_events_after(run_id=run.id):
                w("  " + event_line(event))
