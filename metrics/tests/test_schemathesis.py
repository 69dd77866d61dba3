"""schemathesis against /api/schema/: every documented operation, generated inputs, read and
ingest tokens, `time` made current so ingest cases reach the database. A bounded run (about a
minute here): no server error, and every answer conforms to the document (status code, content
type, headers, body schema).

Checks that judge the API's own refusals are left out: the schema cannot say that a batch's
numbers are bounded by its interval and node, or that a name must exist, so a schema-valid case
may well be (rightly) refused.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from metrics.ingest import auth as ingest_auth
from metrics.models import ApiToken
from metrics.tokens import create_token

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# Loaded from the application at collection: the schema view needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture(autouse=True)
def _keep_the_test_connection(db):
    # The application runs in process, on the test's database connection, which Django would
    # close after every request (Django's test client prevents it the same way).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(db) -> dict[str, str]:
    ingest_auth.clear_cache()
    return {
        "ingest": create_token("schemathesis-ingest", ApiToken.Scope.INGEST)[1],
        "read": create_token("schemathesis-read", ApiToken.Scope.READ)[1],
    }


@schema.parametrize()
@settings(
    max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_and_never_errs(case, tokens):
    ingest = case.operation.path == "/api/ingest/"
    if ingest and isinstance(case.body, dict):
        # Generated times are anywhere in history; a current one reaches the writer.
        case.body["time"] = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    token = tokens["ingest" if ingest else "read"]
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    case.validate_response(response, checks=CHECKS)
