"""The OpenAPI document lists every answer, and bad paging parameters get a 400 naming them."""

from __future__ import annotations

import pytest
from django.test import Client

from metrics.models import ApiToken
from metrics.tests.read_helpers import make_node
from metrics.tokens import create_token


@pytest.fixture
def reader(db) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {create_token('reader', ApiToken.Scope.READ)[1]}")


@pytest.mark.parametrize("limit", ["-557", "0", "abc", "1.5", ""])
def test_a_bad_limit_is_refused_with_400_naming_it(reader, limit):
    make_node("n1")
    response = reader.get("/api/nodes/", {"limit": limit})
    assert response.status_code == 400
    assert "limit" in response.json()


def test_a_good_limit_still_pages(reader):
    make_node("n1"), make_node("n2")
    body = reader.get("/api/nodes/", {"limit": "1"}).json()
    assert len(body["results"]) == 1 and body["next"]


def test_an_invalid_cursor_is_refused_with_400_naming_it(reader):
    make_node("n1")
    response = reader.get("/api/nodes/", {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert "cursor" in response.json()


def test_every_operation_documents_its_error_answers(reader):
    schema = reader.get("/api/schema/", {"format": "json"}).json()
    assert "Error" in schema["components"]["schemas"]
    operations = [(path, op) for path, ops in schema["paths"].items() for op in ops.values()]
    assert len(operations) >= 10
    for path, operation in operations:
        codes = set(operation["responses"])
        assert {"400", "401", "403", "503"} <= codes, (path, codes)
        if "{" in path:
            assert "404" in codes, path
        for code in ("400", "401", "403"):
            assert "application/json" in operation["responses"][code]["content"], (path, code)
