"""How an action answers: JSON for the console's fetch calls, a flash message and redirect otherwise."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme


def next_url(request: HttpRequest, default: str) -> str:
    """Return the posted ``next`` page if it is on this site, else ``default`` (never an open redirect)."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    return wanted if _on_this_site(request, wanted) else default


def _on_this_site(request: HttpRequest, url: str) -> bool:
    # Django's own check: refuses "//evil.example", "https://evil.example", "/\\evil.example", "javascript:".
    return bool(url) and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )


def wants_json(request: HttpRequest) -> bool:
    """Tell whether the console's JavaScript sent this request."""
    return "application/json" in request.headers.get("Accept", "")


def action_done(request: HttpRequest, *, message: str, to: str, ok: bool = True, status: int = 200) -> HttpResponse:
    """Answer an action with its outcome: a toast for fetch calls, a flash message after a redirect otherwise."""
    if wants_json(request):
        return JsonResponse({"ok": ok, "message": message, "redirect": to}, status=status if ok else max(status, 400))
    (messages.success if ok else messages.error)(request, message)
    return redirect(to if _on_this_site(request, to) else "/")
