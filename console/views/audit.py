"""The audit log page of one environment: who changed what, when, and through which door; for its admins."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from stepwise.console.views.access import login_required
from stepwise.console.views.environments import environment_checked, environment_page
from stepwise.tasks.access import Capability
from stepwise.tasks.audit import audit_list

PAGE_SIZE = 100


@login_required
@require_GET
def audit_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's audit entries newest first, a page at a time (``?before=<id>``)."""
    try:
        before = int(request.GET["before"]) if request.GET.get("before") else None
    except ValueError:
        before = None
    slug = environment_checked(request, Capability.ADMIN)
    entries = audit_list(environment=slug, before=before, limit=PAGE_SIZE + 1)
    older = entries[PAGE_SIZE - 1].id if len(entries) > PAGE_SIZE else None
    return environment_page(request, "console/audit/list.html", nav="audit", form=None, capability=Capability.ADMIN,
                            rows=lambda environment: entries[:PAGE_SIZE], older=older)
