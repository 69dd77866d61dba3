"""A bucket whose sums overflow is isolated by the rollup refresh; it never freezes the watermark.

Ingest refuses such values now (metrics/ingest/rules.py), so the rows are written straight into
the sample table, as rows stored before the bounds were.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from metrics import backend, rollups
from metrics.models import ApiToken, PodSample, RollupPoisonedBucket
from metrics.tests.factories import make_node, make_node_samples, make_pod, make_pod_samples, reset_rollups
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def empty_rollups() -> None:
    reset_rollups()


@pytest.fixture
def poisoned():
    """Two hours of namespace `shop`, and one minute in which two pods each claim 1e308 CPU-s."""
    if backend.storage_tier() == "tsl":
        pytest.skip("tier tsl refreshes continuous aggregates; the isolation is the tables' refresh")
    # Ending an hour before the current one, so that the samples tests add after `end` are in
    # the past whatever the minute the test runs at.
    start = rollups.floor_to(timezone.now(), HOUR) - 3 * HOUR
    end = start + 2 * HOUR
    node = make_node("worker-1")
    pods = [make_pod(node, f"web-{i}", namespace="shop", deployment="web") for i in range(2)]
    for pod in pods:
        make_pod_samples(pod, start, end, 10, cpu_cores=0.5)
    make_node_samples(node, start, end, 10)
    bad = start + 30 * MINUTE
    PodSample.objects.filter(time=bad).update(cpu_seconds=1e308)
    return {"start": start, "end": end, "bad": bad}


def _namespace_minutes(lo, hi):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT bucket, cpu_seconds FROM metrics_rollup_namespace_1m_mat "
            "WHERE namespace = 'shop' AND bucket >= %s AND bucket < %s ORDER BY bucket",
            [lo, hi],
        )
        return dict(cursor.fetchall())


def test_an_overflowing_minute_is_left_empty_and_the_refresh_moves_on(poisoned):
    start, end, bad = poisoned["start"], poisoned["end"], poisoned["bad"]

    result = rollups.refresh(now=end + 2 * MINUTE)

    assert result.materialized_1m[1] >= end  # not frozen at the bad minute
    assert result.materialized_1h[1] == end
    assert ("1m", "namespace", bad) in result.poisoned
    assert "POISONED" in result.summary()
    minutes = _namespace_minutes(start, end)
    assert bad not in minutes
    assert len(minutes) == 119  # every other minute is there, exact
    assert all(v == pytest.approx(2 * 0.5 * 60) for v in minutes.values())
    recorded = RollupPoisonedBucket.objects.get(resolution="1m", entity="namespace", bucket=bad)
    assert "out of range" in recorded.error


def test_the_next_runs_keep_advancing(poisoned):
    end = poisoned["end"]
    rollups.refresh(now=end + 2 * MINUTE)
    make_pod_samples(
        make_pod(make_node("worker-2"), "late-1", namespace="shop"), end, end + 10 * MINUTE, 10, cpu_cores=1.0
    )

    call_command("refreshrollups", "--once")

    assert rollups.state()["materialized_1m"] >= end + 8 * MINUTE


def test_deleting_the_bad_rows_and_refreshing_since_rebuilds_the_bucket(poisoned):
    end, bad = poisoned["end"], poisoned["bad"]
    rollups.refresh(now=end + 2 * MINUTE)

    PodSample.objects.filter(time=bad).update(cpu_seconds=5.0)
    result = rollups.refresh(now=end + 2 * MINUTE, since=bad)

    assert result.poisoned == []
    assert _namespace_minutes(bad, bad + MINUTE) == {bad: pytest.approx(2 * 0.5 * 50 + 2 * 5.0)}
    assert not RollupPoisonedBucket.objects.exists()


def test_a_series_over_overflowing_raw_data_answers_422_not_500(poisoned):
    # Before any refresh, the rollup views aggregate the raw rows on the fly and overflow.
    token = create_token("reader", ApiToken.Scope.READ)[1]
    reader = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    start, end = poisoned["start"], poisoned["end"]

    response = reader.get(
        "/api/namespaces/shop/", {"start": start.isoformat(), "end": end.isoformat(), "step": 3600}
    )

    assert response.status_code == 422, response.content
    assert "overflow" in response.json()["detail"]
