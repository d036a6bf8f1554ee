"""Guessing is throttled: failed sign-ins per client and username, failed API keys per client, then 429."""
from __future__ import annotations

import pytest
from django.test import Client

from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def three_failures(settings):
    settings.STEPWISE_FAILED_ATTEMPTS_LIMIT = 3
    settings.STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS = 300


def sign_in(client: Client, username: str, password: str, url: str = "/login/"):
    return client.post(url, {"username": username, "password": password})


def test_sign_ins_after_too_many_failures_are_refused_with_retry_after_even_with_the_right_password(user):
    client = Client()
    assert [sign_in(client, "ada", "wrong").status_code for _ in range(3)] == [200, 200, 200]

    refused = sign_in(client, "ada", PASSWORD)

    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 301
    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_count_is_per_username_and_a_success_clears_it(user, django_user_model):
    django_user_model.objects.create_user(username="bob", password=PASSWORD, is_staff=True)
    client = Client()
    for _ in range(3):
        sign_in(client, "bob", "wrong")
    assert sign_in(Client(), "ada", "wrong").status_code == 200
    assert sign_in(Client(), "ada", PASSWORD).status_code == 302  # ada's one failure is forgotten
    assert sign_in(Client(), "ada", "wrong").status_code == 200
    assert sign_in(Client(), "ada", "wrong").status_code == 200
    assert sign_in(Client(), "bob", PASSWORD).status_code == 429


def test_the_admin_sign_in_is_throttled_too(user):
    client = Client()
    for _ in range(3):
        assert sign_in(client, "ada", "wrong", url="/admin/login/").status_code == 200
    assert sign_in(client, "ada", PASSWORD, url="/admin/login/").status_code == 429


def test_api_calls_after_too_many_wrong_keys_are_refused_with_retry_after_even_with_a_valid_key():
    environments_ensure()
    valid = api_key_create(environment="dev", name="ci").secret
    client = Client()
    wrong = [client.get("/api/runs", headers={"Authorization": "Bearer sk_dev_guess"}).status_code for _ in range(3)]
    assert wrong == [401, 401, 401]

    refused = client.get("/api/runs", headers={"Authorization": f"Bearer {valid}"})

    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 301
    assert "too many failed attempts" in refused.json()["detail"]
    other_client = Client(REMOTE_ADDR="10.0.0.7")
    assert other_client.get("/api/runs", headers={"Authorization": f"Bearer {valid}"}).status_code == 200
