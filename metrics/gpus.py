"""GPU reads: each device's newest sample, and per-device series from the raw GPU samples.

No rollups of GPU samples exist yet, so series always read raw samples (kept RETENTION_RAW_DAYS)
and spread them over the step buckets exactly as metrics/series.py does: a sample counts in every
bucket its interval overlaps, in proportion to the overlap. All figures are gauges (means over a
sample's interval), so a point is each figure's time-weighted mean over the seconds of the bucket
that samples with that figure cover, and `coverage` is the share of the bucket any sample covers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from metrics.series import EPOCH, MAX_INTERVAL, LATEST_LOOKBACK, Window

# Per-sample gauges, in output order.
GAUGES = ("utilization_percent", "memory_used_bytes", "power_watts", "temperature_celsius")

LATEST_SQL = """
SELECT DISTINCT ON (device_id) device_id, time, interval_seconds, utilization_percent,
    memory_used_bytes, power_watts, temperature_celsius, pod_id, namespace, pod_name, container,
    shared, pods
FROM metrics_gpusample
WHERE device_id = ANY(%s) AND time >= %s
ORDER BY device_id, time DESC
"""


def latest(device_ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """device id -> its newest sample no older than LATEST_LOOKBACK (a silent device has none)."""
    if not device_ids:
        return {}
    since = (now or timezone.now()) - LATEST_LOOKBACK - MAX_INTERVAL
    names = ("time", "interval_seconds", *GAUGES, "pod_id", "namespace", "pod_name", "container", "shared", "pods")
    with connection.cursor() as cursor:
        cursor.execute(LATEST_SQL, [sorted(device_ids), since])
        rows = cursor.fetchall()
    out = {}
    cutoff = (now or timezone.now()) - LATEST_LOOKBACK
    for row in rows:
        sample = dict(zip(names, row[1:]))
        end = sample["time"] + timedelta(seconds=sample["interval_seconds"])
        if end < cutoff:
            continue
        if isinstance(sample["pods"], str):  # Django's raw cursor reads jsonb as text
            sample["pods"] = json.loads(sample["pods"])
        out[row[0]] = sample
    return out


def _spread_sql() -> str:
    """Parameters: step, epoch, device ids, start - MAX_INTERVAL, end, start, end."""
    sums = ", ".join(
        f"sum({g}::float8 * ov) AS {g}_sum, sum(CASE WHEN {g} IS NOT NULL THEN ov END) AS {g}_cov"
        for g in GAUGES
    )
    return (
        f"SELECT device_id, b, count(*) AS samples, sum(ov) AS covered, {sums}, "
        "max(memory_used_bytes) AS memory_used_max_bytes "
        "FROM (SELECT s.*, gb AS b, "
        "extract(epoch FROM least(s.time + s.interval_seconds * interval '1 second', gb + s.w0) "
        "- greatest(s.time, gb))::float8 AS ov "
        "FROM (SELECT *, %s * interval '1 second' AS w0, %s::timestamptz AS e0 FROM metrics_gpusample "
        "WHERE device_id = ANY(%s) AND time >= %s AND time < %s) s "
        "CROSS JOIN LATERAL generate_series(date_bin(s.w0, s.time, s.e0), "
        "s.time + (s.interval_seconds * interval '1 second') - interval '1 microsecond', s.w0) gb"
        ") x WHERE b >= %s AND b < %s GROUP BY device_id, b ORDER BY device_id, b"
    )


def series(devices: dict[int, int | None], window: Window) -> dict[int, list[dict[str, Any]]]:
    """device id -> one point per bucket of the window (empty buckets: coverage 0, nulls).

    `devices` maps each device id to its memory total (for memory_used_percent), or None.
    """
    if not devices:
        return {}
    params: list[Any] = [window.step, EPOCH, sorted(devices), window.start - MAX_INTERVAL, window.end,
              window.start, window.end]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # short reads; see metrics/series.py _fetch
        cursor.execute(_spread_sql(), params)
        rows = cursor.fetchall()
    sums: dict[tuple[int, datetime], tuple[Any, ...]] = {(r[0], r[1]): r[2:] for r in rows}
    step = timedelta(seconds=window.step)
    out: dict[int, list[dict[str, Any]]] = {}
    for device_id, memory_total in devices.items():
        points = []
        bucket = window.start
        while bucket < window.end:
            points.append(_point(bucket, window.step, sums.get((device_id, bucket)), memory_total))
            bucket += step
        out[device_id] = points
    return out


def _point(bucket: datetime, step: int, row: tuple[Any, ...] | None, memory_total: int | None) -> dict[str, Any]:
    point: dict[str, Any] = {"time": bucket, "samples": 0, "coverage": 0.0}
    point.update(dict.fromkeys(GAUGES))
    point["memory_used_percent"] = None
    point["memory_used_max_bytes"] = None
    if row is None:
        return point
    samples, covered, *rest = row
    point["samples"] = samples
    point["coverage"] = round(min(covered / step, 1.0), 6)
    for i, gauge in enumerate(GAUGES):
        total, cov = rest[2 * i], rest[2 * i + 1]
        if cov:
            point[gauge] = total / cov
    point["memory_used_max_bytes"] = rest[-1]
    if point["memory_used_bytes"] is not None:
        if memory_total:
            point["memory_used_percent"] = 100.0 * point["memory_used_bytes"] / memory_total
        point["memory_used_bytes"] = round(point["memory_used_bytes"])
    return point
