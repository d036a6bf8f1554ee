"""The runs list: filters, keyset pages, live-update JSON and a fixed number of queries."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from stepwise.runs.models import Run
from stepwise.runs.selectors import RunFilters, runs_filtered
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import TaskVersion
from tests.factories import run_build


def shown_ids(response) -> list[str]:
    return re.findall(r'data-run-id="(run_[0-9a-z]+)"', response.content.decode())


def trigger(task_id: str = "test-noop", **options) -> Run:
    return run_trigger(task_id=task_id, payload={}, options=TriggerOptions(**options))[0]


@pytest.mark.django_db
def test_runs_list_shows_newest_runs_first(signed_in):
    runs = [trigger() for _ in range(3)]

    response = signed_in.get("/")

    assert shown_ids(response) == [r.id for r in reversed(runs)]


@pytest.mark.django_db
def test_runs_list_takes_the_same_queries_for_a_full_page_as_for_one_run(signed_in, django_assert_num_queries):
    trigger(task_id="test-abort", tags=["vip"])
    # session, user, tasks for the filter, one page of runs (with their versions), the count per status,
    # the environments to switch between, the environments for the filter
    with django_assert_num_queries(7):
        assert len(shown_ids(signed_in.get("/"))) == 1
    for i in range(60):
        trigger(task_id="test-noop" if i % 2 else "test-abort", tags=["vip"])
    with django_assert_num_queries(7):
        assert len(shown_ids(signed_in.get("/?tag=vip"))) == 50


@pytest.mark.django_db
def test_each_filter_narrows_the_list_to_matching_runs(signed_in):
    plain = trigger()
    tagged = trigger(tags=["vip", "eu"])
    keyed = trigger(idempotency_key="order-42")
    other_task = trigger(task_id="test-abort")
    failed = run_build(status="FAILED")
    version = TaskVersion.objects.get(id=plain.version_id)

    assert shown_ids(signed_in.get("/?tag=vip")) == [tagged.id]
    assert shown_ids(signed_in.get("/?idempotency_key=order-42")) == [keyed.id]
    assert shown_ids(signed_in.get("/?task=test-abort")) == [other_task.id]
    assert shown_ids(signed_in.get("/?status=FAILED")) == [failed.id]
    assert shown_ids(signed_in.get(f"/?run_id={keyed.id}")) == [keyed.id]
    assert set(shown_ids(signed_in.get(f"/?version={version.content_hash[:10]}&task=test-noop"))) == {
        plain.id, tagged.id, keyed.id, failed.id}


@pytest.mark.django_db
def test_time_range_filter_keeps_runs_created_inside_it(signed_in):
    earlier, later = trigger(), trigger()
    hour_ago = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    in_an_hour = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")

    assert shown_ids(signed_in.get(f"/?created_after={hour_ago}&created_before={in_an_hour}")) == [later.id, earlier.id]
    assert shown_ids(signed_in.get(f"/?created_before={hour_ago}")) == []
    assert shown_ids(signed_in.get(f"/?created_after={in_an_hour}")) == []


@pytest.mark.django_db
def test_keyset_pages_walk_every_run_once_and_back(signed_in):
    runs = [trigger() for _ in range(120)]
    newest_first = [r.id for r in reversed(runs)]

    first = shown_ids(signed_in.get("/"))
    second = shown_ids(signed_in.get(f"/?before={first[-1]}"))
    third = shown_ids(signed_in.get(f"/?before={second[-1]}"))
    back = shown_ids(signed_in.get(f"/?after={second[0]}"))

    assert first + second + third == newest_first
    assert (len(first), len(second), len(third)) == (50, 50, 20)
    assert back == first
    assert f"before={second[-1]}" in signed_in.get(f"/?before={first[-1]}").content.decode()


@pytest.mark.django_db
def test_live_updates_return_new_rows_and_changed_statuses(signed_in):
    old = trigger()
    new = trigger(tags=["vip"])
    Run.objects.filter(id=old.id).update(status="EXECUTING", attempt_count=2)

    answer = signed_in.get(f"/runs/updates.json?newest={old.id}&ids={old.id}").json()

    assert [row["id"] for row in answer["rows"]] == [new.id]
    assert f'data-run-id="{new.id}"' in answer["rows"][0]["html"]
    assert answer["statuses"] == {old.id: {"status": "EXECUTING", "label": "Executing", "attempts": 2,
                                           "duration": "—"}}


@pytest.mark.django_db
def test_live_updates_respect_the_filters(signed_in):
    old = trigger()
    trigger()
    vip = trigger(tags=["vip"])

    answer = signed_in.get(f"/runs/updates.json?tag=vip&newest={old.id}").json()

    assert [row["id"] for row in answer["rows"]] == [vip.id]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "filters",
    [RunFilters(), RunFilters(status="FAILED"), RunFilters(task="test-noop"), RunFilters(tag="vip"),
     RunFilters(idempotency_key="k"), RunFilters(version="abc"), RunFilters(run_id="run_01"),
     RunFilters(created_after=timezone.now() - timedelta(days=1), created_before=timezone.now())],
    ids=["none", "status", "task", "tag", "idempotency_key", "version", "run_id", "time_range"],
)
def test_every_runs_list_filter_is_served_by_an_index(filters):
    if connection.vendor != "postgresql":
        pytest.skip("the plan check needs PostgreSQL")
    trigger()
    query = runs_filtered(filters).order_by("-id")[:51]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = query.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Seq Scan on stepwise_runs_run" not in plan, plan
