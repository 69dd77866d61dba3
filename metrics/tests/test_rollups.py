"""Rollups are exact sums, include the newest data, and absorb late data without double counting.

Runs in whichever tier the test database was migrated for (apache with TimescaleDB, plain with
TIMESCALEDB=off, tsl where the TSL is present): the rollup relations read the same everywhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from metrics import backend, rollups
from metrics.rollup_schema import ENTITY, INVALIDATION_TABLE
from metrics.tests.factories import (
    MiB,
    make_node,
    make_node_samples,
    make_pod,
    make_pod_samples,
    reset_rollups,
)

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def empty_rollups() -> None:
    reset_rollups()


def fetch(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def series(relation: str, where: str, params: list[Any]) -> dict[datetime, dict[str, Any]]:
    return {r["bucket"]: r for r in fetch(f"SELECT * FROM {relation} WHERE {where} ORDER BY bucket", params)}


def recent_hour(hours_back: int = 2) -> datetime:
    """Start of a whole hour in the recent past: inside every tier's default refresh window."""
    return rollups.floor_to(timezone.now(), HOUR) - hours_back * HOUR


@pytest.fixture
def cluster() -> dict[str, Any]:
    """Pods of namespace `shop` on three nodes collected every 10 s, 15 s and 60 s."""
    n10 = make_node("node-10s")
    n15 = make_node("node-15s")
    n60 = make_node("node-60s")
    pods = {
        "web-a": make_pod(n10, "web-a", namespace="shop", deployment="web", cpu_limit_cores=1.0, memory_limit_bytes=256 * MiB),
        "web-b": make_pod(n15, "web-b", namespace="shop", deployment="web"),
        "web-c": make_pod(n60, "web-c", namespace="shop", deployment="web", cpu_limit_cores=2.0),
        "cron": make_pod(n15, "cron", namespace="shop"),
        "other": make_pod(n10, "other", namespace="other", deployment="web"),
    }
    return {"nodes": {10: n10, 15: n15, 60: n60}, "pods": pods}


def fill(cluster: dict[str, Any], start: datetime, end: datetime) -> None:
    pods = cluster["pods"]
    make_pod_samples(pods["web-a"], start, end, 10, cpu_cores=0.5, memory_bytes=100 * MiB, disk_read_bytes_per_second=1000)
    make_pod_samples(pods["web-b"], start, end, 15, cpu_cores=0.25, memory_bytes=200 * MiB, disk_read_bytes_per_second=3000)
    make_pod_samples(pods["web-c"], start, end, 60, cpu_cores=1.5, memory_bytes=50 * MiB)
    make_pod_samples(pods["cron"], start, end, 15, cpu_cores=0.1, memory_bytes=10 * MiB)
    make_pod_samples(pods["other"], start, end, 10, cpu_cores=4.0, memory_bytes=1000 * MiB)
    for interval, node in cluster["nodes"].items():
        make_node_samples(node, start, end, interval, cpu_cores=2.0, memory_bytes=8 * 1024 * MiB)


def test_namespace_and_deployment_cpu_are_exact_whatever_each_nodes_interval(cluster):
    start = recent_hour()
    fill(cluster, start, start + HOUR)
    rollups.refresh()

    shop = series("metrics_rollup_namespace_1m", "namespace = %s", ["shop"])
    web = series("metrics_rollup_deployment_1m", "namespace = %s AND deployment = %s", ["shop", "web"])
    assert sorted(shop) == [start + i * MINUTE for i in range(60)]
    for bucket in shop:
        # Cores used on average over the bucket = CPU-seconds / bucket length, exactly the sum
        # of the pods' rates although their samples are 10 s, 15 s and 60 s long.
        assert shop[bucket]["cpu_seconds"] / 60 == pytest.approx(0.5 + 0.25 + 1.5 + 0.1, rel=1e-12)
        assert web[bucket]["cpu_seconds"] / 60 == pytest.approx(0.5 + 0.25 + 1.5, rel=1e-12)
        assert shop[bucket]["samples"] == 6 + 4 + 1 + 4
        assert shop[bucket]["covered_seconds"] == pytest.approx(4 * 60)
        assert shop[bucket]["disk_read_bytes"] == pytest.approx((1000 + 3000) * 60)
    hour = series("metrics_rollup_deployment_1h", "namespace = %s AND deployment = %s", ["shop", "web"])
    assert list(hour) == [start]
    assert hour[start]["cpu_seconds"] / 3600 == pytest.approx(2.25, rel=1e-12)


