"""Fixtures of API tests: environments and an authenticated client per environment."""
from __future__ import annotations

import pytest
from django.test import Client

from stepwise.tasks.access import SCOPES
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure


class ApiClient:
    """A Django test client that sends a bearer API key and JSON bodies."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.client = Client()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def get(self, url: str, **params):
        return self.client.get(url, params, headers=self._headers())

    def post(self, url: str, body=None, **kwargs):
        return self.client.post(url, body if body is not None else {}, content_type="application/json",
                                headers=self._headers(), **kwargs)

    def put(self, url: str, body):
        return self.client.put(url, body, content_type="application/json", headers=self._headers())

    def patch(self, url: str, body):
        return self.client.patch(url, body, content_type="application/json", headers=self._headers())

    def delete(self, url: str):
        return self.client.delete(url, headers=self._headers())


@pytest.fixture
def environments(db):
    environments_ensure()


@pytest.fixture
def api(environments) -> ApiClient:
    """A client holding a fresh dev API key with every scope."""
    return ApiClient(api_key_create(environment="dev", name="tests", scopes=SCOPES).secret)


@pytest.fixture
def prod_api(environments) -> ApiClient:
    """A client holding a fresh prod API key with every scope."""
    return ApiClient(api_key_create(environment="prod", name="tests", scopes=SCOPES).secret)


@pytest.fixture
def live_api(live) -> ApiClient:
    """A dev API client on committed data, with the shared real workers running."""
    environments_ensure()
    return ApiClient(api_key_create(environment="dev", name="live tests", scopes=SCOPES).secret)
