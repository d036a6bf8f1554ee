"""manage.py bench: throughput, latency and checkpoint cost on the configured PostgreSQL and Redis."""
from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

import runs.benchmarks.tasks  # noqa: F401  (registers the bench tasks in this process)
from runs.benchmarks import measure, observability
from runs.benchmarks.processes import BenchProcesses, WorkersNotReady
from runs.benchmarks.report import Row, figures_table, parameters_table
from runs.benchmarks.tasks import OBSERVABILITY_TASK_ID
from runs.dispatch import dispatch_run
from runs.models import Run


class Command(BaseCommand):
    help = (
        "Measure no-op run throughput, trigger-to-start latency, per-step checkpoint overhead and raw "
        "Celery throughput, with worker and scheduler subprocesses on a private queue. Needs "
        "DATABASE_URL (PostgreSQL) and REDIS_URL: the embedded default (SQLite, in-memory broker) "
        "cannot be shared with worker processes, and in-process figures would not say anything about a "
        "deployment. The bench's runs are deleted afterwards unless --keep-runs is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=200, help="no-op runs (and raw Celery tasks) in the burst")
        parser.add_argument("--latency-runs", type=int, default=50, help="runs triggered one at a time on idle workers")
        parser.add_argument("--steps", type=int, default=50, help="steps of the checkpoint-overhead task")
        parser.add_argument("--step-runs", type=int, default=3, help="runs of the steps task (median is reported)")
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
        parser.add_argument("--concurrency", type=int, default=4, help="threads (or children) per worker")
        parser.add_argument(
            "--pool", choices=["prefork", "threads"], default="prefork",
            help="Celery pool; threads stalls seconds between tasks (celery/celery#6941) unless --wake-interval",
        )
        parser.add_argument(
            "--wake-interval", type=float, default=0,
            help="seconds between wake-ups of each worker's event loop (a workaround for the threads pool)",
        )
        parser.add_argument("--timeout", type=float, default=120, help="seconds a phase may take before it fails")
        parser.add_argument("--worker-loglevel", default="WARNING", help="log level of the worker processes")
        parser.add_argument("--keep-runs", action="store_true", help="leave the bench's runs in the database")

    def handle(self, *args: Any, **opts: Any) -> None:
        self._check_services()
        for name in ("runs", "latency_runs", "steps", "step_runs", "workers", "concurrency"):
            if opts[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        from console.celery import app

        load_before = os.getloadavg()
        queue = f"bench-{os.getpid()}"
        log_dir = Path(tempfile.mkdtemp(prefix=f"stepwise-{queue}-"))
        procs = BenchProcesses(
            queue=queue, log_dir=log_dir, loglevel=opts["worker_loglevel"], wake_interval=opts["wake_interval"]
        )
        previous_queue = app.conf.task_default_queue
        previous_sigterm = _sigterm_raises()
        run_ids: list[str] = []
        try:
            # The CELERY_-prefixed key shadows ``task_default_queue`` once the Django settings are loaded.
            app.conf["CELERY_TASK_DEFAULT_QUEUE"] = queue
            for _ in range(opts["workers"]):
                procs.start_worker(pool=opts["pool"], concurrency=opts["concurrency"])
            procs.start_scheduler(interval=1.0)
            ready = procs.wait_ready(timeout=opts["timeout"])
            rows = self._measure(opts, run_ids)
        except (measure.BenchFailed, WorkersNotReady) as exc:
            raise CommandError(f"{exc} (worker logs: {log_dir})") from None
        except KeyboardInterrupt:
            raise CommandError("interrupted: the bench's worker processes were stopped", returncode=130)
        finally:
            procs.stop()
            app.conf["CELERY_TASK_DEFAULT_QUEUE"] = previous_queue
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            if not opts["keep_runs"]:
                measure.runs_delete(run_ids)
        self.stdout.write(parameters_table(self._parameters(opts, queue, ready, load_before)))
        self.stdout.write("")
        self.stdout.write(figures_table(rows))

    def _check_services(self) -> None:
        problems = []
        if not settings.USES_POSTGRES:
            problems.append("DATABASE_URL must point at PostgreSQL")
        if not settings.REDIS_URL:
            problems.append("REDIS_URL must point at Redis")
        if problems:
            raise CommandError(
                "the benchmark runs worker processes, which cannot share the embedded SQLite/memory default: "
                + "; ".join(problems)
                + " (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepwise REDIS_URL=redis://127.0.0.1:6379/0)"
            )

    def _phase(self, number: int, text: str) -> None:
        """Say on stderr what is being measured, so a long bench shows where it is."""
        self.stderr.write(f"[{number}/8] {text}...")

    def _measure(self, opts: dict[str, Any], run_ids: list[str]) -> list[Row]:
        timeout = opts["timeout"]
        slots = opts["workers"] * opts["concurrency"]
        n, steps = opts["runs"], opts["steps"]
        # Warm up: connections, imports, task versions and queues exist before anything is timed.
        self._phase(1, "warming up the workers")
        measure.runs_wait(measure.noop_runs_trigger(2 * slots, run_ids), timeout=timeout)
        measure.raw_celery_throughput(2 * slots, timeout=timeout)

        self._phase(2, f"raw Celery: {n} no-op tasks")
        raw = measure.raw_celery_throughput(n, timeout=timeout)
        self._phase(3, f"{n} no-op runs, triggered one by one")
        ours, burst = measure.runs_throughput(n, run_ids, timeout=timeout)
        self._phase(4, f"{n} no-op runs, batch-triggered")
        batch = measure.batch_throughput(n, run_ids, timeout=timeout)
        self._phase(5, f"trigger-to-start latency of {opts['latency_runs']} runs on idle workers")
        idle = measure.idle_latencies(opts["latency_runs"], run_ids, timeout=timeout)
        self._phase(6, f"checkpoint cost: {opts['step_runs']} x {steps}-step runs")
        cost = measure.step_cost(steps, opts["step_runs"], run_ids, timeout=timeout)
        self._phase(7, "tracing overhead: traced and untraced attempts in this process")
        tracing = observability.measure_tracing_overhead(steps=steps, rounds=3)
        self._phase(8, "event latency from a worker to a websocket client")
        latency = observability.measure_event_latency(steps=steps, dispatch=dispatch_run)
        Run.objects.filter(task_id=OBSERVABILITY_TASK_ID).delete()

        return [
            Row(f"no-op runs, triggered -> completed ({n})", ours.per_second, "runs/s"),
            Row(f"raw Celery no-op tasks, sent -> done ({n})", raw.per_second, "tasks/s"),
            Row("ours / raw", 100 * ours.per_second / raw.per_second, "%"),
            Row(f"no-op runs, batch_trigger() -> completed ({n})", batch.per_second, "runs/s"),
            Row("trigger() calls from one thread", ours.enqueue_per_second, "runs/s"),
            Row("apply_async() calls from one thread", raw.enqueue_per_second, "tasks/s"),
            Row(f"trigger-to-start latency p50, idle ({opts['latency_runs']} runs)", idle.percentile(50), "ms"),
            Row(f"trigger-to-start latency p99, idle ({opts['latency_runs']} runs)", idle.percentile(99), "ms"),
            Row(f"trigger-to-start latency p50, burst of {n}", burst.percentile(50), "ms"),
            Row(f"trigger-to-start latency p99, burst of {n}", burst.percentile(99), "ms"),
            Row(f"{cost.steps}-step task, checkpointed in a worker", cost.durable_ms_per_step, "ms/step"),
            Row(f"{cost.steps}-step function, undecorated", cost.plain_ms_per_step, "ms/step"),
            Row("checkpoint overhead", cost.overhead_ms_per_step, "ms/step"),
            Row(f"{tracing['steps']}-step attempt in-process, untraced", tracing["untraced_ms_per_step"], "ms/step"),
            Row(f"{tracing['steps']}-step attempt in-process, traced", tracing["traced_ms_per_step"], "ms/step"),
            Row("traced / untraced", tracing["ratio"], "x"),
            Row(f"event latency, worker commit -> websocket p50 ({latency['events']})", latency["p50_ms"], "ms"),
            Row(f"event latency, worker commit -> websocket p99 ({latency['events']})", latency["p99_ms"], "ms"),
        ]

    def _parameters(
        self, opts: dict[str, Any], queue: str, ready: float, load_before: tuple[float, float, float]
    ) -> list[tuple[str, str]]:
        db = connection.settings_dict
        broker = urlparse(settings.REDIS_URL)
        load = " / ".join(f"{x:.2f}" for x in load_before)
        return [
            ("date", timezone.now().strftime("%Y-%m-%d %H:%M UTC")),
            ("database", f"PostgreSQL {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"),
            ("broker", f"Redis {broker.hostname}:{broker.port or 6379}{broker.path}"),
            ("workers", f"{opts['workers']} x celery worker --pool={opts['pool']} "
                        f"--concurrency={opts['concurrency']}"
                        + (f", event loop woken every {opts['wake_interval']:g}s" if opts["wake_interval"] else "")
                        + f" (queue {queue}, ready in {ready:.1f}s)"),
            ("runs", f"{opts['runs']} burst, {opts['latency_runs']} one at a time, "
                     f"{opts['step_runs']} x {opts['steps']}-step"),
            ("host", f"{os.cpu_count()} CPUs, load average {load} (1/5/15 min) before the bench"),
        ]


def _sigterm_raises() -> Any:
    """Turn SIGTERM into SystemExit so the workers are stopped; return the previous handler."""
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        return None
