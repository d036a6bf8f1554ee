"""manage.py up: the console, a worker and the scheduler in one process (the embedded default)."""
from __future__ import annotations

import errno
import os
import socket
import threading

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from kombu import Connection

from stepwise.runs.celery_app import celery_app
from stepwise.runs.sweeper import local_hints_loop, sweeper_loop
from stepwise.tasks.registry import task_all
from stepwise.tasks.services import task_version_ensure


class Command(BaseCommand):
    help = "Migrate, then serve the console with an in-process worker and scheduler."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=4, help="worker threads")
        parser.add_argument("--no-worker", action="store_true", help="serve the console only")

    def handle(self, *args, **opts) -> None:
        try:
            self._up(opts)
        except KeyboardInterrupt:  # Ctrl-C before the worker took over the signal: no traceback
            self.stderr.write("stopped")
            raise SystemExit(130) from None

    def _up(self, opts: dict) -> None:
        app = celery_app()  # before anything starts: a project without one is told how to make it
        # Bound before anything starts, so a taken port stops the command here, saying so, instead
        # of a worker running behind a console that never served.
        listener = _listen(opts["host"], opts["port"])
        call_command("migrate", interactive=False, verbosity=0)
        if getattr(settings, "STATIC_ROOT", None):  # a project without one serves its static files its own way
            call_command("collectstatic", interactive=False, verbosity=0)
        for definition in task_all():
            task_version_ensure(definition)
        self._ensure_admin()
        stop = threading.Event()
        threading.Thread(
            target=sweeper_loop,
            kwargs={"interval": settings.STEPWISE_SWEEP_INTERVAL_SECONDS, "stop": stop},
            name="scheduler",
            daemon=True,
        ).start()
        if not settings.REDIS_URL:
            threading.Thread(target=local_hints_loop, kwargs={"stop": stop}, name="local-hints", daemon=True).start()
        server = threading.Thread(target=self._serve, args=(opts["host"], opts["port"], listener), name="console",
                                  daemon=True)
        server.start()
        url = f"http://{opts['host']}:{opts['port']}{reverse('console:runs')}"
        tasks = ", ".join(d.id for d in task_all())
        self.stdout.write(self.style.SUCCESS(f"Stepwise console on {url}  (tasks: {tasks})"))
        if opts["no_worker"]:
            server.join()
            return
        # One line instead of Celery's banner, whose queue list grows with every task version.
        broker = Connection(app.conf.broker_url).as_uri()  # the password masked; the URL's transport named
        self.stdout.write(f"Worker: {opts['concurrency']} threads on {broker}, app {app.main}")
        # The worker owns the main thread: it installs signal handlers, which only work there.
        app.Worker(pool="threads", concurrency=opts["concurrency"], loglevel="INFO", without_mingle=True,
                   without_gossip=True, without_heartbeat=True, quiet=True).start()
        stop.set()

    def _serve(self, host: str, port: int, listener: socket.socket) -> None:
        import uvicorn

        # The project's own ASGI application (Channels reads the same setting): its URLs and websocket routes.
        module, _, name = settings.ASGI_APPLICATION.rpartition(".")
        config = uvicorn.Config(f"{module}:{name}", host=host, port=port, log_level="warning")
        uvicorn.Server(config).run(sockets=[listener])

    def _ensure_admin(self) -> None:
        if not settings.DEBUG:
            return
        User = get_user_model()
        username = os.environ.get("STEPWISE_DEV_USER", "admin")
        if not User.objects.filter(username=username).exists():
            password = os.environ.get("STEPWISE_DEV_PASSWORD", "stepwise")
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"created user '{username}' with password '{password}' (development only)")


def _listen(host: str, port: int) -> socket.socket:
    """Return a socket bound to ``host``:``port`` for the console; a CommandError says why it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CommandError(f"cannot serve the console on {host}:{port}: unknown host ({exc.strerror})") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        hint = " (another console? choose one with --port or PORT)" if exc.errno == errno.EADDRINUSE else ""
        raise CommandError(f"cannot serve the console on {host}:{port}: {exc.strerror}{hint}") from None
    return listener
