"""The tasks page and its Test form."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from stepwise.console.forms import PayloadForm
from stepwise.console.views.access import audit, login_required, require
from stepwise.console.views.feedback import action_done
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.access import Capability, may
from stepwise.tasks.registry import UnknownTask, task_all
from stepwise.tasks.selectors import task_overviews


@login_required
@require_GET
def task_list(request: HttpRequest) -> HttpResponse:
    """Show every task with its versions, settings, recent stats and a Test form."""
    overviews = task_overviews()
    known = {o.task.id for o in overviews}
    # Ids, not definitions: a template would call a (callable) TaskDefinition.
    unsynced = [d.id for d in task_all() if d.id not in known]
    return render(
        request,
        "console/tasks/list.html",
        {"overviews": overviews, "unsynced": unsynced, "nav": "tasks", "test_form": PayloadForm(),
         "can_test": may(request.user, TriggerOptions().environment, Capability.TRIGGER)},
    )


@login_required
@require_POST
def task_test(request: HttpRequest, task_id: str) -> HttpResponse:
    """Trigger a task with the JSON payload typed in its Test form."""
    back = reverse("console:tasks") + f"#task-{task_id}"
    environment = TriggerOptions().environment  # the Test form triggers in the default environment
    require(request, environment, Capability.TRIGGER)
    form = PayloadForm(request.POST)
    if not form.is_valid():
        return action_done(request, message=form.errors["payload"][0], to=back, ok=False, status=400)
    try:
        run, _ = run_trigger(task_id=task_id, payload=form.cleaned_data["payload"])
    except (StepwiseError, UnknownTask) as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=400)
    audit(request, "run.test_trigger", environment=run.environment_id, target=task_id, data={"run_id": run.id})
    return action_done(request, message=f"Triggered {task_id} as {run.id}.", to=reverse("console:run", args=[run.id]))
