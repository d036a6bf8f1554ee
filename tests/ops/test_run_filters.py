"""The runs list filters by queue, environment, batch and schedule, in the API and the console."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from stepwise.runs.triggers import TriggerOptions, run_batch_trigger, run_trigger
from stepwise.tasks.models import Schedule
from stepwise.tasks.schedules import schedule_upsert, schedules_fire_due


def trigger(task_id: str = "test-noop", environment: str = "dev", **options):
    return run_trigger(task_id=task_id, payload={}, options=TriggerOptions(environment=environment, delay=3600,
                                                                          **options))[0]


def scheduled_run(environment: str = "dev") -> tuple[int, str]:
    schedule, _ = schedule_upsert(environment=environment, task_id="test-noop", cron="* * * * *", timezone="UTC",
                                  dedup_key=f"every-minute-{environment}", payload={})
    Schedule.objects.filter(id=schedule.id).update(next_run_at=timezone.now() - timedelta(minutes=1))
    assert schedules_fire_due() == 1
    from stepwise.runs.models import Run

    return schedule.id, Run.objects.get(tags__contains=[f"schedule:{schedule.id}"]).id


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["items"]]


def test_the_api_filters_runs_by_queue_batch_and_schedule(api):
    noop = trigger()
    other_queue = trigger(task_id="test-abort")
    batch = api.post("/api/tasks/test-noop/batch", {"items": [{"payload": {"n": 1}}, {"payload": {"n": 2}}]})
    assert batch.status_code == 201
    batch_id = batch.json()["batch_id"]
    batch_runs = [r["id"] for r in batch.json()["runs"]]
    schedule_id, scheduled = scheduled_run()

    assert set(ids(api.get("/api/runs", queue="task/test-abort"))) == {other_queue.id}
    assert noop.id in ids(api.get("/api/runs", queue="task/test-noop"))
    assert sorted(ids(api.get("/api/runs", batch=batch_id))) == sorted(batch_runs)
    assert ids(api.get("/api/runs", schedule=schedule_id)) == [scheduled]
    assert ids(api.get("/api/runs", schedule=schedule_id, queue="task/test-abort")) == []
    assert ids(api.get("/api/runs", batch="batch_nothing")) == []
    assert api.get("/api/runs", schedule="x").status_code == 422


def test_a_batch_of_the_sdk_gets_one_id_its_runs_share(environments):
    results = run_batch_trigger(task_id="test-noop", items=[{"payload": {}, "tags": ["a"]}, {"payload": {}}])
    batch_tags = {t for run, _ in results for t in run.tags if t.startswith("batch:")}
    assert len(batch_tags) == 1 and results[0][0].tags[0] == "a"


def test_the_console_filters_by_environment_queue_batch_and_schedule(signed_in):
    dev = trigger()
    prod = trigger(environment="prod")
    abort = trigger(task_id="test-abort")
    [(batched, _)] = run_batch_trigger(task_id="test-noop", items=[{"payload": {}}])
    batch_id = next(t for t in batched.tags if t.startswith("batch:")).removeprefix("batch:")
    schedule_id, scheduled = scheduled_run("prod")

    def shown(**query) -> set[str]:
        response = signed_in.get("/", query)
        assert response.status_code == 200
        return {r.id for r in response.context["page"].runs}

    assert shown(environment="prod") == {prod.id, scheduled}
    assert dev.id in shown(environment="dev") and prod.id not in shown(environment="dev")
    assert shown(queue="task/test-abort") == {abort.id}
    assert shown(batch=batch_id) == {batched.id}
    assert shown(schedule=str(schedule_id)) == {scheduled}
    assert shown(schedule=str(schedule_id), environment="dev") == set()
    page = signed_in.get("/", {"queue": "task/test-abort"}).content.decode()
    assert 'name="queue" value="task/test-abort"' in page and '<option value="staging"' in page
