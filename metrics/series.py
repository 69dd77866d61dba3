"""Time series and latest usage for nodes, pods, namespaces and Deployments.

Every query reads either the raw sample tables or the rollup relations
`metrics_rollup_<entity>_<1m|1h>`, which have the same names and columns in every storage tier
(docs/architecture.md), so nothing here asks which tier it runs on.

Both sources are reduced to the same set of sums per output bucket (the rollup columns), and one
function turns sums into a point. That keeps raw and rollup answers identical by construction:
a namespace's CPU over a bucket is the sum of its pods' CPU-seconds divided by the bucket's
length; a single pod's or node's is divided by the seconds it reported (its time-weighted average).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Iterable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)

# Steps a window is split into when the caller gives none: the smallest one giving at most
# TARGET_POINTS points. Every step from 60 s on is a multiple of 60 (served from the 1-minute
# rollups) and every step from 3600 s on a multiple of 3600 (served from the 1-hour rollups).
NICE_STEPS = (
    10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)
TARGET_POINTS = 300
MAX_POINTS = 10_000

# Lists show each item's newest sample no older than this; a silent pod shows no usage.
LATEST_LOOKBACK = timedelta(minutes=5)
# Namespaces and Deployments show their newest *complete* 1-minute bucket. A sample lands in the
# bucket its interval starts in and arrives when the interval ends, so a bucket is complete once
# the longest usual interval (60 s) has passed after its end.
COMPLETE_BUCKET_DELAY = timedelta(minutes=2)
LATEST_BUCKET_LOOKBACK = timedelta(minutes=15)

KINDS = ("node", "pod", "namespace", "deployment")
# Kinds whose values add up over many pods: divided by the bucket length, not by covered time.
AGGREGATE_KINDS = ("namespace", "deployment")

# The sums both sources are reduced to, in this order.
SUM_COLUMNS = (
    "samples",
    "covered_seconds",
    "cpu_seconds",
    "memory_working_set_byte_seconds",
    "disk_read_bytes",
    "disk_write_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "cpu_limited_seconds",
    "cpu_limit_core_seconds",
    "memory_limited_byte_seconds",
    "memory_limit_byte_seconds",
    "cpu_capacity_core_seconds",
    "memory_total_byte_seconds",
)
MAX_COLUMNS = ("memory_working_set_max_bytes", "max_interval_seconds")

# Raw samples reduced to rollup columns. Node samples carry capacities and no limits; pod
# samples carry limits and no capacities.
_RAW_SUMS_COMMON = {
    "samples": "count(*)",
    "covered_seconds": "sum(interval_seconds)",
    "cpu_seconds": "sum(cpu_seconds)",
    "memory_working_set_byte_seconds": "sum(memory_working_set_bytes * interval_seconds)",
    "disk_read_bytes": "sum(disk_read_bytes)::float8",
    "disk_write_bytes": "sum(disk_write_bytes)::float8",
    "net_rx_bytes": "sum(net_rx_bytes)::float8",
    "net_tx_bytes": "sum(net_tx_bytes)::float8",
    "memory_working_set_max_bytes": "max(memory_working_set_bytes)::float8",
    "max_interval_seconds": "max(interval_seconds)",
}
_RAW_SUMS_POD = {
    # As in metrics/rollup_schema.py: limits count only where the usage is known, so that
    # used / limit is a true percentage.
    "cpu_limited_seconds": "sum(CASE WHEN cpu_limit_cores IS NOT NULL THEN cpu_seconds END)",
    "cpu_limit_core_seconds": (
        "sum(CASE WHEN cpu_seconds IS NOT NULL THEN cpu_limit_cores * interval_seconds END)"
    ),
    "memory_limited_byte_seconds": (
        "sum(CASE WHEN memory_limit_bytes IS NOT NULL "
        "THEN memory_working_set_bytes * interval_seconds END)"
    ),
    "memory_limit_byte_seconds": (
        "sum(CASE WHEN memory_working_set_bytes IS NOT NULL "
        "THEN memory_limit_bytes::float8 * interval_seconds END)"
    ),
    "cpu_capacity_core_seconds": "NULL::float8",
    "memory_total_byte_seconds": "NULL::float8",
}
_RAW_SUMS_NODE = {
    "cpu_limited_seconds": "NULL::float8",
    "cpu_limit_core_seconds": "NULL::float8",
    "memory_limited_byte_seconds": "NULL::float8",
    "memory_limit_byte_seconds": "NULL::float8",
    "cpu_capacity_core_seconds": "sum(cpu_capacity_cores * interval_seconds)",
    "memory_total_byte_seconds": "sum(memory_total_bytes::float8 * interval_seconds)",
}

_RAW_TABLE = {
    "node": "metrics_nodesample",
    "pod": "metrics_podsample",
    "namespace": "metrics_podsample",
    "deployment": "metrics_podsample",
}
_KEY_COLUMNS = {
    "node": ("node_id",),
    "pod": ("pod_id",),
    "namespace": ("namespace",),
    "deployment": ("namespace", "deployment"),
}


class SeriesError(ValueError):
    """A request parameter that cannot be served; `param` names it for the 400 answer."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Entity:
    kind: str
    # Key column values in _KEY_COLUMNS order, e.g. (pod_id,) or ("shop", "web").
    key: tuple[Any, ...]
    # For pods and nodes: the node's capacity, to give percent of capacity (None when unknown).
    cpu_capacity_cores: float | None = None
    memory_capacity_bytes: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if len(self.key) != len(_KEY_COLUMNS[self.kind]):
            raise ValueError(f"{self.kind} needs key {_KEY_COLUMNS[self.kind]}")


