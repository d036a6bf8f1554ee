"""ctx.metadata: changed from inside a run, stored fenced and once per run, streamed, limited in size."""
from __future__ import annotations

import pytest

from stepwise.runs.engine.errors import RunInterrupted
from stepwise.runs.models import Run, RunEvent
from stepwise.runs.statuses import RunStatus
from stepwise.runs.store import OrmRunStore
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.runs.worker import run_attempt, worker_id
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.api.conftest import ApiClient
from tests.waiting import run_requeue, wait_finished, wait_for, waits_resume_now

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_api(live) -> ApiClient:
    environments_ensure()
    return ApiClient(api_key_create(environment="dev", name="metadata tests").secret)




def test_changes_outside_steps_happen_once_across_a_resume_and_a_retry(processes):
    run, _ = run_trigger(task_id="test-metadata", payload={}, options=TriggerOptions(metadata={"customer": "c1"}))

    assert run_attempt(run.id).result == "suspended"
    stored = Run.objects.get(id=run.id).metadata
    assert stored == {"customer": "c1", "status": "started", "outside": 1, "inside": 1, "log": ["before the wait"]}

    waits_resume_now(run.id)
    assert run_attempt(run.id).result == "retrying"  # attempt 2 changed the metadata, then failed
    assert Run.objects.get(id=run.id).metadata["outside"] == 11
    run_requeue(run.id)
    assert run_attempt(run.id).result == "completed"

    finished = Run.objects.get(id=run.id)
    expected = {"customer": "c1", "outside": 11, "inside": 1, "log": ["after the wait, attempt 2"]}
    assert finished.metadata == expected, "the replays of attempts 2 and 3 repeated no change made outside a step"
    assert finished.output == {"seen_in_step": 1, "metadata": expected}
    updates = RunEvent.objects.filter(run_id=run.id, type="metadata.updated").order_by("seq")
    assert updates.count() >= 3
    assert updates.last().data["metadata"] == expected


def test_a_long_step_streams_its_progress_while_it_runs(live_api):
    run, _ = run_trigger(task_id="test-metadata-progress", payload={"sleep": 1.5})

    # Stored (and sent as an event) within about a second, while the step still runs.
    wait_for(lambda: Run.objects.filter(id=run.id, metadata__progress__gt=0).exists(), timeout=15,
             message="the progress stored during the step")
    during = Run.objects.get(id=run.id)
    assert during.status == RunStatus.EXECUTING
    assert RunEvent.objects.filter(run_id=run.id, type="metadata.updated").exists()
    assert live_api.get(f"/api/runs/{run.id}").json()["metadata"]["progress"] > 0

    finished = wait_finished(run.id)
    assert finished.status == RunStatus.COMPLETED
    assert finished.metadata == {"progress": 1.0}
    assert live_api.get(f"/api/runs/{run.id}").json()["metadata"] == {"progress": 1.0}


def test_bad_changes_are_refused_with_a_clear_error_and_change_nothing(processes):
    run, _ = run_trigger(task_id="test-metadata-bad-input", payload={})
    assert run_attempt(run.id).result == "completed"

    finished = Run.objects.get(id=run.id)
    refused = finished.output
    assert "over the limit of 65536 bytes" in refused["too_large"] and "nothing was changed" in refused["too_large"]
    assert "is not JSON-serialisable" in refused["not_json"] and "'object'" in refused["not_json"]
    assert "non-empty string" in refused["bad_key"]
    assert "must be a number, not str" in refused["not_a_number"]
    assert "metadata 'name' (to increment it) must be a number" in refused["increment_text"]
    assert finished.metadata == {"kept": 1, "name": "x"}


def test_a_worker_that_lost_its_lease_cannot_write_metadata(processes):
    run, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(metadata={"a": 1}))
    store = OrmRunStore()
    claim = store.claim(run.id, worker_id())
    store.metadata_note(claim, metadata={"a": 2}, cursor=(0, 0))
    Run.objects.filter(id=run.id).update(lease_token="someone-else")  # taken over

    with pytest.raises(RunInterrupted):
        store.run_fields_store(claim)

    assert Run.objects.get(id=run.id).metadata == {"a": 1}
    assert not RunEvent.objects.filter(run_id=run.id, type="metadata.updated").exists()


def test_metadata_outside_a_run_says_so():
    from stepwise.tasks.sdk import metadata

    with pytest.raises(RuntimeError, match="only available inside a run"):
        metadata.set("progress", 1)
