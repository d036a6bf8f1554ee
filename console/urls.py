"""The console, its sign-in and the REST API, to include under any prefix: ``include("stepwise.console.urls")``."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from stepwise.console.api import api
from stepwise.console.views import (
    alerts,
    apikeys,
    audit,
    bulk_actions,
    environment_pause,
    members,
    pages,
    queues,
    run_actions,
    runs,
    schedules,
    secrets,
    tasks,
)
from stepwise.console.views.metrics import metrics_view
from stepwise.console.views.signin import sign_in_throttled

console_patterns = [
    path("", runs.run_list, name="runs"),
    path("runs/updates.json", runs.run_list_updates, name="runs-updates"),
    path("runs/bulk/", run_actions.run_bulk_view, name="runs-bulk"),
    path("runs/bulk/by-filter/", bulk_actions.bulk_by_filter_view, name="runs-bulk-by-filter"),
    path("runs/bulk/progress/", bulk_actions.bulk_progress_view, name="runs-bulk-progress"),
    path("runs/<str:run_id>/", runs.run_show, name="run"),
    path("runs/<str:run_id>/timeline.json", runs.run_timeline_json, name="run-timeline"),
    path("runs/<str:run_id>/events.json", runs.run_events_json, name="run-events"),
    path("runs/<str:run_id>/steps/<int:position>.json", runs.run_step_json, name="run-step"),
    path("runs/<str:run_id>/checkpoint.json", runs.run_checkpoint_json, name="run-checkpoint"),
    path("runs/<str:run_id>/export.<str:fmt>", runs.run_export_view, name="run-export"),
    path("runs/<str:run_id>/cancel/", run_actions.run_cancel_view, name="run-cancel"),
    path("runs/<str:run_id>/replay/", run_actions.run_replay_view, name="run-replay"),
    path("runs/<str:run_id>/idempotency-key/reset/", run_actions.run_idempotency_key_reset_view,
         name="run-idempotency-key-reset"),
    path("tasks/", tasks.task_list, name="tasks"),
    path("tasks/<str:task_id>/test/", tasks.task_test, name="task-test"),
    path("waitpoints/", pages.waitpoint_list, name="waitpoints"),
    path("waitpoints/<str:waitpoint_id>/decide/", pages.waitpoint_decide, name="waitpoint-decide"),
    path("events/send/", pages.event_send_view, name="event-send"),
    path("queues/", queues.queue_list_view, name="queues"),
    path("environment/pause/", environment_pause.environment_paused_view, {"paused": True}, name="environment-pause"),
    path("environment/resume/", environment_pause.environment_paused_view, {"paused": False},
         name="environment-resume"),
    path("queues/counts.json", queues.queue_counts_view, name="queue-counts"),
    # Queue names hold slashes ("task/<id>"): the path converter takes them whole.
    path("queues/<path:name>/limit/", queues.queue_limit_view, name="queue-limit"),
    path("queues/<path:name>/pause/", queues.queue_paused_view, {"paused": True}, name="queue-pause"),
    path("queues/<path:name>/resume/", queues.queue_paused_view, {"paused": False}, name="queue-resume"),
    path("schedules/", schedules.schedule_list_view, name="schedules"),
    path("schedules/<int:schedule_id>/", schedules.schedule_update_view, name="schedule-update"),
    path("schedules/<int:schedule_id>/delete/", schedules.schedule_delete_view, name="schedule-delete"),
    path("secrets/", secrets.secret_list_view, name="secrets"),
    path("secrets/<str:name>/delete/", secrets.secret_delete_view, name="secret-delete"),
    path("api-keys/", apikeys.api_key_list_view, name="api-keys"),
    path("api-keys/<int:key_id>/revoke/", apikeys.api_key_revoke_view, name="api-key-revoke"),
    path("members/", members.member_list_view, name="members"),
    path("members/<str:username>/remove/", members.member_remove_view, name="member-remove"),
    path("audit/", audit.audit_list_view, name="audit"),
    path("alerts/", alerts.alert_list_view, name="alerts"),
    path("alerts/<int:rule_id>/delete/", alerts.alert_delete_view, name="alert-delete"),
    path("alerts/<int:rule_id>/test/", alerts.alert_test_view, name="alert-test"),
]


urlpatterns = [
    # After signing in: the page asked for (?next=, if safe), else the console, whatever the project's
    # LOGIN_REDIRECT_URL (Django's default, /accounts/profile/, is a page most projects do not have).
    path("login/", sign_in_throttled(auth_views.LoginView.as_view(
        template_name="console/login.html", redirect_authenticated_user=True, next_page="console:runs")),
        name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics", metrics_view, name="metrics"),
    path("", include((console_patterns, "console"))),
    path("api/", include("stepwise.runs.realtime.urls")),  # streams first: they are not django-ninja operations
    path("api/", api.urls),
]
