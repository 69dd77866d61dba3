"""JSON that never fails on a stored number: non-finite floats are written as null.

Ingest bounds every number (metrics/ingest/rules.py), so reads compute finite rates. Rows stored
before those bounds, or written around ingest, can still make a rate infinite (a tiny interval
divides into infinity), and strict JSON has no Infinity: rather than a 500 for every reader, the
answer says null ("unknown") there. The check runs only when the fast strict encoding fails.
"""

from __future__ import annotations

import math
from typing import Any

from rest_framework.renderers import JSONRenderer


def finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class FiniteJSONRenderer(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return super().render(finite(data), accepted_media_type, renderer_context)
