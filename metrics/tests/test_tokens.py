"""Machine tokens: createcollectortoken, digests only, scopes, revocation, last_used."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from metrics.models import ApiToken
from metrics.tests.factories import NodeBatches, tick
from metrics.tests.ingest_helpers import post
from metrics.tokens import LAST_USED_RESOLUTION, create_token, lookup_token, split_token

pytestmark = pytest.mark.django_db


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("createcollectortoken", *args, stdout=out)
    return out.getvalue().strip()


def test_createcollectortoken_prints_a_token_that_can_ingest(client):
    token = run_command("cluster-a")

    response = post(client, token, NodeBatches("worker-1", pods=2, seed=1).batch(tick(30)))

    assert response.status_code == 201
    stored = ApiToken.objects.get()
    assert stored.name == "cluster-a" and stored.scope == ApiToken.Scope.INGEST


def test_createcollectortoken_stores_only_a_digest_of_the_secret(client):
    token = run_command("cluster-a")
    _, prefix, secret = token.split("_", 2)

    stored = ApiToken.objects.get()
    assert stored.prefix == prefix
    assert stored.digest == hashlib.sha256(secret.encode()).hexdigest()
    columns = [str(v) for v in ApiToken.objects.values().get().values()]
    assert not any(secret in value or token in value for value in columns)


def test_tokens_are_long_random_and_distinct():
    first = run_command("a")
    second = run_command("b")

    assert first != second
    assert first.startswith("km_") and len(split_token(first)[1]) >= 40


def test_a_read_scope_token_cannot_ingest(client):
    token = run_command("dashboard", "--scope", "read")

    response = post(client, token, NodeBatches("worker-1", pods=1, seed=1).batch(tick(30)))

    assert ApiToken.objects.get().scope == ApiToken.Scope.READ
    assert response.status_code == 403


def test_a_second_token_with_the_same_name_is_refused():
    run_command("cluster-a")

    with pytest.raises(CommandError, match="already exists"):
        run_command("cluster-a")

    assert ApiToken.objects.count() == 1


def test_a_revoked_token_no_longer_authenticates():
    token_row, token = create_token("node-7")
    assert lookup_token(token) == token_row

    ApiToken.objects.filter(pk=token_row.pk).update(revoked=timezone.now())

    assert lookup_token(token) is None


@pytest.mark.parametrize("raw", ["", "km", "km_abc", "xx_abc_def", "km__secret", "km_abc_"])
def test_malformed_tokens_are_unknown(raw):
    create_token("node-7")

    assert lookup_token(raw) is None


def test_last_used_is_written_at_most_once_a_minute():
    token_row, token = create_token("node-7")
    lookup_token(token)
    first = ApiToken.objects.get().last_used
    assert first is not None

    lookup_token(token)
    assert ApiToken.objects.get().last_used == first

    ApiToken.objects.update(last_used=first - LAST_USED_RESOLUTION - timedelta(seconds=1))
    lookup_token(token)
    assert ApiToken.objects.get().last_used > first - LAST_USED_RESOLUTION
