from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("stepwise/", include("stepwise.console.urls")),  # Stepwise's console and REST API, under a prefix we chose
]
