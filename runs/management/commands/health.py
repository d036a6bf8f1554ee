"""manage.py health [--worker | --scheduler]: a probe for Docker and Kubernetes; exits 1 when unhealthy."""
from __future__ import annotations

import json
import socket

from django.core.management.base import BaseCommand, CommandError

from stepwise.runs.health import (
    READY_REQUIRES,
    broker_check,
    database_check,
    scheduler_check,
    web_checks,
    worker_check,
)


class Command(BaseCommand):
    help = ("Check this deployment's health and exit non-zero when it is unhealthy. Without a flag: what the web "
            "needs (database, broker, channel layer; the scheduler is reported). --worker / --scheduler: a worker / "
            "scheduler process on this host is alive and reaches what it needs.")

    def add_arguments(self, parser) -> None:
        role = parser.add_mutually_exclusive_group()
        role.add_argument("--worker", action="store_true", help="a worker on this host announced itself within a lease")
        role.add_argument("--scheduler", action="store_true",
                          help="a scheduler on this host finished a pass within STEPWISE_SCHEDULER_STALE_SECONDS")
        parser.add_argument("--any-host", action="store_true",
                            help="with --worker or --scheduler: any host's process will do, not only this host's")
        parser.add_argument("--json", action="store_true", help="print the checks as JSON")

    def handle(self, *args, **opts) -> None:
        host = None if opts["any_host"] else socket.gethostname()
        if opts["worker"]:
            checks, required = [database_check(), broker_check(), worker_check(host=host)], None
        elif opts["scheduler"]:
            checks, required = [database_check(), scheduler_check(host=host)], None
        else:
            checks, required = web_checks(), READY_REQUIRES
        failed = [c for c in checks if not c.ok and (required is None or c.name in required)]
        if opts["json"]:
            self.stdout.write(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}))
        else:
            for check in checks:
                mark = "ok" if check.ok else ("FAIL" if check in failed else "warn")
                self.stdout.write(f"{check.name:<14} {mark:<5} {check.detail}".rstrip())
        if failed:
            raise CommandError("unhealthy: " + ", ".join(f"{c.name} ({c.detail})" for c in failed))
