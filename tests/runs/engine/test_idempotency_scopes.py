"""Idempotency key scopes: global, per parent run, per parent attempt; and what a task sees of its key."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run, RunEvent, Step
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import InvalidTrigger, TriggerOptions, run_trigger
from stepwise.tasks.models import Queue
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import idem_echo
from tests.waiting import wait_finished

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fresh_workers(processes):
    """Workers of this test alone: the child tasks they trigger get their rows anew after the last flush.

    A worker keeps the task rows it ensured for its lifetime; shared workers would still hold those
    of an earlier test, whose rows the flush between tests removed.
    """
    processes.worker(concurrency=2)
    processes.scheduler(interval=0.2)
    return processes


def _paused(task_id: str) -> None:
    environments_ensure()  # a queue belongs to an environment, which a flush removed
    Queue.objects.update_or_create(environment_id="dev", name=f"task/{task_id}", defaults={"paused": True})


def _finished_children(parent: Run) -> list[Run]:
    return [wait_finished(child.id) for child in Run.objects.filter(parent_run_id=parent.id).order_by("id")]


def test_global_scope_is_todays_key_one_run_per_task_and_environment(transactional_db):
    _paused("test-idem-echo")
    first, created = run_trigger(task_id="test-idem-echo", payload={},
                                 options=TriggerOptions(idempotency_key="order-1"))
    same, created_same = run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(
        idempotency_key="order-1", idempotency_key_scope="global"))
    other_env, created_other = run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(
        idempotency_key="order-1", environment="prod"))

    assert (created, created_same, created_other) == (True, False, True)
    assert same.id == first.id and other_env.id != first.id
    stored = Run.objects.get(id=first.id)
    assert (stored.idempotency_key, stored.idempotency_key_scope, stored.idempotency_key_state) == (
        "order-1", "global", "active")


def test_a_key_too_long_to_combine_is_hashed_and_still_deduplicates(transactional_db):
    _paused("test-idem-echo")
    key = "k" * 255
    first, _ = run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(idempotency_key=key))
    again, created = run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(idempotency_key=key))

    assert again.id == first.id and created is False
    stored = Run.objects.get(id=first.id)
    assert stored.idempotency_key == key  # shown as given
    assert stored.idempotency_key_effective.startswith("sha256:") and len(stored.idempotency_key_effective) == 71


@pytest.mark.parametrize(("options", "message"), [
    ({"idempotency_key": "k", "idempotency_key_scope": "run"},
     "idempotency_key_scope 'run' combines the key with the parent run, so it is only for triggers made inside a run"),
    ({"idempotency_key": "k", "idempotency_key_scope": "attempt"}, "idempotency_key_scope 'attempt' combines"),
    ({"idempotency_key": "k", "idempotency_key_scope": "galaxy"},
     "idempotency_key_scope must be one of 'global', 'run', 'attempt', got 'galaxy'"),
    ({"idempotency_key_scope": "run"}, "idempotency_key_scope needs an idempotency_key"),
], ids=["run-outside-a-run", "attempt-outside-a-run", "unknown-scope", "scope-without-key"])
def test_bad_scopes_are_refused_with_a_message_and_store_nothing(transactional_db, options, message):
    with pytest.raises(InvalidTrigger, match=message):
        idem_echo.trigger({}, **options)
    with pytest.raises(InvalidTrigger, match="batch item 1: " + message):
        idem_echo.batch_trigger([{"payload": {}}, {"payload": {}, **options}])
    assert not Run.objects.exists()


def test_run_scope_gives_each_parent_its_own_child(fresh_workers):
    parents = [run_trigger(task_id="test-idem-parent", payload={"scope": "run"})[0] for _ in range(2)]
    finished = [wait_finished(p.id) for p in parents]

    assert [p.status for p in finished] == [RunStatus.COMPLETED] * 2
    for parent in finished:
        keyed, plain = parent.output["children"], parent.output["plain"]
        assert len(set(keyed)) == 1, "the same key within one parent is one child"
        assert parent.output["created"] == [True, False, False]
        children = {c.id: c for c in _finished_children(parent)}
        assert set(children) == {keyed[0], plain}
        assert children[keyed[0]].output == {"run": keyed[0], "key": "shared", "scope": "run"}
        # A child triggered without a key shows none, though its parent's call deduplicates it.
        assert children[plain].output == {"run": plain, "key": None, "scope": None}
    assert finished[0].output["children"][0] != finished[1].output["children"][0]
    assert Run.objects.filter(idempotency_key="shared").count() == 2


def test_global_scope_inside_runs_is_shared_by_every_parent(fresh_workers):
    parents = [run_trigger(task_id="test-idem-parent", payload={"scope": "global"})[0] for _ in range(2)]
    finished = [wait_finished(p.id) for p in parents]

    assert [p.status for p in finished] == [RunStatus.COMPLETED] * 2
    [child] = Run.objects.filter(idempotency_key="shared")
    assert {c for p in finished for c in p.output["children"]} == {child.id}
    assert sorted(created for p in finished for created in p.output["created"]) == [False] * 5 + [True]


@pytest.mark.parametrize(("scope", "children"), [("attempt", 2), ("run", 1)])
def test_a_retried_step_triggers_a_new_child_only_with_the_attempt_scope(fresh_workers, scope, children):
    run, _ = run_trigger(task_id="test-idem-retried-parent", payload={"scope": scope})
    finished = wait_finished(run.id)

    assert finished.status == RunStatus.COMPLETED and finished.attempt_count == 2
    made = _finished_children(finished)
    assert len(made) == children
    assert finished.output["child"] == made[-1].id, "the step returns the child of the attempt that succeeded"
    assert {c.output["scope"] for c in made} == {scope}


def test_a_waited_child_sees_its_key_and_scope(fresh_workers):
    run, _ = run_trigger(task_id="test-idem-waiting-parent", payload={})
    finished = wait_finished(run.id)

    assert finished.status == RunStatus.COMPLETED, finished.error
    assert finished.output["ok"] is True
    assert finished.output["child"]["key"] == "waited" and finished.output["child"]["scope"] == "attempt"


@pytest.mark.parametrize("limited", [False, True], ids=["one-statement-claim", "locked-claim"])
def test_ctx_run_tells_the_task_the_key_and_scope_it_was_triggered_with(live, limited):
    queue = None
    if limited:  # a limited queue's runs are claimed on the ORM path
        queue = "idem-limited"
        environments_ensure()  # a queue belongs to an environment, which a flush removed
        Queue.objects.create(environment_id="dev", name=queue, concurrency_limit=5)
    keyed, _ = run_trigger(task_id="test-idem-echo", payload={},
                           options=TriggerOptions(idempotency_key="echo-1", queue=queue))
    plain, _ = run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(queue=queue))

    assert wait_finished(keyed.id).output == {"run": keyed.id, "key": "echo-1", "scope": "global"}
    assert wait_finished(plain.id).output == {"run": plain.id, "key": None, "scope": None}


def test_a_reset_inside_a_run_happens_once_across_replays(fresh_workers):
    run, _ = run_trigger(task_id="test-idem-reset-inside", payload={"seconds": 0.5})
    finished = wait_finished(run.id)

    assert finished.status == RunStatus.COMPLETED and finished.attempt_count == 2  # resumed after its wait
    first, second = (Run.objects.get(id=finished.output[k]) for k in ("first", "second"))
    assert finished.output["held_by"] == first.id and second.id != first.id
    assert first.idempotency_key_state == "reset"
    # The resumed attempt replayed the reset instead of freeing the key again, now held by the second child.
    assert second.idempotency_key_state == "active"
    assert (first.idempotency_key_effective, second.idempotency_key_effective) == (None, f"run:{run.id}:again")
    assert Step.objects.get(run_id=run.id, key="idempotency_keys.reset:test-idem-echo").kind == "reset"
    reset_event = RunEvent.objects.get(run_id=first.id, type="idempotency_key.reset")
    assert reset_event.data == {"key": "again", "scope": "run", "by": "sdk"}
