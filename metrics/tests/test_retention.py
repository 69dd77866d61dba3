"""Retention removes raw samples and rollups older than their settings, and nothing else."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from metrics import backend, retention, rollups
from metrics.tests.factories import make_node, make_pod, make_pod_samples, reset_rollups

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def empty_rollups() -> None:
    reset_rollups()


def count(sql: str, params: list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def hour_ago(days: int) -> datetime:
    return rollups.floor_to(timezone.now() - days * DAY, HOUR)


@pytest.fixture
def pod():
    return make_pod(make_node(), "web-1", namespace="shop", deployment="web")


def skip_in_tsl() -> None:
    if backend.storage_tier() == "tsl":
        pytest.skip("tier tsl leaves retention to TimescaleDB's policies (tested below)")


def test_old_raw_samples_and_rollups_go_by_their_own_settings(pod):
    skip_in_tsl()
    for days in (40, 10, 1):
        make_pod_samples(pod, hour_ago(days), hour_ago(days) + 10 * timedelta(minutes=1), 10)
    rollups.refresh()

    with override_settings(RETENTION_RAW_DAYS=7, RETENTION_1M_DAYS=30, RETENTION_1H_DAYS=365):
        result = retention.apply()
    assert any(result.removed.values())
    raw = "SELECT count(*) FROM metrics_podsample WHERE time >= %s AND time < %s"
    assert count(raw, [hour_ago(40), hour_ago(40) + HOUR]) == 0
    assert count(raw, [hour_ago(10), hour_ago(10) + HOUR]) == 0
    assert count(raw, [hour_ago(1), hour_ago(1) + HOUR]) == 60
    minutes = "SELECT count(*) FROM metrics_rollup_pod_1m WHERE bucket >= %s AND bucket < %s"
    assert count(minutes, [hour_ago(40), hour_ago(40) + HOUR]) == 0
    assert count(minutes, [hour_ago(10), hour_ago(10) + HOUR]) == 10
    assert count(minutes, [hour_ago(1), hour_ago(1) + HOUR]) == 10
    assert count("SELECT count(*) FROM metrics_rollup_pod_1h") == 3

    with override_settings(RETENTION_1H_DAYS=20):
        retention.apply()
    assert count("SELECT count(*) FROM metrics_rollup_pod_1h WHERE bucket < %s", [hour_ago(20)]) == 0
    assert count("SELECT count(*) FROM metrics_rollup_pod_1h") == 2
    # The rollups of dropped raw data still answer for those days.
    assert count(
        "SELECT sum(samples) FROM metrics_rollup_namespace_1h WHERE namespace = 'shop' AND bucket = %s",
        [hour_ago(10)],
    ) == 60


def test_raw_samples_the_rollups_have_not_materialized_are_kept(pod):
    skip_in_tsl()
    make_pod_samples(pod, hour_ago(10), hour_ago(10) + HOUR, 60)
    # No refresh yet: these samples are the only copy of their minutes.
    retention.apply()
    assert count("SELECT count(*) FROM metrics_podsample") == 60
    rollups.refresh()
    retention.apply()
    assert count("SELECT count(*) FROM metrics_podsample") == 0
    assert count("SELECT sum(samples) FROM metrics_rollup_pod_1h") == 60


@pytest.mark.tsl
def test_tsl_retention_policies_follow_the_settings_and_drop_old_chunks(pod):
    if backend.storage_tier() != "tsl":
        pytest.skip("needs TimescaleDB with the TSL module")
    make_pod_samples(pod, hour_ago(10), hour_ago(10) + HOUR, 60)
    make_pod_samples(pod, hour_ago(1), hour_ago(1) + HOUR, 60)
    with override_settings(RETENTION_RAW_DAYS=5, RETENTION_1M_DAYS=30, RETENTION_1H_DAYS=365):
        result = retention.apply()
        assert result.removed["metrics_podsample"] == "drop_after 5 days"
        # The refresh policies must not reach back over dropped raw chunks.
        assert result.removed["metrics_rollup_pod_1m refresh"] == "start_offset 5 days"
        assert retention.apply().removed == {}  # already in line: nothing changes
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT job_id, config FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'metrics_podsample'"
        )
        job_id, config = cursor.fetchone()
        assert json.loads(config)["drop_after"] == "5 days"
        cursor.execute("CALL run_job(%s)", [job_id])
    assert count("SELECT count(*) FROM metrics_podsample WHERE time < %s", [hour_ago(5)]) == 0
    assert count("SELECT count(*) FROM metrics_podsample") == 60
    # Put the policy back as the migration made it, for the tests that follow.
    retention.apply()
