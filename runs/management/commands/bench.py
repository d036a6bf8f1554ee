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

import stepwise.runs.benchmarks.tasks  # noqa: F401  (registers the bench tasks in this process)
from stepwise.runs.benchmarks import measure, seeding
from stepwise.runs.benchmarks.phases import PHASE_NAMES, BenchState, Phase, phases_select
from stepwise.runs.benchmarks.processes import (
    BenchProcesses,
    WorkersNotReady,
    celery_conf_overridden,
    database_url,
    shared_services_missing,
    sigterm_raises,
)
from stepwise.runs.benchmarks.report import Row, figures_table, parameters_table
from stepwise.runs.benchmarks.selection import names_parse

# Size flags: (option, default, help). Each must be at least 1; --skip leaves a phase out.
SIZES: tuple[tuple[str, int, str], ...] = (
    ("runs", 1000, "burst and batch phases: no-op runs (and raw Celery tasks)"),
    # One pair of bursts read 37-79 % ours / raw from one bench to the next on the 2-CPU VM.
    ("burst-rounds", 3, "burst phase: pairs of bursts, raw Celery and no-op runs in turn (medians are reported)"),
    ("latency-runs", 50, "idle phase: runs triggered one at a time on idle workers"),
    # 3 runs of 50 steps put the overhead between 1.2x and 2x the floor from one bench to the next on
    # the 2-CPU VM; 5 runs of 200 (and 2,000 floor samples) read 1.26-1.37x in six benches of seven.
    ("steps", 200, "checkpoint, tracing and events phases: steps of the task"),
    ("step-runs", 5, "checkpoint phase: runs of the steps task (median is reported)"),
    ("tracing-rounds", 25, "tracing phase: traced and untraced attempts, in turn (medians are reported)"),
    ("floor-samples", 2000, "floor phase: INSERT + COMMIT round trips"),
    ("ten-step-runs", 100, "ten-step phase: 10-step runs in the burst"),
    ("wait-runs", 100, "waits phase: runs waiting for the same deadline"),
    ("wait-burst", 1000, "waits phase: no-op runs queued as the deadline falls due"),
    ("waiting-runs", 100_000, "waiting-table phase: WAITING runs seeded with COPY"),
    ("dispatch-runs", 500, "waiting-table phase: no-op runs timed with and without them"),
    ("waiting-rounds", 3, "waiting-table phase: rounds of without and beside them, in turn (medians are reported)"),
    ("list-runs", 1_000_000, "list phase: runs seeded with COPY"),
    ("list-repeats", 20, "list phase: timed calls per filter"),
    ("prune-runs", 1_000_000, "prune phase: runs seeded over 60 days, half past a 30-day retention"),
    ("embedded-triggers", 5, "embedded phase: manage.py trigger calls"),
    ("workers", 2, "Celery worker processes"),
    ("concurrency", 4, "threads (or children) per worker"),
)


