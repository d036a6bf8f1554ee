"""The tasks page: versions, retry and queue settings, recent stats, in a fixed number of queries."""
from __future__ import annotations

import pytest
from django.utils import timezone

from stepwise.tasks.models import TaskVersion
from stepwise.tasks.services import worker_versions_announce
from tests.factories import ELSEWHERE, run_build, run_pinned_elsewhere

pytestmark = pytest.mark.django_db


def test_tasks_page_shows_settings_versions_and_success_rate(signed_in):
    for status in ("COMPLETED", "COMPLETED", "COMPLETED", "FAILED"):
        run_build(task_id="test-third-step-flaky", status=status)

    page = signed_in.get("/tasks/").content.decode()

    card = page[page.index('id="task-test-third-step-flaky"'):]
    assert "75%" in card[:3000] and "of 4" in card[:3000]
    assert "3 attempts" in card[:3000]
    assert "task/test-third-step-flaky" in card[:3000]
    assert 'action="/tasks/test-third-step-flaky/test/"' in card[:6000]


def test_tasks_page_lists_registered_tasks_never_triggered_with_a_test_form(signed_in):
    page = signed_in.get("/tasks/").content.decode()

    assert 'id="task-process-order"' in page
    assert 'action="/tasks/process-order/test/"' in page


def test_tasks_page_takes_fixed_queries_however_many_tasks_and_runs(signed_in, django_assert_num_queries):
    run_build(task_id="test-noop")
    # session, user, tasks, their versions, queues, recent runs for the stats, workers per version, pinned runs
    with django_assert_num_queries(8):
        signed_in.get("/tasks/")
    for task_id in ("test-abort", "test-async", "test-slow"):
        run_build(task_id=task_id, status="FAILED")
        run_build(task_id=task_id)
    with django_assert_num_queries(8):
        signed_in.get("/tasks/")


def test_waitpoints_page_is_in_the_navigation(signed_in):
    page = signed_in.get("/waitpoints/").content.decode()

    assert 'href="/waitpoints/" aria-current="page"' in page
    assert "No run is waiting for a human right now" in page


def test_tasks_page_shows_per_version_the_workers_holding_it_and_the_pinned_runs_that_need_it(signed_in):
    stranded = run_pinned_elsewhere()
    run_pinned_elsewhere()
    served = TaskVersion.objects.create(task_id="test-pinned-noop", content_hash="d" * 64)  # no run needs it
    worker_versions_announce(worker="w1", hashes=[served.content_hash], now=timezone.now())

    page = signed_in.get("/tasks/").content.decode()

    card = page[page.index('id="task-test-pinned-noop"'):]
    card = card[:card.index("</section>")]
    assert f'{ELSEWHERE[:10]}</span>' in card and stranded.version.label == ELSEWHERE[:10]
    stranded_line = "no worker running it · 2 pinned runs need it"
    assert f'<span class="version-use small version-stranded">{stranded_line}</span>' in card
    assert f'{served.label}</span>' in card and '<span class="version-use small">1 worker running it</span>' in card
