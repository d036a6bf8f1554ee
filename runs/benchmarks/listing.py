"""Time the console's runs-list query: the first page, as the runs list view asks for it."""
from __future__ import annotations

import time
from collections.abc import Callable

from django.db import close_old_connections

from stepwise.runs.benchmarks.measure import BenchUnavailable, Latencies
from stepwise.runs.models import RunStatus

try:
    from stepwise.runs.selectors import RunFilters, run_page  # what the console's runs list view calls
except ImportError:  # a tree without the keyset-paged list: the phase reads n/a
    RunFilters = run_page = None

# The console's page size (stepwise.console.views.runs.PAGE_SIZE), copied: the bench must not import the views.
PAGE_SIZE = 50


def list_page_timings(*, repeats: int, tag: str) -> dict[str, Latencies]:
    """Time the first page of the runs list with no filter, a status filter and a tag filter."""
    if run_page is None:
        raise BenchUnavailable("stepwise.runs.selectors has no run_page (the console's runs-list selector)")
    cases: dict[str, Callable[[], object]] = {
        "no filter": lambda: run_page(filters=RunFilters(), size=PAGE_SIZE),
        f"status={RunStatus.FAILED.value}": lambda: run_page(
            filters=RunFilters(status=RunStatus.FAILED.value), size=PAGE_SIZE
        ),
        f"tag={tag}": lambda: run_page(filters=RunFilters(tag=tag), size=PAGE_SIZE),
    }
    close_old_connections()
    return {name: _timed(fetch, repeats) for name, fetch in cases.items()}


def _timed(fetch: Callable[[], object], repeats: int) -> Latencies:
    """Call ``fetch`` once to warm up, then ``repeats`` times; return the milliseconds of the timed calls."""
    fetch()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fetch()
        samples.append((time.perf_counter() - started) * 1000)
    return Latencies(tuple(samples))