@dataclass
class Window:
    start: datetime
    end: datetime
    step: int
    source: str  # "raw", "1m" or "1h"
    points: int = field(init=False)

    def __post_init__(self) -> None:
        self.points = int((self.end - self.start).total_seconds()) // self.step


def _retention(source: str) -> timedelta:
    days = {
        "raw": settings.RETENTION_RAW_DAYS,
        "1m": settings.RETENTION_1M_DAYS,
        "1h": settings.RETENTION_1H_DAYS,
    }[source]
    return timedelta(days=days)


def max_window_seconds() -> int:
    return int(_retention("1h").total_seconds())


def source_for_step(step: int) -> str:
    if step % 3600 == 0:
        return "1h"
    if step % 60 == 0:
        return "1m"
    return "raw"


def _floor(t: datetime, step: int) -> datetime:
    seconds = (t - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.floor(seconds / step) * step)


def _ceil(t: datetime, step: int) -> datetime:
    seconds = (t - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.ceil(seconds / step) * step)


def resolve_window(
    *,
    window: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    step: int | None = None,
    now: datetime | None = None,
    source: str | None = None,
) -> Window:
    """Turn request parameters into whole buckets and a source, or raise SeriesError.

    The window is widened to whole steps (start floored, end ceiled on multiples of the step
    counted from the UNIX epoch), so every point covers one full bucket.
    """
    now = now or timezone.now()
    if window is not None and (start is not None or end is not None):
        raise SeriesError("window", "Give either window or start/end, not both.")
    if window is not None:
        if window < 1:
            raise SeriesError("window", "Must be a positive number of seconds.")
        if window > max_window_seconds():
            raise SeriesError("window", _too_long())
        end = now
        start = now - timedelta(seconds=window)
    elif start is not None:
        end = end or now
        if start >= end:
            raise SeriesError("start", "Must be before end.")
    elif end is not None:
        raise SeriesError("start", "Required when end is given.")
    else:
        raise SeriesError("window", "Give window or start (and end).")
    assert start is not None and end is not None
    span = (end - start).total_seconds()
    if span > max_window_seconds():
        raise SeriesError("start", _too_long())

    if step is None:
        step = _auto_step(span, start, now)
    elif step < 1:
        raise SeriesError("step", "Must be a positive whole number of seconds.")
    elif step > max_window_seconds():
        raise SeriesError("step", f"Must be at most {max_window_seconds()} seconds.")
    src = source or source_for_step(step)
    if source is None and src == "1h" and start < now - _retention(src):
        raise SeriesError(
            "start", f"Nothing older than {_retention(src).days} days is kept (RETENTION_1H_DAYS)."
        )
    if source is None and start < now - _retention(src):
        needed = "60" if src == "raw" else "3600"
        raise SeriesError(
            "step",
            f"Data older than {_retention(src).days} days is kept only in coarser rollups; "
            f"use a step that is a multiple of {needed} seconds.",
        )
    result = Window(start=_floor(start, step), end=_ceil(end, step), step=step, source=src)
    if result.points > MAX_POINTS:
        raise SeriesError(
            "step", f"Too many points ({result.points}); at most {MAX_POINTS}. Use a larger step."
        )
    return result


def _too_long() -> str:
    return (
        f"The window may span at most {max_window_seconds()} seconds, the 1-hour rollups' "
        f"retention (RETENTION_1H_DAYS={settings.RETENTION_1H_DAYS})."
    )


