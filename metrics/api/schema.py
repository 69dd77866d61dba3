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
