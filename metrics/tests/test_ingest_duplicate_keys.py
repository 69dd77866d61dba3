"""A body with a key twice in one object is refused naming its path (metrics/ingest/duplicates.py)."""

from __future__ import annotations

import json

import pytest

from metrics.models import Node, PodSample
from metrics.tests.factories import NodeBatches, tick
from metrics.tests.ingest_helpers import post

pytestmark = pytest.mark.django_db


def body_with(old: str, new: str) -> bytes:
    text = json.dumps(NodeBatches("worker-1", pods=3, seed=2).batch(tick(30)))
    assert old in text
    return text.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        # The issue's own: the negative value first, the valid one wins in a lax parser.
        ('"cpu_seconds": ', '"cpu_seconds": -5, "cpu_seconds": ', "node_usage.cpu_seconds"),
        ('"node": ', '"node": "evil", "node": ', "node"),
        ('"cpu_capacity_cores": 16.0', '"cpu_capacity_cores": 1e9, "cpu_capacity_cores": 16.0', "node_usage.cpu_capacity_cores"),
        ('"app.kubernetes.io/name": ', '"app.kubernetes.io/name": "x", "app.kubernetes.io/name": ', 'pods[0].labels["app.kubernetes.io/name"]'),
        ('"ok": true', '"ok": false, "ok": true', 'collector.sources["cgroup"].ok'),
        # Spaced colons cannot hide one.
        ('"cpu_seconds": ', '"cpu_seconds" \n:\t-5, "cpu_seconds" : ', "node_usage.cpu_seconds"),
        # Nor an escape that spells the same key.
        ('"image": ', '"im\\u0061ge": "x", "image": ', "pods[0].containers[0].image"),
    ],
)
def test_a_duplicate_key_is_refused_naming_its_path(client, ingest_token, old, new, path):
    response = post(client, ingest_token, body_with(old, new))

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {path: ["Duplicate key: the object has this key more than once."]}
    assert not Node.objects.exists()


def test_a_body_whose_strings_hold_escaped_quotes_and_colons_is_stored(client, ingest_token):
    # '":' inside a string takes the exact path, which finds no duplicate.
    body = body_with('"warnings": []', '"warnings": ["a \\": b", "c\\" : d"]')

    assert post(client, ingest_token, body).status_code == 201
    assert PodSample.objects.count() == 3


def test_a_gzipped_body_is_checked_too(client, ingest_token):
    import gzip

    body = gzip.compress(body_with('"cpu_seconds": ', '"cpu_seconds": -5, "cpu_seconds": '))

    response = post(client, ingest_token, body, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert "node_usage.cpu_seconds" in response.json()["errors"]