def test_memory_is_rolled_up_as_byte_seconds(cluster):
    start = recent_hour()
    fill(cluster, start, start + HOUR)
    rollups.refresh()

    shop = series("metrics_rollup_namespace_1m", "namespace = %s", ["shop"])
    for row in shop.values():
        assert row["memory_working_set_byte_seconds"] / 60 == pytest.approx((100 + 200 + 50 + 10) * MiB, rel=1e-12)
        assert row["memory_working_set_max_bytes"] == 200 * MiB
    pod_a = cluster["pods"]["web-a"]
    pod = series("metrics_rollup_pod_1h", "pod_id = %s", [pod_a.pk])[start]
    # The time-weighted average of a pod over the bucket: byte-seconds / covered seconds.
    assert pod["memory_working_set_byte_seconds"] / pod["covered_seconds"] == pytest.approx(100 * MiB)


def test_limit_columns_count_only_samples_that_had_a_limit(cluster):
    start = recent_hour()
    fill(cluster, start, start + HOUR)
    rollups.refresh()

    web = series("metrics_rollup_deployment_1h", "namespace = %s AND deployment = %s", ["shop", "web"])[start]
    # web-a (0.5 of 1 core) and web-c (1.5 of 2 cores) have CPU limits; web-b has none.
    assert web["cpu_limited_seconds"] == pytest.approx((0.5 + 1.5) * 3600)
    assert web["cpu_limit_core_seconds"] == pytest.approx((1.0 + 2.0) * 3600)
    # Only web-a has a memory limit.
    assert web["memory_limited_byte_seconds"] == pytest.approx(100 * MiB * 3600)
    assert web["memory_limit_byte_seconds"] == pytest.approx(256 * MiB * 3600)


def test_node_rollups_carry_capacity_as_core_seconds(cluster):
    start = recent_hour()
    fill(cluster, start, start + HOUR)
    rollups.refresh()

    node = cluster["nodes"][15]
    row = series("metrics_rollup_node_1h", "node_id = %s", [node.pk])[start]
    assert row["samples"] == 240
    assert row["cpu_seconds"] / 3600 == pytest.approx(2.0)
    assert row["cpu_capacity_core_seconds"] == pytest.approx(8.0 * 3600)
    assert row["memory_total_byte_seconds"] / row["covered_seconds"] == pytest.approx(32 * 1024 * MiB)


def make_gpu_samples(node, start, end, interval):
    """One GPU on `node` with varying samples every `interval` seconds in [start, end)."""
    from metrics.models import GpuDevice, GpuSample

    device = GpuDevice.objects.create(
        node=node, uuid=f"GPU-test-{node.pk}", index=0, name="NVIDIA H100 80GB HBM3",
        memory_total_bytes=80 * 1024 * MiB, first_seen=start, last_seen=end,
    )
    rows, t = [], start
    while t < end:
        rows.append(GpuSample(
            device=device, node=node, time=t, interval_seconds=interval,
            gpu_utilization_percent=float(t.minute), gpu_memory_bytes=(t.minute + 1) * MiB,
            gpu_memory_total_bytes=80 * 1024 * MiB, gpu_power_watts=100.0 + t.second,
            gpu_temperature_celsius=40.0 + t.minute % 5,
        ))
        t += timedelta(seconds=interval)
    GpuSample.objects.bulk_create(rows)


def make_serving_samples(pod, start, end, interval):
    """vLLM serving samples of `pod` varying every `interval` seconds in [start, end)."""
    from metrics.models import ServingSample

    rows, t = [], start
    while t < end:
        rows.append(ServingSample(
            pod=pod, node_id=pod.node_id, namespace=pod.namespace, deployment=pod.deployment,
            model_server="vllm", time=t, interval_seconds=interval, requests_running=float(t.minute % 4),
            kv_cache_usage_percent=float(t.second), prompt_tokens=10 * t.minute, generation_tokens=t.second,
            requests_succeeded=t.minute % 3, ttft_seconds_sum=0.1 * (t.minute % 3), ttft_count=t.minute % 3,
            ttft_p95_seconds=0.01 * t.minute, restarted=t.minute == 7,
        ))
        t += timedelta(seconds=interval)
    ServingSample.objects.bulk_create(rows)


