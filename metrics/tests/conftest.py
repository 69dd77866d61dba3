"""Fixtures for the server's tests (pytest finds them here; tests never import fixtures)."""

from __future__ import annotations

import pytest

from metrics import clusters
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
    clusters.clear_cache()
    yield
    writer.clear_cache()
    ingest_auth.clear_cache()
    clusters.clear_cache()


@pytest.fixture
def ingest_token(db) -> str:
    return create_token("collector-test", ApiToken.Scope.INGEST)[1]
