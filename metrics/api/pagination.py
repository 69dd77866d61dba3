"""Cursor pagination: no page numbers, so no COUNT(*) and stable pages while data arrives."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request


class NameCursorPagination(CursorPagination):
    """Orders by the view's `cursor_ordering` (its first field should be nearly unique)."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    ordering = ("name",)

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        return tuple(getattr(view, "cursor_ordering", self.ordering))

    def get_page_size(self, request: Request) -> int:
        # DRF falls back to the default for a bad `limit`; a client that asked for -557 or
        # "abc" has a bug it should hear about, so it gets a 400 naming the parameter.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number from 1 to {self.max_page_size}."]})
        return min(size, self.max_page_size)

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except NotFound:
            # A malformed cursor is bad input, not a missing resource.
            raise ValidationError({self.cursor_query_param: [
                "Not a cursor this API gave out; follow the `next`/`previous` links."]}) from None
