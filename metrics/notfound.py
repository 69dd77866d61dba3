"""404 for a path no route matches: JSON under /api/, Django's page elsewhere.

DRF answers JSON for what its views refuse, but a URL that matches no route at all (e.g.
`/api/alerts/0.5/`, whose id is not an integer) never reaches DRF: Django's default handler would
answer HTML to an API client that asked for JSON (found by schemathesis).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception or Exception())
