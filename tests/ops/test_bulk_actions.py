"""Bulk actions by filter: every matching run (not only a page), counted first, done in batches, audited."""
from __future__ import annotations

import pytest

from stepwise.runs.bulk import BULK_BATCH, bulk_actions_advance
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.models import AuditEntry, BulkAction
from tests.api.conftest import ApiClient
from tests.factories import run_build


def delayed(task_id: str = "test-noop", environment: str = "dev", tags: list[str] | None = None) -> Run:
    return run_trigger(task_id=task_id, payload={"n": 1},
                       options=TriggerOptions(environment=environment, delay=3600, tags=tags or []))[0]


def until_finished() -> int:
    passes = 0
    while bulk_actions_advance():
        passes += 1
        assert passes < 50
    return passes


def test_cancel_by_filter_takes_every_matching_run_in_batches_and_leaves_the_rest(api, prod_api):
    matching = [delayed(tags=["nightly"]) for _ in range(BULK_BATCH + 20)]
    other_tag = delayed(tags=["manual"])
    other_task = delayed(task_id="test-abort", tags=["nightly"])
    prod = delayed(environment="prod", tags=["nightly"])
    finished = run_build(status="COMPLETED", tags=["nightly"])
    body = {"action": "cancel", "filters": {"tag": "nightly", "task": "test-noop"}}

    counted = api.post("/api/bulk-actions/count", body)
    assert counted.json() == {"action": "cancel", "count": BULK_BATCH + 20}  # the finished run is not counted
    started = api.post("/api/bulk-actions", body)
    assert started.status_code == 202
    bulk = started.json()
    assert (bulk["total"], bulk["status"], bulk["done"]) == (BULK_BATCH + 20, "running", 0)
    later = delayed(tags=["nightly"])  # triggered after confirming: not part of it

    assert until_finished() == 2
    progress = api.get(f"/api/bulk-actions/{bulk['id']}").json()
    assert (progress["status"], progress["done"], progress["skipped"]) == ("finished", BULK_BATCH + 20, 0)
    statuses = dict(Run.objects.values_list("id", "status"))
    assert {statuses[r.id] for r in matching} == {RunStatus.CANCELED}
    for untouched in (other_tag, other_task, prod, later):
        assert statuses[untouched.id] == RunStatus.DELAYED
    assert statuses[finished.id] == RunStatus.COMPLETED
    entry = AuditEntry.objects.get(action="runs.bulk_cancel")
    assert entry.data == {"filters": {"tag": "nightly", "task": "test-noop", "environment": "dev"},
                          "matched": BULK_BATCH + 20}
    assert prod_api.get(f"/api/bulk-actions/{bulk['id']}").status_code == 404


def test_replay_by_filter_starts_a_linked_run_for_each_match(api):
    failed = [run_build(status="FAILED") for _ in range(3)]
    run_build(status="COMPLETED")
    body = {"action": "replay", "filters": {"status": "FAILED"}}
    assert api.post("/api/bulk-actions/count", body).json()["count"] == 3
    bulk_id = api.post("/api/bulk-actions", body).json()["id"]
    until_finished()
    replays = Run.objects.filter(replayed_from__isnull=False)
    assert sorted(replays.values_list("replayed_from_id", flat=True)) == sorted(r.id for r in failed)
    assert BulkAction.objects.get(id=bulk_id).done == 3


def test_a_run_that_finished_meanwhile_is_left_alone_and_not_counted_as_done(api):
    runs = [delayed() for _ in range(2)]
    bulk_id = api.post("/api/bulk-actions", {"action": "cancel", "filters": {}}).json()["id"]
    Run.objects.filter(id=runs[0].id).update(status=RunStatus.COMPLETED)
    # It no longer matches "unfinished runs", so it is not touched at all.
    until_finished()
    bulk = BulkAction.objects.get(id=bulk_id)
    assert (bulk.done, bulk.skipped, bulk.total) == (1, 0, 2)


@pytest.mark.parametrize("body, status", [
    ({"action": "delete", "filters": {}}, 422),
    ({"action": "cancel", "filters": {"status": "NOPE"}}, 422),
    ({"action": "cancel", "filters": {"schedule": 0}}, 422),
])
def test_bad_bulk_requests_are_refused_and_start_nothing(api, body, status):
    assert api.post("/api/bulk-actions", body).status_code == status
    assert not BulkAction.objects.exists()


def test_a_key_without_operate_may_count_nothing_and_start_nothing(api):
    delayed()
    reader = ApiClient(api_key_create(environment="dev", name="r", scopes=["read", "trigger"]).secret)
    assert reader.post("/api/bulk-actions/count", {"action": "cancel"}).status_code == 403
    assert reader.post("/api/bulk-actions", {"action": "cancel"}).status_code == 403
    assert not BulkAction.objects.exists()
