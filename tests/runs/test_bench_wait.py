"""The bench's wait for a burst: it reads the runs' outcome a few hundred at a time, and misses none."""
from __future__ import annotations

import pytest

from stepwise.runs.benchmarks.measure import POLL_CHUNK, BenchFailed, runs_wait
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from tests.engine_tasks import noop


@pytest.fixture
def burst(db) -> list[str]:
    """More runs than two looks take, all completed."""
    run_ids = [handle.id for handle in noop.batch_trigger([{"payload": {"n": n}} for n in range(2 * POLL_CHUNK + 50)])]
    Run.objects.filter(id__in=run_ids).update(status=RunStatus.COMPLETED)
    return run_ids


def test_wait_returns_once_every_run_of_the_burst_completed(burst):
    runs_wait(burst, timeout=5)


def test_wait_names_a_run_that_failed_far_behind_the_first_look(burst):
    Run.objects.filter(id=burst[-10]).update(status=RunStatus.FAILED)
    with pytest.raises(BenchFailed, match=f"run {burst[-10]} ended FAILED"):
        runs_wait(burst, timeout=5)


def test_wait_counts_the_runs_still_pending_when_it_gives_up(burst):
    Run.objects.filter(id__in=[burst[3], burst[-1]]).update(status=RunStatus.QUEUED)
    with pytest.raises(BenchFailed, match=f"2 of {len(burst)} runs did not finish within 0.5s"):
        runs_wait(burst, timeout=0.5)
