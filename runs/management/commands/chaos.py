"""manage.py chaos: fault scenarios against real workers and a scheduler, with figures and their bounds."""
from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

import stepwise.runs.chaos.tasks  # noqa: F401  (registers the chaos tasks in this process)
from stepwise.runs.benchmarks.measure import runs_delete
from stepwise.runs.benchmarks.processes import WorkersNotReady, shared_services_missing, sigterm_raises
from stepwise.runs.benchmarks.report import figure, parameters_table, text_table
from stepwise.runs.benchmarks.selection import named_select, names_parse
from stepwise.runs.chaos.cluster import ChaosCluster, ClusterShape
from stepwise.runs.chaos.figures import ChaosState, Figure
from stepwise.runs.chaos.records import executions_forget
from stepwise.runs.chaos.redis_server import RedisServerMissing
from stepwise.runs.chaos.scenarios import PROFILES, SCENARIO_NAMES, SCENARIOS, SETUPS, Scenario


class Command(BaseCommand):
    help = (
        "Break things on purpose and measure how runs come through: workers SIGKILLed and SIGSTOPped, PostgreSQL "
        "and the broker taken away, a crash-looping step, a burst of deadlines, random store faults and a limited "
        "queue, with worker and scheduler subprocesses on a private queue and broker. Prints a table of figures "
        "(those with a bound must hold; the command exits non-zero otherwise). Needs DATABASE_URL (PostgreSQL) and "
        f"REDIS_URL. Scenarios: {', '.join(SCENARIO_NAMES)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="the short profile (about a minute), as CI runs it")
        parser.add_argument("--only", type=names_parse, default=[], help="comma-separated scenarios to run")
        parser.add_argument("--skip", type=names_parse, default=[], help="comma-separated scenarios to leave out")
        parser.add_argument("--json", action="store_true", help="print the parameters and figures as JSON")
        parser.add_argument("--seed", type=int, default=None, help="seed of the random choices (which worker dies)")
        parser.add_argument("--worker-loglevel", default="WARNING", help="log level of the worker processes")
        parser.add_argument("--keep-runs", action="store_true", help="leave the scenarios' runs in the database")

    def handle(self, *args: Any, **opts: Any) -> None:
        problem = shared_services_missing("the chaos command")
        if problem:
            raise CommandError(problem)
        try:
            scenarios = named_select(SCENARIOS, opts["only"], opts["skip"], kind="scenario")
        except ValueError as exc:
            raise CommandError(str(exc))
        if not scenarios:
            raise CommandError("no scenario left to run")
        profile = "quick" if opts["quick"] else "full"
        sizes = PROFILES[profile]
        seed = opts["seed"] if opts["seed"] is not None else random.randrange(1 << 30)
        queue = f"chaos-{os.getpid()}"
        log_dir = Path(tempfile.mkdtemp(prefix=f"stepwise-{queue}-"))
        shape = ClusterShape(workers=sizes["workers"], concurrency=sizes["concurrency"],
                             lease_seconds=sizes["lease_seconds"], max_crashes=sizes["max_crashes"],
                             loglevel=opts["worker_loglevel"])
        cluster = ChaosCluster(queue=queue, log_dir=log_dir, shape=shape)
        state = ChaosState(cluster=cluster, sizes=sizes, session=uuid.uuid4().hex, timeout=sizes["timeout"],
                           rng=random.Random(seed), note=lambda text: self.stderr.write(f"    {text}"))
        results: list[tuple[Scenario, list[Figure], str]] = []
        started = timezone.now()
        previous_sigterm = sigterm_raises()
        try:
            with cluster.running(timeout=sizes["timeout"]):
                for index, scenario in enumerate(sorted(scenarios, key=lambda s: SETUPS.index(s.setup)), 1):
                    self.stderr.write(f"[{index}/{len(scenarios)}] {scenario.number}. {scenario.name}: "
                                      f"{scenario.title(sizes)}...")
                    cluster.setup(via_proxy=scenario.setup != "direct",
                                  fault_rate=sizes["fault_rate"] if scenario.setup == "faults" else 0.0,
                                  timeout=sizes["timeout"])
                    results.append(self._scenario_run(scenario, state, log_dir))
            results.sort(key=lambda result: result[0].number)
        except KeyboardInterrupt:
            raise CommandError("interrupted: the chaos processes were stopped", returncode=130)
        except (WorkersNotReady, RedisServerMissing) as exc:
            raise CommandError(f"the chaos processes did not start: {exc}")
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            if not opts["keep_runs"]:
                runs_delete(state.created)
            executions_forget(state.session)
        parameters = [
            ("date", started.strftime("%Y-%m-%d %H:%M UTC")),
            ("profile", f"{profile} (seed {seed})"),
            ("workers", f"{shape.workers} x celery worker --pool=prefork --concurrency={shape.concurrency}, "
                        f"lease {shape.lease_seconds:g}s, crash cap {shape.max_crashes}, on queue {queue}"),
            ("host", f"{os.cpu_count()} CPUs, load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"),
            ("logs", str(log_dir)),
        ]
        self._report(parameters, results, as_json=opts["json"])

    def _scenario_run(self, scenario: Scenario, state: ChaosState, log_dir: Path) -> tuple[Scenario, list[Figure], str]:
        """Run one scenario; when it fails, say why and go on with the next one."""
        started = time.monotonic()
        try:
            figures = scenario.run(state)
        except Exception as exc:  # one scenario's failure must not hide the figures of the others
            reason = f"{type(exc).__name__}: {exc} (logs: {log_dir})"
            self.stderr.write(f"    {scenario.name} failed: {reason}")
            return scenario, [], reason
        self.stderr.write(f"    done in {time.monotonic() - started:.1f}s")
        return scenario, figures, ""

    def _report(self, parameters: list[tuple[str, str]], results: list[tuple[Scenario, list[Figure], str]], *,
                as_json: bool) -> None:
        broken = [f"{s.number}. {f.metric} = {figure(f.value)} (bound {figure(f.bound)})"
                  + (f" [{f.detail}]" if f.detail else "")
                  for s, figures, _ in results for f in figures if f.ok is False]
        failed = [f"{s.number}. {s.name}: {reason}" for s, _, reason in results if reason]
        if as_json:
            self.stdout.write(json.dumps({
                "parameters": dict(parameters),
                "scenarios": [
                    {"number": s.number, "name": s.name, "error": reason or None,
                     "figures": [{"metric": f.metric, "value": f.value, "unit": f.unit, "bound": f.bound, "ok": f.ok,
                                  "target": f.target, "met": f.met, "detail": f.detail or None} for f in figures]}
                    for s, figures, reason in results
                ],
                "ok": not broken and not failed,
            }, indent=2))
        else:
            self.stdout.write(parameters_table(parameters))
            self.stdout.write("")
            rows = [
                (str(s.number), f.metric, figure(f.value), f.unit, *_limit_cells(f))
                for s, figures, reason in results
                for f in figures or [Figure(f"{s.name}: not measured (see below)", None, "")]
            ]
            self.stdout.write(text_table(("#", "metric", "value", "unit", "must / should", "check"), rows,
                                         right=(2,)))
            for line in broken:
                self.stdout.write(f"BROKEN {line}")
            for line in failed:
                self.stdout.write(f"FAILED {line}")
        if broken or failed:
            raise CommandError("; ".join([*(f"bound broken: {b}" for b in broken), *(f"failed: {f}" for f in failed)]))


def _limit_cells(f: Figure) -> tuple[str, str]:
    """Return the limit column (a bound it must hold, a target it should meet) and the check column."""
    if f.bound is not None:
        return f"must <= {figure(f.bound)}", "ok" if f.ok else "BROKEN"
    if f.target is not None:
        return f"should <= {figure(f.target)}", "met" if f.met else "missed"
    return "", ""
