from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console.api import api
from console.views import pages, run_actions, runs, tasks

console_patterns = [
    path("", runs.run_list, name="runs"),
    path("runs/updates.json", runs.run_list_updates, name="runs-updates"),
    path("runs/bulk/", run_actions.run_bulk_view, name="runs-bulk"),
    path("runs/<str:run_id>/", runs.run_show, name="run"),
    path("runs/<str:run_id>/timeline.json", runs.run_timeline_json, name="run-timeline"),
    path("runs/<str:run_id>/events.json", runs.run_events_json, name="run-events"),
    path("runs/<str:run_id>/steps/<int:position>.json", runs.run_step_json, name="run-step"),
    path("runs/<str:run_id>/checkpoint.json", runs.run_checkpoint_json, name="run-checkpoint"),
    path("runs/<str:run_id>/cancel/", run_actions.run_cancel_view, name="run-cancel"),
    path("runs/<str:run_id>/replay/", run_actions.run_replay_view, name="run-replay"),
    path("tasks/", tasks.task_list, name="tasks"),
    path("tasks/<str:task_id>/test/", tasks.task_test, name="task-test"),
    path("waitpoints/", pages.waitpoint_list, name="waitpoints"),
    path("waitpoints/<str:waitpoint_id>/decide/", pages.waitpoint_decide, name="waitpoint-decide"),
    # Queues, schedules, secrets and API keys pages come with their own work (issue 5);
    # add their routes here and their entries in templates/console/_nav.html.
]


urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include((console_patterns, "console"))),
    path("api/", api.urls),
]
