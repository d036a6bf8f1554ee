"""SDK calls that write, made inside a run, happen once per run however often the code replays."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Event, Run, Step, Waitpoint
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt
from tests.waiting import wait_finished, waits_resume_now

pytestmark = pytest.mark.django_db(transaction=True)



def test_a_child_a_batch_and_an_event_sent_outside_steps_happen_once_across_resumes(live):
    run, _ = run_trigger(task_id="test-triggers-outside-steps", payload={"seconds": 1})
    finished = wait_finished(run.id)

    assert finished.status == RunStatus.COMPLETED and finished.attempt_count == 2  # it resumed after its wait
    children = list(Run.objects.filter(task_id="test-noop", parent_run_id=run.id).order_by("id"))
    assert len(children) == 3, "one child and a batch of two, not again on the resume"
    assert {c.root_run_id for c in children} == {run.id}
    assert {c.environment_id for c in children} == {finished.environment_id}
    assert finished.output["child"] == children[0].id
    assert finished.output["batch"] == [c.id for c in children[1:]]
    assert Event.objects.filter(name="test.outside-steps").count() == 1
    kinds = list(Step.objects.filter(run_id=run.id).order_by("position").values_list("key", "kind"))
    assert kinds == [("trigger:test-noop", "trigger"), ("batch_trigger:test-noop", "trigger"),
                     ("send_event:test.outside-steps", "event"), ("wait.for", "wait")]


def test_a_trigger_whose_record_was_lost_finds_its_child_again(processes):
    """An attempt that crashed between the child's insert and its record: the next one finds that child."""
    run, _ = run_trigger(task_id="test-triggers-outside-steps", payload={"seconds": 3600})
    assert run_attempt(run.id).result == "suspended"
    first = set(Run.objects.filter(parent_run_id=run.id).values_list("id", flat=True))
    # As if the attempt had died right after the writes: their records are gone, the writes stay.
    Step.objects.filter(run_id=run.id).delete()
    Waitpoint.objects.filter(run_id=run.id).delete()
    Run.objects.filter(id=run.id).update(status=RunStatus.QUEUED)

    assert run_attempt(run.id).result == "suspended"

    assert set(Run.objects.filter(parent_run_id=run.id).values_list("id", flat=True)) == first
    assert Event.objects.filter(name="test.outside-steps").count() == 1
    waits_resume_now(run.id)
    assert run_attempt(run.id).result == "completed"
    assert Run.objects.get(id=run.id).output["child"] in first


def test_a_trigger_inside_a_step_that_runs_again_finds_the_same_child(processes):
    run, _ = run_trigger(task_id="test-trigger-inside-flaky-step", payload={})
    assert run_attempt(run.id).result == "retrying"
    Run.objects.filter(id=run.id).update(status=RunStatus.QUEUED)

    assert run_attempt(run.id).result == "completed"

    [child] = Run.objects.filter(parent_run_id=run.id)
    assert Run.objects.get(id=run.id).output == {"child": child.id}
    # The trigger belongs to its step: one recorded step, no record of its own.
    assert list(Step.objects.filter(run_id=run.id).values_list("key", flat=True)) == ["start-child"]