class Command(BaseCommand):
    help = (
        "Measure PostgreSQL's commit floor, no-op and 10-step run throughput against raw Celery, trigger-to-start "
        "latency, per-step checkpoint overhead, wait lateness, dispatch beside many WAITING runs, the runs-list "
        "query over many runs and the embedded mode's CLI trigger latency, with worker and scheduler "
        "subprocesses on a private queue. Needs DATABASE_URL (PostgreSQL) and REDIS_URL: the embedded default "
        "(SQLite, in-memory broker) cannot be shared with worker processes. The bench's runs are deleted "
        f"afterwards unless --keep-runs is given. Phases: {', '.join(PHASE_NAMES)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", type=names_parse, default=[], help="comma-separated phases to run (default: all)")
        parser.add_argument("--skip", type=names_parse, default=[], help="comma-separated phases to leave out")
        for option, default, text in SIZES:
            parser.add_argument(f"--{option}", type=int, default=default, help=f"{text} (default {default:,})")
        parser.add_argument(
            "--wait-lead", type=float, default=10.0,
            help="waits phase: seconds from triggering the waiting runs to their shared deadline (default 10)",
        )
        parser.add_argument(
            "--pool", choices=["prefork", "threads"], default="prefork",
            help="Celery pool; threads stalls seconds between tasks (celery/celery#6941) unless --wake-interval",
        )
        parser.add_argument(
            "--wake-interval", type=float, default=0,
            help="seconds between wake-ups of each worker's event loop (a workaround for the threads pool)",
        )
        parser.add_argument(
            "--durability", choices=["strict", "relaxed"], default=settings.STEPWISE_DURABILITY,
            help="STEPWISE_DURABILITY of the worker processes (default: this process's, "
                 f"{settings.STEPWISE_DURABILITY})",
        )
        parser.add_argument("--timeout", type=float, default=120, help="seconds a phase may wait for its runs")
        parser.add_argument("--worker-loglevel", default="WARNING", help="log level of the worker processes")
        parser.add_argument("--keep-runs", action="store_true", help="leave the bench's runs in the database")

    def handle(self, *args: Any, **opts: Any) -> None:
        self._check_services()
        # Measure what production runs: with DEBUG=1 (which a DATABASE_URL without keys needs)
        # Django's debug cursor would record and format every statement this process sends.
        debug, settings.DEBUG = settings.DEBUG, False
        try:
            self._bench(opts)
        finally:
            settings.DEBUG = debug

    def _bench(self, opts: dict[str, Any]) -> None:
        for option, _, _ in SIZES:
            if opts[option.replace("-", "_")] < 1:
                raise CommandError(f"--{option} must be at least 1 (use --skip to leave a phase out)")
        try:
            phases = phases_select(opts["only"], opts["skip"])
        except ValueError as exc:
            raise CommandError(str(exc))
        if not phases:
            raise CommandError("no phase left to run")
        load_before = os.getloadavg()
        unfinished = measure.runs_unfinished()
        if unfinished:
            self.stderr.write(f"    {_runs(unfinished)} in this database not finished: the bench's workers take "
                              "those that come due, and its figures include that work")
        queue = f"bench-{os.getpid()}"
        state = BenchState(
            opts=opts, conninfo=database_url(), log_dir=Path(tempfile.mkdtemp(prefix=f"stepwise-{queue}-")),
            note=lambda text: self.stderr.write(f"    {text}"),
        )
        self._done, self._total = 0, len(phases)
        self._missing: list[tuple[str, str, bool]] = []  # (phase, reason, failed rather than n/a)
        previous_sigterm = sigterm_raises()
        try:
            ready, rows = self._phases_with_workers([p for p in phases if not p.after_workers], state, queue)
            for phase in (p for p in phases if p.after_workers):
                rows += self._phase_run(phase, state)
        except KeyboardInterrupt:
            raise CommandError("interrupted: the bench's worker processes were stopped", returncode=130)
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            if not opts["keep_runs"] and state.created:
                measure.runs_delete(state.created)
                # A server without autovacuum (CI's) would keep the deleted runs' rows and index entries
                # until something vacuums them, and the next bench's statements would step over them.
                seeding.runs_vacuum(conninfo=state.conninfo)
        self.stdout.write(parameters_table(self._parameters(opts, phases, queue, ready, load_before, unfinished)))
        self.stdout.write("")
        self.stdout.write(figures_table(rows))
        self._report_missing()

    def _check_services(self) -> None:
        problem = shared_services_missing("the benchmark")
        if problem:
            raise CommandError(problem)

    def _progress(self, text: str) -> None:
        """Say on stderr what is being measured, so a long bench shows where it is."""
        self._done += 1
        self.stderr.write(f"[{self._done}/{self._total}] {text}...")

    def _phases_with_workers(
        self, phases: list[Phase], state: BenchState, queue: str
    ) -> tuple[float | None, list[Row]]:
        """Start the workers if a phase needs them, run the phases, and always stop the workers."""
        if not any(phase.needs_workers for phase in phases):
            return None, [row for phase in phases for row in self._phase_run(phase, state)]
        self._total += 1  # the warm-up
        opts = state.opts
        procs = BenchProcesses(
            queue=queue, log_dir=state.log_dir, loglevel=opts["worker_loglevel"], wake_interval=opts["wake_interval"],
            durability=opts["durability"],
        )
        try:
            with celery_conf_overridden(CELERY_TASK_DEFAULT_QUEUE=queue):
                ready, no_workers = self._workers_start(procs, state)
                rows: list[Row] = []
                for phase in phases:
                    rows += self._phase_run(phase, state, no_workers=no_workers if phase.needs_workers else "")
                if not no_workers:  # workers that never became usable are said by every phase already
                    self._exits_report(procs, state)
                return ready, rows
        finally:
            procs.stop()

    def _workers_start(self, procs: BenchProcesses, state: BenchState) -> tuple[float | None, str]:
        """Start and warm up the workers; return the seconds they took to answer, or why they did not."""
        opts = state.opts
        for _ in range(opts["workers"]):
            procs.start_worker(pool=opts["pool"], concurrency=opts["concurrency"])
        procs.start_scheduler(interval=1.0)
        slots = opts["workers"] * opts["concurrency"]
        self._progress("warming up the workers")
        try:
            ready = procs.wait_ready(timeout=opts["timeout"])
            # Connections, imports, task versions and queues exist before anything is timed.
            measure.runs_wait(measure.noop_runs_trigger(2 * slots, state.created), timeout=opts["timeout"])
            measure.raw_celery_throughput(2 * slots, timeout=opts["timeout"])
        except WorkersNotReady as exc:
            reason = str(exc)
        except measure.BenchFailed as exc:
            reason = f"{exc} (worker logs: {state.log_dir})"
        else:
            return ready, ""
        self.stderr.write(f"    the workers are not usable: {reason}")
        return None, reason

    def _exits_report(self, procs: BenchProcesses, state: BenchState) -> None:
        """Fail the bench if a worker or the scheduler ended by itself: what came after was measured without it."""
        exited = procs.exited()
        if exited:
            reason = f"{', '.join(exited)} exited during the bench (logs: {state.log_dir})"
            self._missing.append(("processes", reason, True))
            self.stderr.write(f"    {reason}")

    def _phase_run(self, phase: Phase, state: BenchState, *, no_workers: str = "") -> list[Row]:
        """Run one phase; when it fails, say which and why, and leave its figures n/a."""
        self._progress(f"{phase.name}: {phase.title(state.opts)}")
        if no_workers:
            return self._phase_missing(phase, f"no workers: {no_workers}", failed=True)
        try:
            return phase.measure(state)
        except measure.BenchUnavailable as exc:
            return self._phase_missing(phase, f"not available on this tree: {exc}", failed=False)
        except Exception as exc:  # one phase's failure must not hide the figures of the others
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, measure.BenchFailed) else str(exc)
            return self._phase_missing(phase, f"{reason} (logs: {state.log_dir})", failed=True)

    def _phase_missing(self, phase: Phase, reason: str, *, failed: bool) -> list[Row]:
        """Note why a phase has no figures, on stderr now and under the table later; return its n/a row."""
        self._missing.append((phase.name, reason, failed))
        self.stderr.write(f"    {phase.name} {'failed' if failed else 'skipped'}: {reason}")
        return [Row(f"{phase.name}: not measured (see below)", None, "")]

    def _report_missing(self) -> None:
        """List the phases without figures under the table; exit non-zero if one of them failed."""
        if not self._missing:
            return
        self.stdout.write("")
        for name, reason, failed in self._missing:
            self.stdout.write(f"{name}: {'FAILED' if failed else 'n/a'}: {reason}")
        failed_names = [name for name, _, failed in self._missing if failed]
        if failed_names:
            raise CommandError(f"phase(s) failed: {', '.join(failed_names)}; the other figures are above")

    def _parameters(
        self, opts: dict[str, Any], phases: list[Phase], queue: str, ready: float | None,
        load_before: tuple[float, float, float], unfinished: int,
    ) -> list[tuple[str, str]]:
        db = connection.settings_dict
        broker = urlparse(settings.REDIS_URL)
        load = " / ".join(f"{x:.2f}" for x in load_before)
        workers = (
            f"{opts['workers']} x celery worker --pool={opts['pool']} --concurrency={opts['concurrency']}"
            + (f", event loop woken every {opts['wake_interval']:g}s" if opts["wake_interval"] else "")
            + (f" (queue {queue}, ready in {ready:.1f}s)" if ready is not None else " (not started or not ready)")
        )
        return [
            ("date", timezone.now().strftime("%Y-%m-%d %H:%M UTC")),
            ("database", f"PostgreSQL {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"),
            ("broker", f"Redis {broker.hostname}:{broker.port or 6379}{broker.path}"),
            ("workers", workers),
            ("durability", f"STEPWISE_DURABILITY={opts['durability']} in the workers; DEBUG off in every process"),
            ("phases", ", ".join(phase.name for phase in phases)),
            ("sizes", ", ".join(f"{option} {opts[option.replace('-', '_')]:,}" for option, _, _ in SIZES[:-2])
             + f", wait-lead {opts['wait_lead']:g}s"),
            ("host", f"{os.cpu_count()} CPUs, load average {load} (1/5/15 min) before the bench"),
            ("other work", (
                f"{_runs(unfinished)} in the database not finished before the bench, which its workers take as "
                "they come due" if unfinished else "none: every run in the database had finished before the bench"
            )),
        ]


def _runs(count: int) -> str:
    return f"{count:,} run" + ("" if count == 1 else "s")
