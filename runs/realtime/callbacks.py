"""``POST /api/waitpoints/<id>/callback/<signature>``: an outside service completes a token with JSON.

The signature in the URL is the credential, so no answer of this view is logged with its path
(Django logs every 4xx with it): a refusal is logged here by waitpoint id alone.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from stepwise.console.api import error_status
from stepwise.runs.engine.checkpoints import json_parse
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.waits import waitpoint_callback_complete

logger = logging.getLogger(__name__)


def _answer(body: dict, status: int) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response._has_been_logged = True  # Django's request log would write the URL, signature and all
    return response


@csrf_exempt  # no cookie is involved: the URL's signature is the credential
def waitpoint_callback(request: HttpRequest, waitpoint_id: str, signature: str) -> JsonResponse:
    """Complete a token with the request's JSON body (once, before it times out)."""
    if request.method != "POST":
        return _answer({"detail": "POST the token's output as JSON"}, 405)
    try:
        body = request.body
        output = json_parse(body, what="the callback body") if body else None
        waitpoint = waitpoint_callback_complete(waitpoint_id=waitpoint_id, signature=signature, output=output)
    except RequestDataTooBig:
        detail = f"the request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        return _answer({"detail": detail, "error": "PayloadTooLarge"}, 413)
    except StepwiseError as exc:
        status = error_status(exc)
        logger.warning("token callback for waitpoint %s refused (%s): %s", waitpoint_id[:40], status, exc)
        return _answer({"detail": str(exc), "error": type(exc).__name__}, status)
    return _answer({"id": waitpoint.id, "status": waitpoint.status}, 200)