def test_an_hour_equals_the_sum_of_its_minutes(cluster):
    start = recent_hour(3)
    # Varying usage, so a wrong grouping could not hide behind constant rows.
    make_pod_samples(
        cluster["pods"]["web-a"], start, start + 2 * HOUR, 10,
        cpu_cores=lambda t: 0.1 + (t.minute % 7) / 10, memory_bytes=lambda t: (t.minute + 1) * MiB,
    )
    make_pod_samples(cluster["pods"]["web-b"], start, start + 2 * HOUR, 15, cpu_cores=lambda t: t.second / 60)
    make_node_samples(cluster["nodes"][10], start, start + 2 * HOUR, 10, cpu_cores=lambda t: t.minute / 10)
    make_gpu_samples(cluster["nodes"][10], start, start + 2 * HOUR, 10)
    make_serving_samples(cluster["pods"]["web-a"], start, start + 2 * HOUR, 10)
    rollups.refresh()

    for entity in ENTITY.values():
        keys = ", ".join(entity.key_names())
        columns = [c for c in entity.columns]
        sums = ", ".join(
            f"{'max' if c.finer.startswith('max(') else 'sum'}({c.name}) AS {c.name}"
            for c in columns
        )
        from_minutes = fetch(
            f"SELECT date_trunc('hour', bucket) AS bucket, {keys}, {sums} "
            f"FROM {entity.relation('1m')} WHERE bucket >= %s AND bucket < %s "
            f"GROUP BY 1, {keys} ORDER BY 1, {keys}",
            [start, start + 2 * HOUR],
        )
        hours = fetch(
            f"SELECT bucket, {keys}, {', '.join(c.name for c in columns)} FROM {entity.relation('1h')} "
            f"WHERE bucket >= %s AND bucket < %s ORDER BY 1, {keys}",
            [start, start + 2 * HOUR],
        )
        assert len(hours) == len(from_minutes) > 0, entity.name
        for expected, got in zip(from_minutes, hours):
            for name, value in expected.items():
                if isinstance(value, float):
                    assert got[name] == pytest.approx(value, rel=1e-9), (entity.name, name)
                else:
                    assert got[name] == value, (entity.name, name)


def test_the_newest_samples_are_visible_before_any_refresh(cluster):
    pod = cluster["pods"]["web-a"]
    hour_start = rollups.floor_to(timezone.now(), HOUR) - HOUR
    make_pod_samples(pod, hour_start, hour_start + 30 * MINUTE, 10, cpu_cores=0.5)
    rollups.refresh()
    # Samples from the current minute on lie after every tier's watermark.
    newest = rollups.floor_to(timezone.now(), MINUTE)
    make_pod_samples(pod, newest, newest + 3 * MINUTE, 10, cpu_cores=2.0)

    minutes = series("metrics_rollup_pod_1m", "pod_id = %s AND bucket >= %s", [pod.pk, newest])
    assert sorted(minutes) == [newest, newest + MINUTE, newest + 2 * MINUTE]
    assert all(row["cpu_seconds"] == pytest.approx(120.0) for row in minutes.values())
    hours = series("metrics_rollup_pod_1h", "pod_id = %s", [pod.pk])
    assert sum(row["cpu_seconds"] for row in hours.values()) == pytest.approx(30 * 60 * 0.5 + 3 * 60 * 2.0)
    namespace = series("metrics_rollup_namespace_1m", "namespace = %s AND bucket >= %s", ["shop", newest])
    assert namespace[newest]["cpu_seconds"] == pytest.approx(120.0)


def record_late(start: datetime, end: datetime, write: Any) -> None:
    """Write late samples the way ingest does: samples and their range in one transaction."""
    with transaction.atomic():
        write()
        rollups.record_ingested_range(connection, start, end)


def test_late_data_recomputes_exactly_the_affected_buckets(cluster):
    pod = cluster["pods"]["web-a"]
    start = recent_hour()
    # A collector lost its connection from :20 to :30 and replays its spool later.
    make_pod_samples(pod, start, start + 20 * MINUTE, 10, cpu_cores=0.5)
    make_pod_samples(pod, start + 30 * MINUTE, start + HOUR, 10, cpu_cores=0.5)
    rollups.refresh()
    before = series("metrics_rollup_pod_1m", "pod_id = %s", [pod.pk])
    assert len(before) == 50

    late_start, late_end = start + 20 * MINUTE, start + 30 * MINUTE
    record_late(late_start, late_end, lambda: make_pod_samples(pod, late_start, late_end, 10, cpu_cores=0.5))
    if backend.storage_tier() != "tsl":
        assert fetch(f"SELECT count(*) AS n FROM {INVALIDATION_TABLE}")[0]["n"] == 1
    result = rollups.refresh()
    if backend.storage_tier() != "tsl":
        assert result.recomputed == [(late_start, late_end)]
        assert fetch(f"SELECT count(*) AS n FROM {INVALIDATION_TABLE}")[0]["n"] == 0

    after = series("metrics_rollup_pod_1m", "pod_id = %s", [pod.pk])
    assert sorted(after) == [start + i * MINUTE for i in range(60)]
    assert all(row["samples"] == 6 and row["cpu_seconds"] == pytest.approx(30.0) for row in after.values())
    shop = series("metrics_rollup_namespace_1h", "namespace = %s", ["shop"])
    assert shop[start]["samples"] == 360
    assert shop[start]["cpu_seconds"] == pytest.approx(0.5 * 3600)


