"""GET /metrics: Prometheus metrics, for a bearer token (STEPWISE_METRICS_TOKEN) or a signed-in staff user."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stepwise.runs.metrics import registry


def _token_matches(request: HttpRequest) -> bool:
    token = settings.STEPWISE_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Answer the metrics in Prometheus's text format to a scraper holding the token, or to staff."""
    if not (_token_matches(request) or request.user.is_staff):
        response = HttpResponse(
            "metrics need 'Authorization: Bearer <STEPWISE_METRICS_TOKEN>' or a signed-in staff user\n",
            status=401, content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
