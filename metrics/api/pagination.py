"""Cursor pagination: no page numbers, so no COUNT(*) and stable pages while data arrives."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class NameCursorPagination(CursorPagination):
    """Orders by the view's `cursor_ordering` (its first field should be nearly unique)."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    ordering = ("name",)

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        return tuple(getattr(view, "cursor_ordering", self.ordering))
