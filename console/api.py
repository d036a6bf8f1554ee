"""The REST API: one NinjaAPI collecting the routers of runs and tasks, mounted at /api/."""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.parser import Parser

from stepwise.console.api_auth import ADMIN, ApiKeyAuth
from stepwise.console.failed_attempts import TooManyFailedAttempts
from stepwise.console.views.access import login_required
from stepwise.runs.api import router as runs_router
from stepwise.runs.bulk import BulkActionNotFound
from stepwise.runs.engine.checkpoints import json_parse
from stepwise.runs.engine.errors import InvalidJson, PayloadTooLarge, StepwiseError
from stepwise.runs.idempotency import IdempotencyKeyNotFound
from stepwise.runs.realtime.tokens import OutOfScope, PublicTokenRefused
from stepwise.runs.services import RunAlreadyFinished, RunNotFound
from stepwise.runs.triggers import Throttled
from stepwise.runs.waits import CallbackRefused, WaitpointAlreadyResolved, WaitpointNotFound
from stepwise.runs.waits_api import router as waits_router
from stepwise.tasks.access import Capability
from stepwise.tasks.alerts import AlertRuleNotFound
from stepwise.tasks.alerts_api import router as alerts_router
from stepwise.tasks.api import router as tasks_router
from stepwise.tasks.api import webhooks_router
from stepwise.tasks.apikeys import ApiKeyNotFound, ScopeNotAllowed
from stepwise.tasks.environments import EnvironmentPauseRefused
from stepwise.tasks.queues import QueueChangeRefused, QueueNotFound
from stepwise.tasks.registry import UnknownTask
from stepwise.tasks.schedules import ScheduleNotFound
from stepwise.tasks.secrets import SecretNotFound
from stepwise.tasks.webhooks import WebhookRefused, WebhookSecretNotFound


class StoredJsonParser(Parser):
    """Parse request bodies as a run can store them: no NaN or Infinity, NUL, deep nesting or huge numbers."""

    def parse_body(self, request: HttpRequest) -> Any:
        return json_parse(request.body, what="the request body")


def docs_access(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve the OpenAPI document and its browser to a console user or an API key only (unless
    STEPWISE_API_DOCS_PUBLIC): they map every endpoint for whoever reads them."""
    signed_in = login_required(view)

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.STEPWISE_API_DOCS_PUBLIC:
            return view(request, *args, **kwargs)
        try:
            if ApiKeyAuth(Capability.READ)(request) is not None:
                return view(request, *args, **kwargs)
        except TooManyFailedAttempts as exc:
            return too_many_failed_attempts(request, exc)
        return signed_in(request, *args, **kwargs)

    return guarded


api = NinjaAPI(
    title="Stepwise API",
    version="1",
    description=(
        "Trigger and follow durable runs; send events and complete waitpoints; "
        "manage queues, schedules, secrets and API keys."
    ),
    # Deny by default: an operation that does not name what it needs is for admins only.
    auth=ADMIN,
    urls_namespace="api",
    parser=StoredJsonParser(),
    docs_decorator=docs_access,
)
api.add_router("/", runs_router)
api.add_router("/", waits_router)
api.add_router("/", tasks_router)
api.add_router("/", alerts_router)
api.add_router("/webhooks", webhooks_router)

NOT_FOUND = (RunNotFound, UnknownTask, QueueNotFound, ScheduleNotFound, SecretNotFound, ApiKeyNotFound,
             WebhookSecretNotFound, WaitpointNotFound, IdempotencyKeyNotFound, AlertRuleNotFound,
             BulkActionNotFound)
ALREADY_FINAL = (RunAlreadyFinished, WaitpointAlreadyResolved, QueueChangeRefused, EnvironmentPauseRefused)


def error_status(exc: Exception) -> int:
    """Return the HTTP status of a domain error."""
    if isinstance(exc, NOT_FOUND):
        return 404
    if isinstance(exc, ALREADY_FINAL):
        return 409
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, WebhookRefused):
        return 401
    if isinstance(exc, Throttled):
        return 429
    if isinstance(exc, ScopeNotAllowed | OutOfScope):
        return 403
    if isinstance(exc, PublicTokenRefused | CallbackRefused):
        return 401
    return 400


@api.exception_handler(StepwiseError)
@api.exception_handler(UnknownTask)
def domain_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Turn a domain error into a 4xx with the error's own message."""
    response = api.create_response(request, {"detail": str(exc), "error": type(exc).__name__},
                                   status=error_status(exc))
    if isinstance(exc, Throttled):
        response["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


@api.exception_handler(DataError)
def data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
    """Refuse values PostgreSQL cannot store (NUL characters, out-of-range numbers) as bad input."""
    detail = f"a value cannot be stored: {str(exc).splitlines()[0]}"
    return api.create_response(request, {"detail": detail, "error": "DataError"}, status=400)


@api.exception_handler(RequestDataTooBig)
def request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    """Refuse a body over DATA_UPLOAD_MAX_MEMORY_SIZE as too large, in the shape of domain errors."""
    detail = f"the request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
    return api.create_response(request, {"detail": detail, "error": "PayloadTooLarge"}, status=413)


@api.exception_handler(TooManyFailedAttempts)
def too_many_failed_attempts(request: HttpRequest, exc: TooManyFailedAttempts) -> HttpResponse:
    """Refuse a client that failed too often with 429 and when to try again."""
    response = api.create_response(request, {"detail": str(exc), "error": "TooManyFailedAttempts"}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Keep ninja's HTTP errors in the same shape as domain errors."""
    # ninja wraps a body the parser refused in "Cannot parse request body": say what is wrong instead.
    if isinstance(exc.__cause__, InvalidJson):
        return api.create_response(request, {"detail": str(exc.__cause__), "error": "InvalidJson"}, status=400)
    return api.create_response(request, {"detail": str(exc.message)}, status=exc.status_code)
