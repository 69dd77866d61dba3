"""Content-Security-Policy on every response (Django 5.2 has no built-in CSP).

Scripts only from this origin: the dashboard loads metrics/core.js, pages.js and uPlot (static
files; the data a page needs is in data- attributes), and Swagger UI is served as the split view (its init script is a separate file), so no inline script is needed. Swagger UI
sets inline styles and shows data: images, hence those two allowances.
"""

from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", POLICY)
        return response
