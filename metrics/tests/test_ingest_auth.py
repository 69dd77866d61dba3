"""Who may POST /api/ingest/: only live tokens with the ingest scope."""

from __future__ import annotations

import pytest
from django.utils import timezone

from metrics.models import ApiToken, NodeSample
from metrics.tests.factories import NodeBatches, tick
from metrics.tests.ingest_helpers import post
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db


def batch():
    return NodeBatches("worker-1", pods=2, seed=1).batch(tick(30))


def test_no_token_gets_401(client):
    response = post(client, None, batch())

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert NodeSample.objects.count() == 0


@pytest.mark.parametrize(
    "header",
    ["Bearer km_000000000000_wrong", "Bearer not-a-token", "Bearer ", "Bearer km__x"],
)
def test_a_bad_token_gets_401(client, header):
    create_token("real")

    response = post(client, None, batch(), HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert NodeSample.objects.count() == 0


def test_a_wrong_secret_for_a_real_prefix_gets_401(client, ingest_token):
    _, prefix, _secret = ingest_token.split("_", 2)

    response = post(client, None, batch(), HTTP_AUTHORIZATION=f"Bearer km_{prefix}_guessed")

    assert response.status_code == 401


def test_a_revoked_token_gets_401(client, ingest_token):
    ApiToken.objects.update(revoked=timezone.now())

    response = post(client, ingest_token, batch())

    assert response.status_code == 401
    assert NodeSample.objects.count() == 0


def test_a_read_token_gets_403(client):
    _, read_token = create_token("reader", ApiToken.Scope.READ)

    response = post(client, read_token, batch())

    assert response.status_code == 403
    assert NodeSample.objects.count() == 0


def test_auth_is_checked_before_the_body(client):
    # An anonymous client learns nothing about what the endpoint would accept.
    response = post(client, None, b"{", content_type="text/plain")

    assert response.status_code == 401


def test_an_ingest_token_stores_and_marks_itself_used(client, ingest_token):
    response = post(client, ingest_token, batch())

    assert response.status_code == 201
    assert ApiToken.objects.get().last_used is not None


def test_a_revoked_token_is_refused_once_its_cached_verification_expires(client, ingest_token, monkeypatch):
    from metrics.ingest import auth as ingest_auth

    assert post(client, ingest_token, batch()).status_code == 201
    ApiToken.objects.update(revoked=timezone.now())
    # Within TOKEN_CACHE_SECONDS the verified token is still remembered (documented delay)...
    later = NodeBatches("worker-1", pods=2, seed=1).batch(tick(20))
    assert post(client, ingest_token, later).status_code == 201

    monkeypatch.setattr(ingest_auth.time, "monotonic", lambda: 1e12)  # ...and then no longer.
    latest = NodeBatches("worker-1", pods=2, seed=1).batch(tick(10))
    assert post(client, ingest_token, latest).status_code == 401


def test_a_bad_token_is_never_remembered(client, ingest_token):
    _, prefix, _secret = ingest_token.split("_", 2)
    for _ in range(2):
        response = post(client, None, batch(), HTTP_AUTHORIZATION=f"Bearer km_{prefix}_guessed")
        assert response.status_code == 401
