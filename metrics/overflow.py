"""Stored numbers whose arithmetic overflows answer 422 naming the cause, never a 500.

Ingest bounds every number (metrics/ingest/rules.py), but a row written before those bounds or
around ingest can make a sum overflow double precision or bigint in a series, a rollup view or a
list (PostgreSQL raises a DataError: "value out of range: overflow"). The request was fine, and
retrying will not help: the answer says which data is at fault so an operator can remove it.
"""

from __future__ import annotations

import logging
from typing import Callable

import psycopg
from django import db
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)

DATA_ERRORS: tuple[type[BaseException], ...] = (db.DataError, psycopg.DataError)

MESSAGE = (
    "Stored samples in this range hold values whose sums overflow (written before ingest bounded "
    "them); narrow the window, or delete those samples (the rollup refresh lists the buckets)."
)


class DataOverflowMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATA_ERRORS):
            return None
        log.error("stored data overflowed for %s %s: %s", request.method, request.path, exception)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": MESSAGE, "errors": {"data": [MESSAGE]}}, status=422)
        return HttpResponse(MESSAGE + "\n", status=422, content_type="text/plain; charset=utf-8")
