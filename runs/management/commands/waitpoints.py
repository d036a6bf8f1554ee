"""manage.py waitpoints list|approve|reject|complete: pending waits from the command line."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from stepwise.runs.management.base import audit, user_errors
from stepwise.runs.management.remote import is_remote, server_options, waitpoints_remote
from stepwise.runs.models import WaitpointStatus
from stepwise.runs.selectors import waitpoint_list
from stepwise.runs.triggers import payload_parse
from stepwise.runs.waits import waitpoint_approve, waitpoint_complete, waitpoint_reject


class Command(BaseCommand):
    help = "List pending waitpoints (oldest first), or approve, reject or complete a token waitpoint."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="pending waitpoints, oldest first")
        listing.add_argument("--all", action="store_true", help="include resolved ones")
        server_options(listing)
        for action in ("approve", "reject", "complete"):
            cmd = sub.add_parser(action)
            cmd.add_argument("waitpoint_id")
            cmd.add_argument("data", nargs="?", default=None, help="optional JSON object")
            server_options(cmd)

    def handle(self, *args, **opts) -> None:
        if is_remote(opts):
            with user_errors():
                data = payload_parse(opts["data"]) if opts.get("data") else None
            waitpoints_remote(self, opts, data)
            return
        if opts["action"] == "list":
            self._list(opts["all"])
            return
        with user_errors():
            data = payload_parse(opts["data"]) if opts["data"] else None
            if opts["action"] == "approve":
                wp = waitpoint_approve(waitpoint_id=opts["waitpoint_id"], data=data, by="cli")
            elif opts["action"] == "reject":
                wp = waitpoint_reject(waitpoint_id=opts["waitpoint_id"], data=data, by="cli")
            else:
                wp = waitpoint_complete(waitpoint_id=opts["waitpoint_id"], output=data, by="cli")
            audit(f"waitpoint.{opts['action']}", environment=wp.run.environment_id, target=wp.id,
                  data={"run_id": wp.run_id})
        self.stdout.write(f"{wp.id} {wp.status} output={json.dumps(wp.output)}; run {wp.run_id} resumes")

    def _list(self, include_resolved: bool) -> None:
        rows = waitpoint_list(status=None if include_resolved else WaitpointStatus.PENDING)
        self.stdout.write(f"{'WAITPOINT':<32} {'KIND':<9} {'STATUS':<9} {'RUN':<32} {'TIMEOUT':<20} DESCRIPTION")
        for wp in rows:
            timeout = wp.resume_at.strftime("%Y-%m-%d %H:%M:%S") if wp.resume_at else "-"
            what = wp.description or (f"event {wp.event_name}" if wp.event_name else wp.key)
            self.stdout.write(f"{wp.id:<32} {wp.kind:<9} {wp.status:<9} {wp.run_id:<32} {timeout:<20} {what}")
