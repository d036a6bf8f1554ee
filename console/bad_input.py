"""Refuse input PostgreSQL cannot store before any view runs: NUL characters in the URL or a form."""
from __future__ import annotations

from collections.abc import Callable

from django.db import DataError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from stepwise.console.views.feedback import wants_json


def _holds_nul(request: HttpRequest) -> str:
    """Return where a request carries a NUL character ("the URL", "the query string", "the form"), or ""."""
    if "\x00" in request.path:
        return "the URL"
    if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
        return "the query string"
    if request.method == "POST" and any(
        "\x00" in key or any("\x00" in v for v in values) for key, values in request.POST.lists()
    ):
        return "the form"
    return ""


def _refused(request: HttpRequest, message: str) -> HttpResponse:
    if wants_json(request) or request.path.startswith("/api/"):
        return JsonResponse({"ok": False, "message": message, "detail": message}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


class BadInputMiddleware:
    """Answer 400 naming the problem, instead of a server error from the database, and store nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = _holds_nul(request)
        if where:
            return _refused(request, f"{where} holds a NUL character (%00), which cannot be stored")
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Refuse values the database rejects (out-of-range numbers, text it cannot hold) as bad input."""
        if isinstance(exception, DataError):
            return _refused(request, f"a value cannot be stored: {str(exception).splitlines()[0]}")
        return None
