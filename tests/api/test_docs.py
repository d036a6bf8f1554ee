"""The API docs page works without internet: Swagger UI comes from our own static files."""
from __future__ import annotations

import re

from django.contrib.staticfiles import finders


def test_api_docs_load_swagger_ui_from_local_static_files(client, django_user_model):
    # The docs need a sign-in to the console.
    client.force_login(django_user_model.objects.create_superuser(username="reader"))
    response = client.get("/api/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert not re.search(r"(src|href)=[\"'](https?:)?//", page), "the docs page loads something from outside"
    assets = re.findall(r"(?:src|href)=[\"']/static/([^\"']+)[\"']", page)
    assert {"ninja/swagger-ui-bundle.js", "ninja/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert finders.find(asset), f"{asset} is referenced but not served"
    assert '"url": "/api/openapi.json"' in page
