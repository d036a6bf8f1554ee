"""Who calls the API and whether they may: an API key (bearer header) or a console session, in one environment.

Every operation names the capability it needs (``auth=READ``, ``auth=OPERATE``...); the API's
default is ``ADMIN``, so an endpoint that forgets to say is refused to all but admins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from stepwise.console.failed_attempts import API_KEY, client_address, failed_attempt_record, failed_attempts_check
from stepwise.runs.realtime.tokens import PREFIX as PUBLIC_TOKEN_PREFIX
from stepwise.tasks.access import Capability, may
from stepwise.tasks.apikeys import api_key_authenticate
from stepwise.tasks.audit import Actor, audit_record
from stepwise.tasks.services import environment_exists

ENVIRONMENT_HEADER = "Stepwise-Environment"


@dataclass(frozen=True)
class Principal:
    """The caller of one API request and the environment every call is scoped to."""

    environment: str
    api_key_id: int | None = None
    user_id: int | None = None
    # Who acted, as recorded on what the call changes (e.g. a waitpoint's completed_by).
    actor: str = ""
    holder: Any = None  # the ApiKey or the user, as stepwise.tasks.access.may asks about it

    @property
    def audit_actor(self) -> Actor:
        """Return the caller as the audit log records it."""
        return Actor(name=self.actor, via="api", user_id=self.user_id, api_key_id=self.api_key_id)


def api_audit(request: HttpRequest, action: str, *, target: Any = "", data: dict | None = None) -> None:
    """Record a change made through the API in the caller's environment, in the caller's name."""
    principal: Principal = request.auth
    audit_record(actor=principal.audit_actor, action=action, environment=principal.environment, target=target,
                 data=data)


def _refuse_unless_allowed(principal: Principal, capability: Capability) -> Principal:
    if not may(principal.holder, principal.environment, capability):
        who = "this API key" if principal.api_key_id else f"user '{principal.actor}'"
        raise HttpError(403, f"{who} may not do this in environment '{principal.environment}': "
                             f"it needs the '{capability}' {'scope' if principal.api_key_id else 'capability'}")
    return principal


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer sk_<env>_...``; never a query parameter."""

    def __init__(self, capability: Capability) -> None:
        super().__init__()
        self.capability = capability

    def __call__(self, request: HttpRequest) -> Principal | None:
        # Overridden so a malformed header is never written to the logs.
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if token.startswith(PUBLIC_TOKEN_PREFIX):
            raise HttpError(401, "a public token (pt_...) reads only the streams /api/runs/stream and "
                                 "/api/runs/<id>/events/stream; this endpoint needs an API key (sk_...)")
        # Guessing keys is throttled per client (stepwise.console.failed_attempts); a refusal raises a 429.
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
        principal = Principal(environment=key.environment_id, api_key_id=key.id, actor=actor, holder=key)
        return _refuse_unless_allowed(principal, self.capability)


class ConsoleSessionAuth(APIKeyCookie):
    """A logged-in console user; unsafe methods must carry a valid CSRF token.

    The environment comes from the ``Stepwise-Environment`` header (default ``dev``); the user's
    role in it decides what they may do.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, capability: Capability) -> None:
        super().__init__(csrf=False)
        self.capability = capability

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
        principal = Principal(environment=environment, user_id=user.id, actor=user.get_username(), holder=user)
        return _refuse_unless_allowed(principal, self.capability)


def needs(capability: Capability) -> list:
    """Return the auth of an operation that needs ``capability`` in the caller's environment."""
    return [ApiKeyAuth(capability), ConsoleSessionAuth(capability)]


READ = needs(Capability.READ)
TRIGGER = needs(Capability.TRIGGER)
OPERATE = needs(Capability.OPERATE)
ADMIN = needs(Capability.ADMIN)
