"""Pausing a whole environment: nothing of it starts, new queues start paused, resume restores each queue exactly."""
from __future__ import annotations

import time

import pytest

from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.environments import environment_pause, environment_resume
from stepwise.tasks.models import AuditEntry, Queue
from stepwise.tasks.queues import queue_pause
from stepwise.tasks.registry import task_get
from stepwise.tasks.services import environments_ensure, task_cache_clear, task_version_ensure
from tests.api.conftest import ApiClient
from tests.commands import run_command
from tests.console.conftest import csrf_post
from tests.waiting import wait_for


def paused_queues(environment: str) -> set[str]:
    return set(Queue.objects.filter(environment_id=environment, paused=True).values_list("name", flat=True))


def test_pause_holds_every_queue_and_resume_restores_exactly_the_ones_paused_before(api):
    for task_id in ("test-noop", "test-abort", "test-slow"):
        task_version_ensure(task_get(task_id))
    queue_pause(environment="dev", name="task/test-abort")  # paused before: stays paused after

    state = api.post("/api/environment/pause").json()
    assert state["paused"] is True and state["queues_paused_before"] == ["task/test-abort"]
    assert paused_queues("dev") == set(Queue.objects.filter(environment_id="dev").values_list("name", flat=True))
    assert paused_queues("prod") == set()  # other environments go on
    assert api.post("/api/environment/pause").status_code == 409

    # One queue's own resume would start runs of a paused environment: refused, saying what to do.
    refused = api.post("/api/queues/task/test-noop/resume")
    assert refused.status_code == 409 and "resume the environment first" in refused.json()["detail"]
    # A queue paused meanwhile stays paused after the resume, as its admin asked.
    assert api.post("/api/queues/task/test-slow/pause").status_code == 200

    resumed = api.post("/api/environment/resume").json()
    assert resumed["paused"] is False
    assert paused_queues("dev") == {"task/test-abort", "task/test-slow"}
    assert api.post("/api/environment/resume").status_code == 409
    assert api.get("/api/environment").json()["paused"] is False
    actions = [a for a in AuditEntry.objects.order_by("id").values_list("action", flat=True) if "environment" in a]
    assert actions == ["environment.pause", "environment.resume"]


def test_a_queue_made_while_its_environment_is_paused_starts_paused(api):
    api.post("/api/environment/pause")
    task_cache_clear()
    Queue.objects.filter(name="task/test-wait-event").delete()
    task_version_ensure(task_get("test-wait-event"))
    assert Queue.objects.get(environment_id="dev", name="task/test-wait-event").paused
    assert not Queue.objects.get(environment_id="prod", name="task/test-wait-event").paused


def test_only_admins_pause_an_environment(api):
    operator = ApiClient(api_key_create(environment="dev", name="op", scopes=["read", "trigger", "operate"]).secret)
    assert operator.post("/api/environment/pause").status_code == 403
    assert operator.get("/api/environment").json()["paused"] is False


def test_the_cli_pauses_and_resumes_an_environment(environments):
    task_version_ensure(task_get("test-noop"))
    assert "environment prod paused" in run_command("queues", "pause-all", "--env", "prod")
    assert "is paused since" in run_command("queues", "list", "--env", "prod")
    assert "environment prod resumed" in run_command("queues", "resume-all", "--env", "prod")
    assert paused_queues("prod") == set()


def test_the_queues_page_shows_the_pause_and_resumes_it(signed_in):
    environments_ensure()
    task_version_ensure(task_get("test-noop"))
    assert csrf_post(signed_in, "/environment/pause/", {"env": "staging"}).status_code == 302
    page = signed_in.get("/queues/?env=staging").content.decode()
    assert 'data-paused="1"' in page and "Resume staging" in page
    assert csrf_post(signed_in, "/environment/resume/", {"env": "staging"}).status_code == 302
    assert 'data-paused="0"' in signed_in.get("/queues/?env=staging").content.decode()


@pytest.mark.django_db(transaction=True)
def test_no_run_of_a_paused_environment_starts_on_real_workers_until_it_resumes(live):
    environments_ensure()
    task_version_ensure(task_get("test-noop"))
    environment_pause(environment="dev")
    held = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions())[0]
    elsewhere = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(environment="prod"))[0]
    wait_for(lambda: Run.objects.get(id=elsewhere.id).status == RunStatus.COMPLETED, message="the prod run")
    time.sleep(1)  # the dev run's hint reached a worker too, and was refused
    assert Run.objects.get(id=held.id).status == RunStatus.QUEUED
    environment_resume(environment="dev")
    wait_for(lambda: Run.objects.get(id=held.id).status == RunStatus.COMPLETED, message="the dev run after resume")
