"""manage.py scheduler: the sweeper loop (timers, lost leases, lost messages); safe to run twice."""
from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from stepwise.runs.sweeper import sweeper_loop


class Command(BaseCommand):
    help = "Fire due timers, recover runs of dead workers and re-send lost hints, every --interval seconds."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--interval", type=float, default=settings.STEPWISE_SWEEP_INTERVAL_SECONDS,
            help="longest sleep between passes; timers set meanwhile (a retry, a delay, a wait) wake it sooner",
        )

    def handle(self, *args, **opts) -> None:
        self.stdout.write(f"scheduler: sweeping every {opts['interval']:g}s")
        stop = threading.Event()
        # SIGTERM (docker stop, a deploy) ends the pass at hand, then the loop: no pass is cut half-way.
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        try:
            sweeper_loop(interval=opts["interval"], stop=stop)
        except KeyboardInterrupt:
            pass
