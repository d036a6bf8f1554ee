"""Bulk actions by filter from the console: a count per environment, a confirmation, then progress."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from stepwise.runs.bulk import bulk_actions_advance
from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.models import AuditEntry, BulkAction
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import csrf_post
from tests.ops.test_bulk_actions import delayed
from tests.roles import grant


def test_cancel_all_shows_the_count_then_cancels_every_matching_run_on_every_page(signed_in):
    environments_ensure()
    runs = [delayed(tags=["nightly"]) for _ in range(60)] + [delayed(environment="prod", tags=["nightly"])]
    keep = delayed(tags=["manual"])
    listing = signed_in.get("/", {"tag": "nightly"}).content.decode()
    assert "/runs/bulk/by-filter/?action=cancel&amp;tag=nightly" in listing

    confirm = signed_in.get("/runs/bulk/by-filter/", {"action": "cancel", "tag": "nightly"})
    assert confirm.context["targets"] == [("dev", 60), ("staging", 0), ("prod", 1)]
    assert "Cancel 61 runs" in confirm.content.decode()
    assert not BulkAction.objects.exists()  # looking is not doing

    done = csrf_post(signed_in, "/runs/bulk/by-filter/", {"action": "cancel", "tag": "nightly"})
    assert done.status_code == 302 and "/runs/bulk/progress/?ids=" in done["Location"]
    assert BulkAction.objects.count() == 2  # one per environment with matches
    progress = signed_in.get(done["Location"])
    assert b'http-equiv="refresh"' in progress.content
    while bulk_actions_advance():
        pass
    assert set(Run.objects.filter(id__in=[r.id for r in runs]).values_list("status", flat=True)) == {
        RunStatus.CANCELED}
    assert Run.objects.get(id=keep.id).status == RunStatus.DELAYED
    finished = signed_in.get(done["Location"])
    assert b'http-equiv="refresh"' not in finished.content and b"Finished" in finished.content
    assert AuditEntry.objects.filter(action="runs.bulk_cancel", actor="ada").count() == 2


def test_a_viewer_sees_no_bulk_links_and_cannot_start_one(db):
    environments_ensure()
    delayed()
    user = User.objects.create_user("vera", password="pw-long-enough-123")
    grant(user, "dev", "viewer")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert b"by-filter" not in client.get("/").content
    confirm = client.get("/runs/bulk/by-filter/", {"action": "cancel"})
    assert confirm.context["targets"] == [] and b"may not cancel" in confirm.content
    csrf_post(client, "/runs/bulk/by-filter/", {"action": "cancel"})
    assert not BulkAction.objects.exists()
