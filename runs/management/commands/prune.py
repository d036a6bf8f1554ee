"""manage.py prune: delete finished runs and run details past their environment's retention."""
from __future__ import annotations

from dataclasses import asdict

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from stepwise.runs.management.base import audit
from stepwise.runs.retention import prune, retention_for
from stepwise.tasks.models import Environment


class Command(BaseCommand):
    help = ("Delete finished runs (with their steps, attempts, events and spans) and the spans and log events "
            "of older runs, as STEPWISE_RETENTION says for each environment; --dry-run only counts.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--env", help="one environment (default: every one)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument("--batch", type=int, default=500, help="runs per transaction (default 500)")

    def handle(self, *args, **opts) -> None:
        if opts["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        environment = opts["env"]
        if environment and not Environment.objects.filter(slug=environment).exists():
            raise CommandError(f"no environment '{environment}'")
        names = [environment] if environment else list(Environment.objects.values_list("slug", flat=True))
        try:
            for name in names:
                retention = retention_for(name)
                keep = "forever" if retention.runs_days is None else f"{retention.runs_days:g} days"
                details = "forever" if retention.details_days is None else f"{retention.details_days:g} days"
                self.stdout.write(f"{name}: finished runs kept {keep}, their spans and logs {details}")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None

        def progress(what: str, done: int) -> None:
            self.stdout.write(f"  … {done} {what} deleted")

        reports = prune(now=timezone.now(), environment=environment, batch=opts["batch"], dry_run=opts["dry_run"],
                        progress=None if opts["dry_run"] else progress)
        verb = "would delete" if opts["dry_run"] else "deleted"
        for name, report in reports.items():
            self.stdout.write(f"{name}: {verb} {report}")
            if not opts["dry_run"]:  # deleting by hand is an operator's act, like a bulk cancel
                audit("runs.prune", environment=name, target=name, data={**asdict(report), "batch": opts["batch"]})
