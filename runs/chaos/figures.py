"""What every scenario shares: its figures with their bounds, and the questions it asks the database."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from random import Random
from typing import Any

from django.db.models import Max, Min

from stepwise.runs.chaos.cluster import ChaosCluster
from stepwise.runs.chaos.records import Execution, executions
from stepwise.runs.models import Attempt, Run, Step
from stepwise.runs.statuses import FINAL_STATUSES, RunStatus

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Figure:
    """One measured figure, with a ``bound`` it must not exceed or a ``target`` it should meet.

    A bound is for what must never happen (0 lost runs, at most 5 running at once): a broken
    bound fails the command. A target is for times, which a busy machine stretches: a missed
    target is shown, it does not fail the command.
    """

    metric: str
    value: float | None
    unit: str
    bound: float | None = None
    target: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool | None:
        """Tell whether a bounded figure holds; None for a figure without a bound."""
        if self.bound is None:
            return None
        return self.value is not None and self.value <= self.bound

    @property
    def met(self) -> bool | None:
        """Tell whether a figure meets its target; None for a figure without one."""
        if self.target is None:
            return None
        return self.value is not None and self.value <= self.target


@dataclass
class ChaosState:
    """What the scenarios share: the cluster, the profile's sizes, the records' session, the runs to delete."""

    cluster: ChaosCluster
    sizes: dict[str, Any]
    session: str
    timeout: float
    rng: Random
    note: Callable[[str], None] = print
    created: list[str] = field(default_factory=list)

    def payload(self, **fields: Any) -> dict[str, Any]:
        """Return a chaos task payload that notes its executions in this session."""
        return {"session": self.session, **fields}

    def triggered(self, run_ids: list[str]) -> list[str]:
        """Remember runs for the clean-up and return them."""
        self.created.extend(run_ids)
        return run_ids


def runs_settle(run_ids: list[str], *, timeout: float) -> Counter:
    """Wait until every run is final or ``timeout`` passed; return the count of runs per status."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = Counter(Run.objects.filter(id__in=run_ids).values_list("status", flat=True))
        if sum(n for status, n in statuses.items() if status in FINAL_STATUSES) >= len(run_ids):
            return statuses
        if time.monotonic() > deadline:
            return statuses
        time.sleep(POLL_SECONDS)


def not_final(statuses: Counter) -> int:
    """Count the runs of a status count that did not reach a final state."""
    return sum(n for status, n in statuses.items() if status not in FINAL_STATUSES)


def reexecuted_steps(session: str, run_ids: list[str]) -> int:
    """Count step bodies that ran again in a later attempt than the one whose result was recorded."""
    recorded = {
        (run_id, key): attempt
        for run_id, key, attempt in Step.objects.filter(run_id__in=run_ids).values_list("run_id", "key",
                                                                                         "attempt_number")
    }
    return sum(1 for row in executions_of(session, run_ids) if row.attempt > recorded.get((row.run_id, row.key), 1e9))


def executions_of(session: str, run_ids: list[str]) -> list[Execution]:
    """Return the step executions the records hold for these runs."""
    wanted = set(run_ids)
    return [row for row in executions(session) if row.run_id in wanted]


def wrong_outputs(run_ids: list[str], expected: Any) -> int:
    """Count completed runs whose output is not ``expected``."""
    outputs = Run.objects.filter(id__in=run_ids, status=RunStatus.COMPLETED).values_list("output", flat=True)
    return sum(1 for output in outputs if output != expected)


def seconds_after(at: datetime | None, start: datetime) -> float | None:
    """Return the seconds from ``start`` to ``at``, or None when there is no ``at``."""
    return None if at is None else (at - start).total_seconds()


def first_finished_after(run_ids: list[str], start: datetime) -> datetime | None:
    """Return when the first of these runs completed after ``start``."""
    return (Run.objects.filter(id__in=run_ids, status=RunStatus.COMPLETED, finished_at__gt=start)
            .aggregate(at=Min("finished_at"))["at"])


def last_finished(run_ids: list[str]) -> datetime | None:
    """Return when the last of these runs finished."""
    return Run.objects.filter(id__in=run_ids).aggregate(at=Max("finished_at"))["at"]


def last_started(run_ids: list[str]) -> datetime | None:
    """Return when the last of these runs started its first attempt (None if one never started)."""
    starts = dict(Attempt.objects.filter(run_id__in=run_ids, number=1).values_list("run_id", "started_at"))
    if len(starts) < len(set(run_ids)):
        return None
    return max(starts.values())


def other_outcomes(statuses: Counter, run_ids: list[str]) -> str:
    """Say which states the runs that did not complete ended in, with the first recorded error among them."""
    others = sorted((str(status), n) for status, n in statuses.items() if status != RunStatus.COMPLETED and n)
    if not others:
        return ""
    error = (Run.objects.filter(id__in=run_ids, error__isnull=False).exclude(status=RunStatus.COMPLETED)
             .order_by("finished_at").values_list("id", "error").first())
    said = ", ".join(f"{status} {n}" for status, n in others)
    return f"{said}; {error[0]}: {str(error[1])[:300]}" if error else said


def outcome_figures(what: str, statuses: Counter, run_ids: list[str], session: str) -> list[Figure]:
    """Return the figures every scenario with ordinary runs reports: completed, other, stranded, re-executed."""
    completed = statuses.get(RunStatus.COMPLETED, 0)
    detail = other_outcomes(statuses, run_ids)
    return [
        Figure(f"{what}: runs completed", completed, "runs"),
        Figure(f"{what}: runs stranded (not final at the end)", not_final(statuses), "runs", bound=0, detail=detail),
        Figure(f"{what}: runs ended in another final state", len(run_ids) - completed - not_final(statuses), "runs",
               bound=0, detail=detail),
        Figure(f"{what}: steps re-executed after they were recorded", reexecuted_steps(session, run_ids), "steps",
               bound=0),
    ]
