"""A batch whose interval overlaps one already stored for its node is refused (not only an
identical start); a retry of the very same batch stays a 200 duplicate (metrics/ingest/overlap.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from metrics.models import ContainerSample, NodeSample, PodSample
from metrics.tests.factories import NodeBatches, rfc3339, tick
from metrics.tests.ingest_helpers import post


def batch_at(batches: NodeBatches, end, interval: float):
    batch = batches.batch(end)
    batch["interval_seconds"] = interval
    batch["time"] = rfc3339(end)
    return batch


def counts() -> tuple[int, int, int]:
    return NodeSample.objects.count(), PodSample.objects.count(), ContainerSample.objects.count()


@pytest.mark.django_db
def test_the_issues_three_overlapping_batches_store_only_the_first(client, ingest_token):
    # End T interval 10, then end T interval 20, then end T+5 interval 10 (issue 8, item 5).
    batches = NodeBatches("worker-1", pods=2, seed=3)
    t = tick(60)
    assert post(client, ingest_token, batch_at(batches, t, 10.0)).status_code == 201
    stored = counts()

    for end, interval in ((t, 20.0), (t + timedelta(seconds=5), 10.0)):
        response = post(client, ingest_token, batch_at(batches, end, interval))
        assert response.status_code == 400, response.content
        errors = response.json()["errors"]
        assert set(errors) == {"time", "interval_seconds"}
        assert "overlaps" in errors["time"][0]

    assert counts() == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("offset", "interval"),
    [
        (-5, 10.0),  # starts inside the stored interval's second half, ends inside
        (0, 5.0),  # same end, starts inside
        (5, 20.0),  # covers the stored interval whole
        (-3, 2.0),  # inside it
        (10, 15.0),  # starts before the stored one ends, but its end is after
    ],
)
def test_any_overlap_is_refused(client, ingest_token, offset, interval):
    batches = NodeBatches("worker-1", pods=1, seed=3)
    t = tick(60)
    assert post(client, ingest_token, batch_at(batches, t, 10.0)).status_code == 201

    response = post(client, ingest_token, batch_at(batches, t + timedelta(seconds=offset), interval))

    assert response.status_code == 400, response.content
    assert NodeSample.objects.count() == 1


@pytest.mark.django_db
def test_touching_intervals_and_gaps_are_stored_and_an_earlier_one_fits_a_gap(client, ingest_token):
    batches = NodeBatches("worker-1", pods=1, seed=3)
    t = tick(120)
    for end in (t, t + timedelta(seconds=10), t + timedelta(seconds=40)):
        assert post(client, ingest_token, batch_at(batches, end, 10.0)).status_code == 201
    # Late: fills [t+10, t+30) exactly between the stored ones.
    assert post(client, ingest_token, batch_at(batches, t + timedelta(seconds=30), 20.0)).status_code == 201
    assert NodeSample.objects.count() == 4


@pytest.mark.django_db
def test_a_retry_of_the_same_batch_stays_a_duplicate(client, ingest_token):
    batches = NodeBatches("worker-1", pods=2, seed=3)
    t = tick(60)
    batch = batch_at(batches, t, 10.0)
    assert post(client, ingest_token, batch).status_code == 201
    assert post(client, ingest_token, batch_at(batches, t + timedelta(seconds=10), 10.0)).status_code == 201

    response = post(client, ingest_token, batch)

    assert (response.status_code, response.json()) == (200, {"stored": False, "duplicate": True})


@pytest.mark.django_db
def test_a_container_reaching_back_into_its_stored_sample_is_refused(client, ingest_token):
    batches = NodeBatches("worker-1", pods=2, seed=1)
    t = tick(60)
    assert post(client, ingest_token, batch_at(batches, t, 10.0)).status_code == 201
    later = batch_at(batches, t + timedelta(seconds=10), 10.0)
    later["pods"][0]["containers"][0]["interval_seconds"] = 15.0

    response = post(client, ingest_token, later)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["pods[0].containers[0]"]


@pytest.mark.django_db
def test_a_pod_reaching_back_over_a_gap_is_stored(client, ingest_token):
    # The pod missed the previous cycle: its 20 s reach back over no stored sample of its own.
    batches = NodeBatches("worker-1", pods=2, seed=1)
    t = tick(60)
    first = batch_at(batches, t, 10.0)
    first["pods"] = first["pods"][:1]
    assert post(client, ingest_token, first).status_code == 201
    later = batch_at(batches, t + timedelta(seconds=10), 10.0)
    later["pods"][1]["interval_seconds"] = 20.0

    assert post(client, ingest_token, later).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_batches_at_once_store_one(ingest_token):
    # Different starts, so the unique (node, time) cannot catch it: the node row lock and the
    # probe after it must.
    batches = NodeBatches("worker-1", pods=20, seed=4)
    t = tick(60)
    bodies = [batch_at(batches, t, 10.0), batch_at(batches, t + timedelta(seconds=5), 10.0)]
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def send(body) -> None:
        try:
            barrier.wait()
            statuses.append(post(Client(), ingest_token, body).status_code)
        finally:
            connection.close()

    for _ in range(3):
        NodeSample.objects.all().delete()
        PodSample.objects.all().delete()
        ContainerSample.objects.all().delete()
        statuses.clear()
        threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [201, 400]
        assert NodeSample.objects.count() == 1
