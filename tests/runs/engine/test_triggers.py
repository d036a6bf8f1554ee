"""Triggering: validation before anything is stored, versions, batches."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run, RunEvent
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import InvalidTrigger, TriggerOptions, run_batch_trigger, run_trigger
from stepwise.tasks.models import Queue, TaskVersion
from stepwise.tasks.registry import UnknownTask
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import noop

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def paused():
    environments_ensure()  # a flush by an earlier test of this process may have removed them
    Queue.objects.update_or_create(environment_id="dev", name="task/test-noop", defaults={"paused": True})


def test_unserialisable_payload_is_refused_and_nothing_is_stored():
    with pytest.raises(InvalidTrigger, match="the payload is not JSON-serialisable: .* type 'object'"):
        run_trigger(task_id="test-noop", payload={"x": object()})
    assert not Run.objects.exists() and not RunEvent.objects.exists()


def test_payload_over_the_size_limit_is_refused(settings):
    settings.STEPWISE_MAX_PAYLOAD_BYTES = 100
    with pytest.raises(InvalidTrigger, match="over the limit of 100 bytes"):
        run_trigger(task_id="test-noop", payload={"blob": "x" * 200})
    assert not Run.objects.exists()


def test_unknown_task_names_the_known_ones():
    with pytest.raises(UnknownTask, match="unknown task 'nope' .*test-noop"):
        run_trigger(task_id="nope", payload={})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TriggerOptions(tags=["ok", ""]), "tags must be a list"),
        (TriggerOptions(delay="soon"), "delay: not a duration: 'soon'"),
        (TriggerOptions(ttl=-1), "ttl: a duration cannot be negative"),
        (TriggerOptions(environment="moon"), "unknown environment .moon. \\(known: "),
        (TriggerOptions(idempotency_key=""), "idempotency_key must be a non-empty string"),
        (TriggerOptions(priority="high"), "priority must be an integer"),
    ],
)
def test_bad_options_are_refused_with_a_message(options, message):
    with pytest.raises(InvalidTrigger, match=message):
        run_trigger(task_id="test-noop", payload={}, options=options)
    assert not Run.objects.exists()


def test_run_is_pinned_to_the_content_hash_of_its_task_code():
    handle = noop.trigger({}, tags=["vip"])
    run = Run.objects.select_related("version").get(id=handle.id)
    assert run.version.content_hash == noop.version_hash
    assert len(noop.version_hash) == 64
    assert run.tags == ["vip"] and run.status == RunStatus.QUEUED
    assert list(run.events.values_list("type", flat=True)) == ["run.created"]
    noop.trigger({})
    assert TaskVersion.objects.filter(task_id="test-noop").count() == 1


def test_batch_with_one_bad_item_stores_nothing():
    items = [{"payload": {"n": 1}}, {"payload": {"n": 2}, "delay": "never"}]
    with pytest.raises(InvalidTrigger, match="batch item 1: delay"):
        run_batch_trigger(task_id="test-noop", items=items)
    assert not Run.objects.exists()


def test_batch_trigger_creates_every_run():
    handles = noop.batch_trigger([{"payload": {"n": n}, "tags": [f"n{n}"]} for n in range(5)])
    assert len({h.id for h in handles}) == 5
    assert sorted(r.payload["n"] for r in Run.objects.all()) == [0, 1, 2, 3, 4]


def test_the_run_a_trigger_returns_is_the_run_it_stored():
    # The API answers with the run the trigger built in memory: every column must read as stored.
    run, created = run_trigger(task_id="test-noop", payload={"n": 1},
                               options=TriggerOptions(tags=["a"], metadata={"k": "v"}, priority=5, ttl=60))
    stored = Run.objects.get(id=run.id)
    assert created and run.version == stored.version and run._state.adding is False
    differing = {f.attname: (getattr(run, f.attname), getattr(stored, f.attname))
                 for f in Run._meta.concrete_fields if getattr(run, f.attname) != getattr(stored, f.attname)}
    assert not differing