def test_late_data_for_a_bucket_already_materialized_is_not_counted_twice(cluster):
    pods = cluster["pods"]
    start = recent_hour()
    make_pod_samples(pods["web-a"], start, start + HOUR, 10, cpu_cores=0.5)
    rollups.refresh()
    # Another pod's samples for minute :10 arrive late into a bucket that already has rows.
    late = start + 10 * MINUTE
    record_late(late, late + MINUTE, lambda: make_pod_samples(pods["web-b"], late, late + MINUTE, 15, cpu_cores=1.0))
    rollups.refresh()
    rollups.refresh()  # a second refresh must change nothing

    web = series("metrics_rollup_deployment_1m", "namespace = %s AND deployment = %s", ["shop", "web"])
    assert web[late]["cpu_seconds"] == pytest.approx(30.0 + 60.0)
    assert web[late]["samples"] == 6 + 4
    assert web[late + MINUTE]["cpu_seconds"] == pytest.approx(30.0)
    hour = series("metrics_rollup_deployment_1h", "namespace = %s AND deployment = %s", ["shop", "web"])
    assert hour[start]["cpu_seconds"] == pytest.approx(0.5 * 3600 + 60.0)


def skip_in_tsl() -> None:
    if backend.storage_tier() == "tsl":
        pytest.skip("tier tsl has no application-kept threshold (TimescaleDB tracks invalidations)")


def test_samples_after_the_threshold_log_no_invalidation(cluster):
    skip_in_tsl()
    pod = cluster["pods"]["web-a"]
    start = recent_hour()
    make_pod_samples(pod, start, start + HOUR, 10)
    rollups.refresh()
    newest = rollups.floor_to(timezone.now(), MINUTE) + MINUTE
    record_late(newest, newest + MINUTE, lambda: make_pod_samples(pod, newest, newest + MINUTE, 10))
    assert fetch(f"SELECT count(*) AS n FROM {INVALIDATION_TABLE}")[0]["n"] == 0


def test_refresh_since_rebuilds_buckets_from_raw(cluster):
    pod = cluster["pods"]["web-a"]
    start = recent_hour()
    make_pod_samples(pod, start, start + HOUR, 10, cpu_cores=0.5)
    rollups.refresh()
    # Samples changed behind the rollups' back (no record_ingested_range): --since repairs it.
    # (TimescaleDB would notice by itself; the application-kept tiers need the forced range.)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE metrics_podsample SET cpu_seconds = 10 WHERE pod_id = %s", [pod.pk])
    rollups.refresh(since=start)
    minutes = series("metrics_rollup_pod_1m", "pod_id = %s", [pod.pk])
    assert all(row["cpu_seconds"] == pytest.approx(60.0) for row in minutes.values())


def test_refresh_refuses_to_run_inside_a_transaction():
    with transaction.atomic():
        with pytest.raises(RuntimeError, match="outside a transaction"):
            rollups.refresh()


def test_a_refresh_waits_for_an_ingest_in_flight_so_its_samples_are_not_skipped(cluster):
    """An ingest that read the old threshold (so logged nothing) must commit before the refresh
    reads raw data past that threshold, or its samples would never reach the rollups."""
    skip_in_tsl()
    import threading

    from django.db import connections

    pod = cluster["pods"]["web-a"]
    base = rollups.floor_to(timezone.now(), MINUTE) - 30 * MINUTE
    make_pod_samples(pod, base - 10 * MINUTE, base, 10, cpu_cores=0.5)
    rollups.refresh(now=base)  # threshold: base - 1 min
    outcome: dict[str, Any] = {}

    def refresh_in_background() -> None:
        try:
            outcome["result"] = rollups.refresh(now=base + 10 * MINUTE)
        finally:
            connections.close_all()

    with transaction.atomic():
        make_pod_samples(pod, base + MINUTE, base + 2 * MINUTE, 10, cpu_cores=1.0)
        rollups.record_ingested_range(connection, base + MINUTE, base + 2 * MINUTE)
        assert fetch(f"SELECT count(*) AS n FROM {INVALIDATION_TABLE}")[0]["n"] == 0
        worker = threading.Thread(target=refresh_in_background)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "the refresh moved the threshold under an open ingest"
    worker.join(timeout=30)
    assert "result" in outcome
    minute = series("metrics_rollup_pod_1m", "pod_id = %s AND bucket = %s", [pod.pk, base + MINUTE])
    assert minute[base + MINUTE]["cpu_seconds"] == pytest.approx(60.0)
    assert fetch(
        "SELECT count(*) AS n FROM metrics_rollup_pod_1m_mat WHERE pod_id = %s AND bucket = %s",
        [pod.pk, base + MINUTE],
    )[0]["n"] == 1
