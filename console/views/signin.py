"""Sign-in pages (the console's and the admin's) with failed attempts throttled."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from stepwise.console.failed_attempts import (
    SIGN_IN,
    TooManyFailedAttempts,
    client_address,
    failed_attempt_record,
    failed_attempts_check,
    failed_attempts_clear,
)


def sign_in_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse a sign-in with 429 after too many failures for this client and username; count failures."""

    @wraps(view)
    def throttled(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        who = f"{client_address(request)} {request.POST.get('username', '').strip().lower()}"
        try:
            failed_attempts_check(SIGN_IN, who)
        except TooManyFailedAttempts as exc:
            response = render(request, "console/login.html", {
                "form": AuthenticationForm(request), "next": request.POST.get("next", ""),
                "locked_out": f"Too many failed sign-ins: try again in {exc.retry_after} seconds.",
            }, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        response = view(request, *args, **kwargs)
        if request.user.is_authenticated:
            failed_attempts_clear(SIGN_IN, who)
        elif response.status_code == 200:  # the form shown again: wrong username or password
            failed_attempt_record(SIGN_IN, who)
        return response

    return throttled