def _auto_step(span: float, start: datetime, now: datetime) -> int:
    target = span / TARGET_POINTS
    for step in NICE_STEPS:
        if step >= target and start >= now - _retention(source_for_step(step)):
            return step
    return NICE_STEPS[-1]


# --- time series -------------------------------------------------------------------------------


def _where(entity: Entity) -> tuple[str, list[Any]]:
    cols = _KEY_COLUMNS[entity.kind]
    return " AND ".join(f"{c} = %s" for c in cols), list(entity.key)


def _raw_sql(entity: Entity) -> tuple[str, list[Any]]:
    sums = dict(_RAW_SUMS_COMMON)
    sums.update(_RAW_SUMS_NODE if entity.kind == "node" else _RAW_SUMS_POD)
    select = ", ".join(f"{sums[c]} AS {c}" for c in SUM_COLUMNS + MAX_COLUMNS)
    where, params = _where(entity)
    sql = (
        f"SELECT date_bin(%s * interval '1 second', time, %s) AS b, {select} "
        f"FROM {_RAW_TABLE[entity.kind]} "
        f"WHERE {where} AND time >= %s AND time < %s GROUP BY 1 ORDER BY 1"
    )
    return sql, params


def rollup_relation(kind: str, resolution: str) -> str:
    return f"metrics_rollup_{kind}_{resolution}"


def _rollup_sql(entity: Entity, resolution: str) -> tuple[str, list[Any]]:
    parts = []
    for c in SUM_COLUMNS:
        if entity.kind != "node" and c in ("cpu_capacity_core_seconds", "memory_total_byte_seconds"):
            parts.append(f"NULL::float8 AS {c}")
        elif entity.kind == "node" and c in (
            "cpu_limited_seconds", "cpu_limit_core_seconds",
            "memory_limited_byte_seconds", "memory_limit_byte_seconds",
        ):
            parts.append(f"NULL::float8 AS {c}")
        else:
            parts.append(f"sum({c})::float8 AS {c}")
    parts.append("max(memory_working_set_max_bytes)::float8 AS memory_working_set_max_bytes")
    # Rollup buckets are at least a minute, longer than any sample interval.
    parts.append("NULL::float8 AS max_interval_seconds")
    where, params = _where(entity)
    sql = (
        f"SELECT date_bin(%s * interval '1 second', bucket, %s) AS b, {', '.join(parts)} "
        f"FROM {rollup_relation(entity.kind, resolution)} "
        f"WHERE {where} AND bucket >= %s AND bucket < %s GROUP BY 1 ORDER BY 1"
    )
    return sql, params


def _fetch(sql: str, params: list[Any], *, parallel: bool) -> list[tuple[Any, ...]]:
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner's cost for the rollup views counts every raw chunk of their real-time
        # branch, so even a 60-row read passes jit_above_cost; compiling it took 7 s of a 7.2 s
        # query on the benchmark data (EXPLAIN ANALYZE, bench/query.py). Reads here are short.
        cursor.execute("SET LOCAL jit = off")
        if not parallel:
            # Starting parallel workers for the views' real-time branch, which returns a minute
            # of data, cost 30-100 ms on a busy 2-core machine.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(sql, params)
        return cursor.fetchall()


def fetch_sums(entity: Entity, window: Window) -> dict[datetime, dict[str, Any]]:
    """Per output bucket, the sums of SUM_COLUMNS and maxima of MAX_COLUMNS."""
    if window.source == "raw":
        sql, key_params = _raw_sql(entity)
    else:
        sql, key_params = _rollup_sql(entity, window.source)
    params = [window.step, EPOCH, *key_params, window.start, window.end]
    names = ("b",) + SUM_COLUMNS + MAX_COLUMNS
    rows = _fetch(sql, params, parallel=window.source == "raw")
    return {row[0]: dict(zip(names[1:], row[1:])) for row in rows}


POINT_FIELDS = (
    "time",
    "cpu_millicores",
    "memory_working_set_bytes",
    "memory_working_set_max_bytes",
    "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
    "net_rx_bytes_per_second",
    "net_tx_bytes_per_second",
    "cpu_limit_millicores",
    "cpu_percent_of_limit",
    "memory_limit_bytes",
    "memory_percent_of_limit",
    "cpu_capacity_millicores",
    "cpu_percent_of_capacity",
    "memory_capacity_bytes",
    "memory_percent_of_capacity",
)


