"""GPU reads: each device's newest sample (with the pods holding it), and per-device series.

Devices are the catalogue's `gpu` entity (metrics/catalogue.py): their points come from the same
machinery as every other series (metrics/series.py), from raw GPU samples spread exactly over any
step, or from the per-device 1m / 1h rollups for steps that are multiples of 60 s / 3600 s. A
device point carries only the GPU device metrics (FIELDS), not the node and pod ones.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from metrics import catalogue, series
from metrics.series import LATEST_LOOKBACK, Window

KIND = "gpu"
# The fields of a device point (and of a device's `usage`), in catalogue order, then coverage.
FIELDS = tuple(m.name for m in catalogue.metrics_of(KIND))

ATTRIBUTION_SQL = """
SELECT k.id, s.time, s.pod_id, s.namespace, s.pod_name, s.container, s.shared, s.pods
FROM unnest(%s::bigint[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT time, pod_id, namespace, pod_name, container, shared, pods FROM metrics_gpusample
    WHERE device_id = k.id AND time >= %s ORDER BY time DESC LIMIT 1
) s
"""


def _only_device_fields(point: dict[str, Any]) -> dict[str, Any]:
    out = {"time": point["time"]}
    out.update((name, point[name]) for name in FIELDS)
    out["coverage"] = point["coverage"]
    if "interval_seconds" in point:
        out["interval_seconds"] = point["interval_seconds"]
    return out


def latest(device_ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """device id -> {"usage": newest sample's figures, and who held the device then: "pod_id",
    "namespace", "pod_name", "container", "shared", "pods"}; a device silent for longer than
    LATEST_LOOKBACK is left out."""
    if not device_ids:
        return {}
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = series._latest_raw(KIND, device_ids, since)
    with connection.cursor() as cursor:
        cursor.execute(ATTRIBUTION_SQL, [sorted(device_ids), since])
        held = {row[0]: row[1:] for row in cursor.fetchall()}
    out: dict[int, dict[str, Any]] = {}
    for device_id, row in rows.items():
        usage = series.usage_from_sample(series.Entity(KIND, (device_id,)), row)
        _, pod_id, namespace, pod_name, container, shared, pods = held[device_id]
        out[device_id] = {
            "usage": _only_device_fields(usage),
            "pod_id": pod_id,
            "namespace": namespace,
            "pod_name": pod_name,
            "container": container,
            "shared": shared,
            # Django's raw cursor reads jsonb as text.
            "pods": json.loads(pods) if isinstance(pods, str) else pods,
        }
    return out


def device_series(device_ids: list[int], window: Window) -> dict[int, list[dict[str, Any]]]:
    """device id -> one point per bucket of the window (series.series_many: one query)."""
    if not device_ids:
        return {}
    entities = [series.Entity(KIND, (device_id,)) for device_id in device_ids]
    found = series.series_many(entities, window)
    return {
        device_id: [_only_device_fields(p) for p in points]
        for device_id, points in zip(device_ids, found)
    }
