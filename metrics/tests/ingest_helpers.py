"""Fixtures and a poster shared by the ingest tests."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from django.test import Client

from metrics.ingest import auth as ingest_auth
from metrics.ingest import writer
from metrics.models import ApiToken
from metrics.tokens import create_token


@pytest.fixture(autouse=True)
def _fresh_inventory_cache():
    # The caches are per process; ids and tokens from one test's (rolled back) database must not
    # leak into the next.
    writer.clear_cache()
    ingest_auth.clear_cache()
    yield
    writer.clear_cache()
    ingest_auth.clear_cache()


@pytest.fixture
def ingest_token(db) -> str:
    return create_token("collector-test", ApiToken.Scope.INGEST)[1]


def post(
    client: Client,
    token: str | None,
    batch: Any,
    *,
    gzipped: bool = False,
    content_type: str = "application/json",
    **headers: str,
):
    body = batch if isinstance(batch, bytes) else json.dumps(batch).encode()
    if gzipped:
        body = gzip.compress(body)
        headers.setdefault("HTTP_CONTENT_ENCODING", "gzip")
    if token is not None:
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
    return client.generic("POST", "/api/ingest/", body, content_type=content_type, **headers)
