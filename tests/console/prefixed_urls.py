"""A project's URLs that include the console under a prefix of their own, as examples/shop_site does."""
from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("stepwise/", include("stepwise.console.urls"))]
