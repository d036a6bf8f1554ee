"""manage.py send_event NAME 'JSON': resume the runs waiting for this event."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from stepwise.runs.management.base import user_errors
from stepwise.runs.triggers import payload_parse
from stepwise.runs.waits import event_send


class Command(BaseCommand):
    help = "Send an event with a JSON payload; every pending wait whose filter it matches resumes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("payload", nargs="?", default="{}")
        parser.add_argument("--environment", default="dev")

    def handle(self, *args, **opts) -> None:
        with user_errors():
            event, matched = event_send(
                name=opts["name"], payload=payload_parse(opts["payload"]), environment=opts["environment"]
            )
        self.stdout.write(f"{event.id} sent; resumed {matched} waiting run(s)")
