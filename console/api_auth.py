"""Who calls the API: an API key (bearer header) or a console session, each scoped to one environment."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from console.failed_attempts import API_KEY, client_address, failed_attempt_record, failed_attempts_check
from tasks.apikeys import api_key_authenticate
from tasks.services import environment_exists

ENVIRONMENT_HEADER = "Stepwise-Environment"


@dataclass(frozen=True)
class Principal:
    """The caller of one API request and the environment every call is scoped to."""

    environment: str
    api_key_id: int | None = None
    user_id: int | None = None
    # Who acted, as recorded on what the call changes (e.g. a waitpoint's completed_by).
    actor: str = ""


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer sk_<env>_...``; never a query parameter."""

    def __call__(self, request: HttpRequest) -> Principal | None:
        # Overridden so a malformed header is never written to the logs.
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        # Guessing keys is throttled per client (console.failed_attempts); a refusal raises a 429.
        failed_attempts_check(API_KEY, client_address(request))
        principal = self.authenticate(request, token.strip())
        if principal is None:
            failed_attempt_record(API_KEY, client_address(request))
        return principal

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        key = api_key_authenticate(token)
        if key is None:
            return None
        actor = f"api key {key.name[:100]} ({key.prefix}…)"  # fits completed_by (150)
        return Principal(environment=key.environment_id, api_key_id=key.id, actor=actor)


class ConsoleSessionAuth(APIKeyCookie):
    """A logged-in console user; unsafe methods must carry a valid CSRF token.

    The environment comes from the ``Stepwise-Environment`` header (default ``dev``).
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        super().__init__(csrf=False)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        user = getattr(request, "user", None)
        if key is None or user is None or not user.is_authenticated:
            return None
        # django-ninja exempts its views from the CSRF middleware: check it here, explicitly.
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE") and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check failed: send the csrftoken cookie's value in X-CSRFToken")
        environment = request.headers.get(ENVIRONMENT_HEADER, "dev")
        if not environment_exists(environment):
            raise HttpError(400, f"unknown environment '{environment}' in {ENVIRONMENT_HEADER}")
        return Principal(environment=environment, user_id=user.id, actor=user.get_username())
