"""Ingest over Transfer-Encoding: chunked, through a real gunicorn (which de-chunks the body into
wsgi.input and sets no Content-Length), against the real test database."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
import requests

from metrics.models import ApiToken, NodeSample
from metrics.tests.factories import batch, tick
from metrics.tests.gunicorn_server import Gunicorn, database_url_of_test_db
from metrics.tokens import create_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CAP = 64 * 1024


@pytest.fixture
def server(tmp_path) -> Iterator[Gunicorn]:
    with Gunicorn(tmp_path / "gunicorn.log", database_url_of_test_db(),
                  args=["--workers", "1", "--threads", "2"],
                  env={"INGEST_MAX_BODY_BYTES": str(CAP)}) as running:
        yield running


def chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    # A generator makes requests send Transfer-Encoding: chunked without a Content-Length.
    for start in range(0, len(body), size):
        yield body[start:start + size]


def post_chunked(server: Gunicorn, token: str, body: bytes) -> requests.Response:
    return requests.post(f"{server.url}/api/ingest/", data=chunks(body), timeout=30,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_a_valid_chunked_batch_is_stored(server):
    token = create_token("chunked", ApiToken.Scope.INGEST)[1]
    body = json.dumps(batch("chunky-1", tick(), pods=3)).encode()
    assert len(body) < CAP
    response = post_chunked(server, token, body)
    assert response.status_code == 201, response.text
    assert response.json()["pods"] == 3
    assert NodeSample.objects.filter(node__name="chunky-1").count() == 1


def test_a_chunked_body_over_the_cap_is_refused_with_413_and_stores_nothing(server):
    token = create_token("chunked", ApiToken.Scope.INGEST)[1]
    body = json.dumps(batch("chunky-2", tick(), pods=3)).encode()
    body = body[:-1] + b', "padding": "' + b"x" * CAP + b'"}'
    response = post_chunked(server, token, body)
    assert response.status_code == 413
    assert "body" in response.json()["errors"]
    assert not NodeSample.objects.filter(node__name="chunky-2").exists()
