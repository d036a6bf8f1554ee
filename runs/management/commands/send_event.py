"""manage.py send_event NAME 'JSON': resume the runs waiting for this event."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from runs.engine.errors import StepwiseError
from runs.services import payload_parse
from runs.waits import event_send


class Command(BaseCommand):
    help = "Send an event with a JSON payload; every pending wait whose filter it matches resumes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("payload", nargs="?", default="{}")
        parser.add_argument("--environment", default="dev")

    def handle(self, *args, **opts) -> None:
        try:
            event, matched = event_send(
                name=opts["name"], payload=payload_parse(opts["payload"]), environment=opts["environment"]
            )
        except StepwiseError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{event.id} sent; resumed {matched} waiting run(s)")
