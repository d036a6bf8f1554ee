"""The URLs of this repository's own project: Django's admin beside the console and API at the root."""
from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from stepwise.console.views.signin import sign_in_throttled

urlpatterns = [
    path("admin/login/", sign_in_throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("", include("stepwise.console.urls")),
]
