"""Fuzz every endpoint from the app's own OpenAPI document: no input may cause a server error."""
from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from ninja.responses import NinjaJSONEncoder

from stepwise.console.api import api
from stepwise.tasks.access import SCOPES
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure

# The document itself needs a console sign-in: read it from the API object, call the real application.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(api.get_openapi_schema(), cls=NinjaJSONEncoder)))
schema.app = get_wsgi_application()


@pytest.fixture
def bearer(db):
    """An API key; and, as Django's test client does, keep the test's connection open between requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    environments_ensure()
    yield {"Authorization": f"Bearer {api_key_create(environment='dev', name='fuzz', scopes=SCOPES).secret}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_causes_a_server_error(case, bearer):
    response = case.call(headers=bearer)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}"
