"""drf-spectacular extensions: how the machine tokens appear in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "metrics.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "km_<prefix>_<secret>",
            "description": "A token from `manage.py createcollectortoken NAME` "
            "(`--scope read` for reading, the default ingest scope for collectors).",
        }


class IngestTokenScheme(ApiTokenScheme):
    # Ingest's cached variant of the same header and token format (metrics/ingest/auth.py).
    target_class = "metrics.ingest.auth.CachedTokenAuthentication"
    name = "collectorTokenAuth"


# Every error the API gives, by status, for operations whose view does not document it itself.
# DRF answers 400/401/403/404 as {"detail": ...} or {"field": [...]}; ingest as {"errors": ...};
# a database outage as both (metrics/outage.py).
_ERROR_COMPONENT = {
    "type": "object",
    "description": "`detail` for authentication, permission and not-found errors; the bad "
    "parameter's or field's name as key (or under `errors`) for invalid input.",
    "properties": {
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
_ERRORS = {
    "400": "Invalid query parameter (named), e.g. a bad `limit` or `cursor`.",
    "401": "No credentials, or an unknown or revoked token.",
    "403": "The credentials lack the scope this operation needs.",
    "404": "No such object.",
    "503": "The database is unavailable; retry after `Retry-After` seconds.",
}


def document_error_answers(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add each error answer an operation can give."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_COMPONENT
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, description in _ERRORS.items():
                if status == "404" and "{" not in path:
                    continue  # only an object addressed by the path can be missing
                if status in responses:
                    responses[status].setdefault("content", {"application/json": {"schema": ref}})
                    continue
                responses[status] = {"description": description, "content": {"application/json": {"schema": ref}}}
    return result
