"""A database outage answers 503 with Retry-After, never Django's HTML 500.

Every view that touches the database (ingest, reads, the dashboard, the admin) raises
OperationalError or InterfaceError while PostgreSQL is down or restarting; the request itself was
fine, so the client should retry, and a collector's spool does. process_exception sees what a view
(and DRF, which re-raises what it cannot map) lets through. /readyz handles the error itself and
keeps saying 503 in plain text.
"""

from __future__ import annotations

import logging
from typing import Callable

import psycopg
from django import db
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)

# Django wraps the driver's errors in its own classes, but psycopg's can surface unwrapped
# (raised while a cursor is iterated outside Django's wrapper), so both families count.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    db.OperationalError,
    db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def outage_response(request: HttpRequest) -> HttpResponse:
    retry_after = str(settings.DATABASE_OUTAGE_RETRY_AFTER_SECONDS)
    message = "The database is unavailable; retry later."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message, "errors": {"database": [message]}}, status=503)
    else:
        response = HttpResponse(message + "\n", status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = retry_after
    response["Cache-Control"] = "no-store"
    return response


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OUTAGE_ERRORS):
            return None
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        # A broken connection must not be reused by this thread's next request.
        for conn in db.connections.all(initialized_only=True):
            if conn.connection is not None and not conn.is_usable():
                conn.close()
        return outage_response(request)
