"""The engine finds the project's own Celery app: hints, the broker backlog and its marker go through it."""
from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from celery import Celery
from celery.contrib.testing.app import setup_default_app
from django.conf import settings as django_settings
from django.core.management import call_command

import stepwise.console.celery
from stepwise.runs.broker import broker_backlog, broker_lost_messages, priority_lists
from stepwise.runs.celery_app import CeleryAppMissing, celery_app
from stepwise.runs.dispatch import _hint_send, _hints, _hints_send
from stepwise.runs.triggers import run_trigger


@contextmanager
def default_celery_app(app: Celery) -> Iterator[Celery]:
    """Make ``app`` Celery's default app in every thread, as a project's package importing it does; undo it after."""
    with setup_default_app(app):
        app.set_default()
        app.set_current()
        yield app


@pytest.fixture
def shop_app(settings) -> Iterator[Celery]:
    """A project's own Celery app on the test Redis, with a queue of its own, named by no setting."""
    settings.STEPWISE_CELERY_APP = ""
    app = Celery("shopsite", set_as_current=False)
    app.conf.update(broker_url=settings.REDIS_URL, task_default_queue=f"shop-{uuid.uuid4().hex[:10]}",
                    broker_connection_retry_on_startup=True)
    with default_celery_app(app):
        yield app
    _queue_delete(app.conf.task_default_queue)


def _queue_messages(queue: str) -> list[dict]:
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    return [json.loads(raw) for key in priority_lists(queue) for raw in client.lrange(key, 0, -1)]


def _queue_delete(queue: str) -> None:
    redis.Redis.from_url(django_settings.REDIS_URL).delete(*priority_lists(queue), f"stepwise:broker-marker:{queue}")


def test_a_run_s_hint_goes_through_the_project_s_own_celery_app(transactional_db, shop_app):
    assert celery_app() is shop_app
    queue = shop_app.conf.task_default_queue

    run, _ = run_trigger(task_id="test-noop", payload={})
    assert _hints.flush(5)  # sent from the hint thread, where only Celery's default app is known

    (hint,) = _queue_messages(queue)
    assert hint["headers"]["task"] == "stepwise.execute_run"
    assert json.loads(base64.b64decode(hint["body"]))[0] == [run.id]
    # What Celery's tools (events, flower, `celery inspect`) show of the task's arguments.
    assert (hint["headers"]["argsrepr"], hint["headers"]["kwargsrepr"]) == (repr([run.id]), "{}")
    assert broker_backlog() == 1


def test_hints_that_queue_up_together_travel_in_groups_by_broker_priority(db, shop_app, settings):
    settings.STEPWISE_HINT_GROUP = 4
    shop_app.conf.broker_transport_options = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS  # ten priority lists
    queue = shop_app.conf.task_default_queue
    new = [f"run_new{n}" for n in range(6)]
    hints = [(run_id, False, None, 0) for run_id in new[:3]]
    hints += [("run_resumed", True, None, 0), ("run_urgent", False, None, 1000)]
    hints += [(run_id, False, None, 0) for run_id in new[3:]]

    _hints_send(hints)

    client = redis.Redis.from_url(django_settings.REDIS_URL)
    def messages(step: int) -> list[tuple[str, list]]:
        (key,) = priority_lists(queue, [step])
        raws = [json.loads(raw) for raw in reversed(client.lrange(key, 0, -1))]  # oldest first
        return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in raws]

    # New runs of the same band share messages, in order, four at most; the resume and the urgent
    # run keep their own place ahead of them (the broker's priority lists 0 and 1).
    assert messages(5) == [("stepwise.execute_runs", [new[:4], 5, None]), ("stepwise.execute_runs", [new[4:], 5, None])]
    assert messages(0) == [("stepwise.execute_run", ["run_resumed"])]
    assert messages(1) == [("stepwise.execute_run", ["run_urgent"])]

    # Resumes go at most eight to a message, however large the groups of new runs may be.
    settings.STEPWISE_HINT_GROUP = 32
    client.delete(*priority_lists(queue))
    resumes = [f"run_resume{n}" for n in range(20)]
    _hints_send([(run_id, True, None, 0) for run_id in resumes] + [(run_id, False, None, 0) for run_id in new])
    assert messages(0) == [("stepwise.execute_runs", [resumes[:8], 0, None]),
                           ("stepwise.execute_runs", [resumes[8:16], 0, None]),
                           ("stepwise.execute_runs", [resumes[16:], 0, None])]
    assert messages(5) == [("stepwise.execute_runs", [new, 5, None])]

    settings.STEPWISE_HINT_GROUP = 1  # a rolling upgrade from workers that know no group hints
    client.delete(*priority_lists(queue))
    _hints_send([(run_id, False, None, 0) for run_id in new[:2]])
    assert messages(5) == [("stepwise.execute_run", [new[0]]), ("stepwise.execute_run", [new[1]])]


def test_the_broker_marker_lives_beside_the_project_app_s_queue_and_tells_when_it_was_flushed(shop_app):
    marker = f"stepwise:broker-marker:{shop_app.conf.task_default_queue}"
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    broker_lost_messages()  # the first look sets it
    assert client.exists(marker)
    assert broker_lost_messages() is False

    client.delete(marker)  # as a broker restarted empty or flushed
    assert broker_lost_messages() is True


def test_stepwise_celery_app_names_the_app_as_celery_dash_a_does(settings):
    for name in ("stepwise.console", "stepwise.console.celery", "stepwise.console.celery:app"):
        settings.STEPWISE_CELERY_APP = name
        assert celery_app() is stepwise.console.celery.app


def test_without_a_celery_app_the_engine_says_how_to_make_one(settings):
    settings.STEPWISE_CELERY_APP = ""
    # What Celery makes up when asked for an app before the project made one.
    made_up = Celery("default", fixups=[], set_as_current=False)
    with default_celery_app(made_up):
        with pytest.raises(CeleryAppMissing, match=r"import it in proj/__init__\.py"):
            celery_app()
        with pytest.raises(CeleryAppMissing, match="STEPWISE_CELERY_APP"):
            call_command("up", "--port", "0")  # before it migrates or serves anything


def test_hints_reuse_their_channel_s_redis_client_and_a_new_connection_gets_its_own(shop_app, monkeypatch):
    made = []
    make = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        made.append(self)
        make(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    queue = shop_app.conf.task_default_queue
    for connection in range(2):  # the second as after a broker restart: a new connection, a new pool
        with shop_app.connection_for_write() as conn, conn.Producer() as producer:
            for i in range(20):
                assert _hint_send(shop_app, [f"run_{connection}_{i}"], band=5, producer=producer)

    # kombu alone makes a client per message (over 40 here); a channel now keeps one while its pool lives.
    assert len(made) <= 4  # two connections, each with its default channel and the producer's
    hints = _queue_messages(queue)
    assert sorted(json.loads(base64.b64decode(h["body"]))[0][0] for h in hints) == sorted(
        f"run_{c}_{i}" for c in range(2) for i in range(20))
