"""manage.py runs list|show|export: inspect runs from the command line."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from runs.engine.errors import error_text
from runs.exports import FORMATS, run_export
from runs.management.commands.trigger import event_line
from runs.selectors import run_events_after, run_get, run_list
from runs.statuses import RunStatus


class Command(BaseCommand):
    help = "List runs, or show one run with its attempts, steps and events."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="newest runs first")
        listing.add_argument("--task")
        listing.add_argument("--status", choices=[s.value for s in RunStatus])
        listing.add_argument("--limit", type=int, default=20)
        show = sub.add_parser("show", help="one run in full")
        show.add_argument("run_id")
        show.add_argument("--events", action="store_true", help="print the event log too")
        export = sub.add_parser("export", help="the run's trace as JSON lines, a markdown report or OTLP-JSON")
        export.add_argument("run_id")
        export.add_argument("--format", choices=list(FORMATS), default="markdown")
        export.add_argument("--output", "-o", help="write to this file instead of the standard output")

    def handle(self, *args, **opts) -> None:
        {"list": self._list, "show": self._show, "export": self._export}[opts["action"]](opts)

    def _export(self, opts) -> None:
        run = run_get(run_id=opts["run_id"])
        if run is None:
            raise CommandError(f"no run with id '{opts['run_id']}'")
        content, _, _ = run_export(run, opts["format"])
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
        runs = run_list(task_id=opts["task"], status=opts["status"], limit=opts["limit"])
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