def _div(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    if a is None or not b:
        return None
    return a * scale / b


def point_from_sums(
    entity: Entity, bucket: datetime, seconds: float, sums: dict[str, Any] | None
) -> dict[str, Any]:
    """One point from a bucket's sums; `seconds` is the bucket's length (for aggregate kinds)."""
    point: dict[str, Any] = dict.fromkeys(POINT_FIELDS)
    point["time"] = bucket
    if not sums or not sums.get("samples"):
        return point
    if entity.kind in AGGREGATE_KINDS:
        # A raw step shorter than the sample interval would count a whole interval's usage
        # against a fraction of it.
        divisor = max(seconds, sums.get("max_interval_seconds") or 0.0)
    else:
        divisor = sums["covered_seconds"]
    point["cpu_millicores"] = _div(sums["cpu_seconds"], divisor, 1000.0)
    point["memory_working_set_bytes"] = _div(sums["memory_working_set_byte_seconds"], divisor)
    point["memory_working_set_max_bytes"] = sums["memory_working_set_max_bytes"]
    for name in ("disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes"):
        point[f"{name}_per_second"] = _div(sums[name], divisor)
    point["cpu_limit_millicores"] = _div(sums["cpu_limit_core_seconds"], divisor, 1000.0)
    point["cpu_percent_of_limit"] = _div(sums["cpu_limited_seconds"], sums["cpu_limit_core_seconds"], 100.0)
    point["memory_limit_bytes"] = _div(sums["memory_limit_byte_seconds"], divisor)
    point["memory_percent_of_limit"] = _div(
        sums["memory_limited_byte_seconds"], sums["memory_limit_byte_seconds"], 100.0
    )
    if entity.kind == "node":
        point["cpu_capacity_millicores"] = _div(sums["cpu_capacity_core_seconds"], divisor, 1000.0)
        point["cpu_percent_of_capacity"] = _div(sums["cpu_seconds"], sums["cpu_capacity_core_seconds"], 100.0)
        point["memory_capacity_bytes"] = _div(sums["memory_total_byte_seconds"], divisor)
        point["memory_percent_of_capacity"] = _div(
            sums["memory_working_set_byte_seconds"], sums["memory_total_byte_seconds"], 100.0
        )
    else:
        _capacity_from_node(point, entity)
    return point


def _capacity_from_node(point: dict[str, Any], entity: Entity) -> None:
    # A pod's share of its node, from the node's current capacity in the inventory.
    if entity.cpu_capacity_cores:
        point["cpu_capacity_millicores"] = entity.cpu_capacity_cores * 1000.0
        point["cpu_percent_of_capacity"] = _div(point["cpu_millicores"], point["cpu_capacity_millicores"], 100.0)
    if entity.memory_capacity_bytes:
        point["memory_capacity_bytes"] = float(entity.memory_capacity_bytes)
        point["memory_percent_of_capacity"] = _div(
            point["memory_working_set_bytes"], point["memory_capacity_bytes"], 100.0
        )


def series(entity: Entity, window: Window, now: datetime | None = None) -> list[dict[str, Any]]:
    """One point per bucket of the window, oldest first; buckets without data have nulls."""
    now = now or timezone.now()
    sums = fetch_sums(entity, window)
    step = timedelta(seconds=window.step)
    points = []
    bucket = window.start
    while bucket < window.end:
        # The bucket still filling up counts only its elapsed part.
        seconds = min(window.step, max((now - bucket).total_seconds(), 1.0))
        points.append(point_from_sums(entity, bucket, seconds, sums.get(bucket)))
        bucket += step
    return points


# --- latest usage ------------------------------------------------------------------------------

_LATEST_POD_COLUMNS = (
    "time", "interval_seconds", "cpu_seconds", "memory_working_set_bytes", "disk_read_bytes",
    "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "cpu_limit_cores", "memory_limit_bytes",
)
_LATEST_NODE_COLUMNS = (
    "time", "interval_seconds", "cpu_seconds", "memory_working_set_bytes", "disk_read_bytes",
    "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "cpu_capacity_cores", "memory_total_bytes",
)


def _sample_sums(row: dict[str, Any]) -> dict[str, Any]:
    """One raw sample as rollup sums, so it goes through point_from_sums like a bucket."""
    interval = row["interval_seconds"]

    def weighted(v: Any) -> float | None:
        return None if v is None else float(v) * interval

    mem = weighted(row["memory_working_set_bytes"])
    cpu_limit = row.get("cpu_limit_cores")
    mem_limit = row.get("memory_limit_bytes")
    return {
        "samples": 1,
        "covered_seconds": interval,
        "cpu_seconds": row["cpu_seconds"],
        "memory_working_set_byte_seconds": mem,
        "memory_working_set_max_bytes": row["memory_working_set_bytes"],
        "max_interval_seconds": interval,
        "disk_read_bytes": row["disk_read_bytes"],
        "disk_write_bytes": row["disk_write_bytes"],
        "net_rx_bytes": row["net_rx_bytes"],
        "net_tx_bytes": row["net_tx_bytes"],
        "cpu_limited_seconds": row["cpu_seconds"] if cpu_limit is not None else None,
        "cpu_limit_core_seconds": weighted(cpu_limit) if row["cpu_seconds"] is not None else None,
        "memory_limited_byte_seconds": mem if mem_limit is not None else None,
        "memory_limit_byte_seconds": weighted(mem_limit) if mem is not None else None,
        "cpu_capacity_core_seconds": weighted(row.get("cpu_capacity_cores")),
        "memory_total_byte_seconds": weighted(row.get("memory_total_bytes")),
    }


def _latest_raw(table: str, key: str, ids: list[int], columns: tuple[str, ...], since: datetime) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    # One index probe per id on the (key, time) unique index, newest chunk first: no scan, and
    # the time bound lets TimescaleDB skip all but the newest chunks.
    cols = ", ".join(f"s.{c}" for c in columns)
    sql = (
        f"SELECT k.id, {cols} FROM unnest(%s::bigint[]) AS k(id) "
        f"CROSS JOIN LATERAL (SELECT * FROM {table} WHERE {key} = k.id AND time >= %s "
        f"ORDER BY time DESC LIMIT 1) s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(ids), since])
        return {row[0]: dict(zip(columns, row[1:])) for row in cursor.fetchall()}


def usage_from_sample(entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    usage = point_from_sums(entity, row["time"], row["interval_seconds"], _sample_sums(row))
    usage["interval_seconds"] = row["interval_seconds"]
    return usage


def latest_pods(pods: Iterable[Any], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Newest usage of each pod (objects with id and node capacities), keyed by pod id."""
    pods = list(pods)
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = _latest_raw("metrics_podsample", "pod_id", [p.id for p in pods], _LATEST_POD_COLUMNS, since)
    result = {}
    for pod in pods:
        if pod.id in rows:
            node = pod.node
            entity = Entity("pod", (pod.id,), node.cpu_capacity_cores, node.memory_total_bytes)
            result[pod.id] = usage_from_sample(entity, rows[pod.id])
    return result


def latest_nodes(ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = _latest_raw("metrics_nodesample", "node_id", ids, _LATEST_NODE_COLUMNS, since)
    return {i: usage_from_sample(Entity("node", (i,)), row) for i, row in rows.items()}


def latest_groups(kind: str, keys: list[tuple[str, ...]], now: datetime | None = None) -> dict[tuple[str, ...], dict[str, Any]]:
    """Newest complete 1-minute bucket of each namespace or Deployment, keyed like `keys`."""
    if kind not in AGGREGATE_KINDS:
        raise ValueError(kind)
    if not keys:
        return {}
    now = now or timezone.now()
    cols = _KEY_COLUMNS[kind]
    arrays = ", ".join("%s::text[]" for _ in cols)
    match = " AND ".join(f"r.{c} = k.{c}" for c in cols)
    sums = ", ".join(f"r.{c}" for c in SUM_COLUMNS if c not in ("cpu_capacity_core_seconds", "memory_total_byte_seconds"))
    sql = (
        f"SELECT {', '.join('k.' + c for c in cols)}, r.bucket, {sums}, r.memory_working_set_max_bytes "
        f"FROM unnest({arrays}) AS k({', '.join(cols)}) "
        f"CROSS JOIN LATERAL (SELECT * FROM {rollup_relation(kind, '1m')} r "
        f"WHERE {match} AND r.bucket >= %s AND r.bucket <= %s ORDER BY r.bucket DESC LIMIT 1) r"
    )
    params: list[Any] = [[k[i] for k in keys] for i in range(len(cols))]
    params += [now - LATEST_BUCKET_LOOKBACK, now - COMPLETE_BUCKET_DELAY]
    names = [c for c in SUM_COLUMNS if c not in ("cpu_capacity_core_seconds", "memory_total_byte_seconds")]
    rows = _fetch(sql, params, parallel=False)
    result = {}
    for row in rows:
        key = tuple(row[: len(cols)])
        bucket = row[len(cols)]
        values = dict(zip(names, row[len(cols) + 1 :]))
        values["memory_working_set_max_bytes"] = row[-1]
        values["cpu_capacity_core_seconds"] = values["memory_total_byte_seconds"] = None
        values["max_interval_seconds"] = None
        usage = point_from_sums(Entity(kind, key), bucket, 60.0, values)
        usage["interval_seconds"] = 60.0
        result[key] = usage
    return result
