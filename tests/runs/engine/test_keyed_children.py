"""A wait for a child named by an idempotency key that an existing run holds waits for that run."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.runs.waits import children_waits_settle
from stepwise.runs.worker import run_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def _parent(key: str, n: int = 21) -> str:
    return run_trigger(task_id="test-parent-of-keyed-child", payload={"n": n, "key": key})[0].id


def test_a_wait_for_a_finished_run_its_key_names_takes_that_runs_result_at_once(processes):
    done, _ = run_trigger(task_id="test-keyed-child", payload={"n": 5}, options=TriggerOptions(idempotency_key="k1"))
    assert run_attempt(done.id).result == "completed"
    parent = _parent("k1")

    assert run_attempt(parent).result == "completed"  # no suspension: the child had ended already

    assert Run.objects.get(id=parent).output == {"ok": True, "output": {"double": 10}, "child": done.id}
    assert Run.objects.filter(task_id="test-keyed-child").count() == 1


def test_two_parents_waiting_for_the_same_keyed_child_both_resume_when_it_ends(processes):
    first, second = _parent("k2"), _parent("k2")
    assert run_attempt(first).result == "suspended"
    assert run_attempt(second).result == "suspended"  # it waits for the child the first parent started
    [child] = Run.objects.filter(task_id="test-keyed-child")

    assert run_attempt(child.id).result == "completed"

    for parent in (first, second):
        assert Run.objects.get(id=parent).status == RunStatus.QUEUED, "the child's end woke both parents"
        assert run_attempt(parent).result == "completed"
        assert Run.objects.get(id=parent).output == {"ok": True, "output": {"double": 42}, "child": child.id}


def test_a_keyed_child_that_was_executing_when_adopted_resolves_the_wait_within_a_scheduler_pass(processes):
    child, _ = run_trigger(task_id="test-keyed-child", payload={"n": 1}, options=TriggerOptions(idempotency_key="k3"))
    parent = _parent("k3")
    assert run_attempt(parent).result == "suspended"
    # As if the child had been claimed before the parent adopted it: its end does not look for waits.
    Run.objects.filter(id=child.id).update(parent_waitpoint=None)
    assert run_attempt(child.id).result == "completed"
    wait = Waitpoint.objects.get(run_id=parent, kind="CHILDREN")
    assert wait.status == "PENDING"

    assert children_waits_settle() == 1

    assert Waitpoint.objects.get(id=wait.id).status == "COMPLETED"
    assert run_attempt(parent).result == "completed"
    assert Run.objects.get(id=parent).output["output"] == {"double": 2}
