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

KINDS = ("cluster", "node", "pod", "container", "namespace", "deployment")
# Kinds whose values add up over many pods or nodes: divided by the seconds their nodes reported
# (see _group_point), not by one entity's covered time.
AGGREGATE_KINDS = ("namespace", "deployment", "cluster")
# Kinds read from node samples and node rollups (capacities, no limits). The cluster is the sum
# of its nodes: what the machines used, system daemons included, against what they have.
NODE_KINDS = ("node", "cluster")

# The sums both sources are reduced to, in this order.
SUM_COLUMNS = (
    "samples",
    "covered_seconds",
    "cpu_seconds",
    "memory_working_set_byte_seconds",
    "memory_rss_byte_seconds",
    "memory_cache_byte_seconds",
    "disk_read_bytes",
    "disk_write_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "cpu_throttled_seconds",
    "oom_kills",
    "cpu_limited_seconds",
    "cpu_limit_core_seconds",
    "memory_limited_byte_seconds",
    "memory_limit_byte_seconds",
    "cpu_capacity_core_seconds",
    "memory_total_byte_seconds",
)
# Columns only one side has (pods the limits, nodes the capacities).
_POD_ONLY = ("cpu_limited_seconds", "cpu_limit_core_seconds", "memory_limited_byte_seconds", "memory_limit_byte_seconds")
_NODE_ONLY = ("cpu_capacity_core_seconds", "memory_total_byte_seconds")
MAX_COLUMNS = ("memory_working_set_max_bytes", "max_interval_seconds")

# Raw samples reduced to rollup columns, as per-row terms spread over the buckets each sample's
# interval overlaps. "usage" terms are what was used during the interval and count in a bucket in
# proportion to the overlap (term * overlap / interval); "weighted" terms are gauges and count as
# value * overlap (value-seconds). "start" terms are events (OOM kills) that cannot be split and
# count whole in the bucket the interval starts in, as in the rollups. Node samples carry
# capacities and no limits; pod samples carry limits and no capacities.
_RAW_TERMS_COMMON: dict[str, tuple[str, str]] = {
    "covered_seconds": ("weighted", "1.0"),
    "cpu_seconds": ("usage", "cpu_seconds"),
    "memory_working_set_byte_seconds": ("weighted", "memory_working_set_bytes::float8"),
    "memory_rss_byte_seconds": ("weighted", "memory_rss_bytes::float8"),
    "memory_cache_byte_seconds": ("weighted", "memory_cache_bytes::float8"),
    "disk_read_bytes": ("usage", "disk_read_bytes::float8"),
    "disk_write_bytes": ("usage", "disk_write_bytes::float8"),
    "net_rx_bytes": ("usage", "net_rx_bytes::float8"),
    "net_tx_bytes": ("usage", "net_tx_bytes::float8"),
    "cpu_throttled_seconds": ("usage", "cpu_throttled_seconds"),
    "oom_kills": ("start", "oom_kills::float8"),
}
_RAW_TERMS_POD: dict[str, tuple[str, str]] = {
    # Limits count only where the usage is known, so that used / limit is a true percentage
    # (the same terms as the rollup columns in metrics/rollup_schema.py).
    "cpu_limited_seconds": ("usage", "CASE WHEN cpu_limit_cores IS NOT NULL THEN cpu_seconds END"),
    "cpu_limit_core_seconds": ("weighted", "CASE WHEN cpu_seconds IS NOT NULL THEN cpu_limit_cores END"),
    "memory_limited_byte_seconds": (
        "weighted",
        "CASE WHEN memory_limit_bytes IS NOT NULL THEN memory_working_set_bytes::float8 END",
    ),
    "memory_limit_byte_seconds": (
        "weighted",
        "CASE WHEN memory_working_set_bytes IS NOT NULL THEN memory_limit_bytes::float8 END",
    ),
}
_RAW_TERMS_NODE: dict[str, tuple[str, str]] = {
    "cpu_capacity_core_seconds": ("weighted", "cpu_capacity_cores"),
    "memory_total_byte_seconds": ("weighted", "memory_total_bytes::float8"),
}
# No sample interval is longer than this (the ingest contract's maximum): a window's query reaches
# back this far for samples that start before the window and overlap it.
MAX_INTERVAL = timedelta(seconds=3600)


def _raw_aggregate(column: str, kind: str, expr: str) -> str:
    if kind == "usage":
        return f"sum(({expr}) * ov / interval_seconds) AS {column}"
    if kind == "weighted":
        return f"sum(({expr}) * ov) AS {column}"
    return f"sum(CASE WHEN first THEN {expr} END) AS {column}"


_RAW_TABLE = {
    "cluster": "metrics_nodesample",
    "container": "metrics_containersample",
    "node": "metrics_nodesample",
    "pod": "metrics_podsample",
    "namespace": "metrics_podsample",
    "deployment": "metrics_podsample",
}
_KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    # One cluster per installation: every node reporting here.
    "cluster": (),
    "node": ("node_id",),
    "pod": ("pod_id",),
    # Containers have raw samples only (no rollups): their series reach back RETENTION_RAW_DAYS.
    "container": ("container_id",),
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
        if self.kind == "cluster" and len(self.key) == 1:
            return  # (cluster_id,): the nodes of one cluster (see _where)
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
    if source == "raw" and start < now - _retention("raw"):
        raise SeriesError(
            "start", f"Raw samples are kept {_retention('raw').days} days (RETENTION_RAW_DAYS)."
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


# A cluster keyed (cluster_id,) is the sum of that cluster's nodes; keyed () of every node.
_CLUSTER_NODES = "node_id IN (SELECT id FROM metrics_node WHERE cluster_id = %s)"


def _where(entity: Entity) -> tuple[str, list[Any]]:
    if entity.kind == "cluster" and entity.key:
        return _CLUSTER_NODES, list(entity.key)
    cols = _KEY_COLUMNS[entity.kind]
    return " AND ".join([f"{c} = %s" for c in cols] or ["TRUE"]), list(entity.key)


def _raw_spread_sql(
    table: str, where: str, terms: dict[str, tuple[str, str]], group: tuple[str, ...] = ()
) -> str:
    """Raw samples spread over the step buckets their intervals overlap (see _RAW_TERMS_COMMON).

    Parameters, in order: step, epoch, the key values of `where`, window start - MAX_INTERVAL,
    window end, window start, window end. Every bucket a sample overlaps gets its share, so a step
    that is not a multiple of the sampling interval still sums exactly. `group` adds key columns
    to the output, one row per bucket and key.
    """
    aggregates = ", ".join(_raw_aggregate(c, *terms[c]) for c in terms)
    keys = "".join(f", {c}" for c in group)
    return (
        f"SELECT b{keys}, count(*) AS samples, "
        f"{aggregates}, max(memory_working_set_bytes)::float8 AS memory_working_set_max_bytes, "
        "max(interval_seconds) AS max_interval_seconds "
        "FROM (SELECT s.*, g.b, g.b = g.first_b AS first, "
        "extract(epoch FROM least(s.time + s.interval_seconds * interval '1 second', g.b + g.w) "
        "- greatest(s.time, g.b))::float8 AS ov "
        "FROM (SELECT *, %s * interval '1 second' AS w0, %s::timestamptz AS e0 "
        f"FROM {table} WHERE {where} AND time >= %s AND time < %s) s "
        "CROSS JOIN LATERAL (SELECT gb AS b, s.w0 AS w, date_bin(s.w0, s.time, s.e0) AS first_b "
        "FROM generate_series(date_bin(s.w0, s.time, s.e0), "
        "s.time + (s.interval_seconds * interval '1 second') - interval '1 microsecond', s.w0) gb) g"
        f") x WHERE b >= %s AND b < %s GROUP BY b{keys} ORDER BY b"
    )


def _raw_terms(kind: str) -> dict[str, tuple[str, str]]:
    terms = dict(_RAW_TERMS_COMMON)
    terms.update(_RAW_TERMS_NODE if kind in NODE_KINDS else _RAW_TERMS_POD)
    if kind == "container":
        # A container shares its pod's network namespace: network is counted on the pod only.
        for name in ("net_rx_bytes", "net_tx_bytes"):
            terms.pop(name)
    return terms


def _raw_sql(entity: Entity) -> tuple[str, list[Any]]:
    where, params = _where(entity)
    return _raw_spread_sql(_RAW_TABLE[entity.kind], where, _raw_terms(entity.kind)), params


def rollup_relation(kind: str, resolution: str) -> str:
    return f"metrics_rollup_{kind}_{resolution}"


def _rollup_sql(entity: Entity, resolution: str) -> tuple[str, list[Any]]:
    where, params = _where(entity)
    return _rollup_select(entity.kind, resolution, where), params


def _rollup_select(kind: str, resolution: str, where: str, group: tuple[str, ...] = ()) -> str:
    """Rollup rows summed into step buckets; parameters: step, epoch, the key values of `where`,
    window start, window end."""
    node_kind = kind in NODE_KINDS
    parts = []
    for c in SUM_COLUMNS:
        if (not node_kind and c in _NODE_ONLY) or (node_kind and c in _POD_ONLY):
            parts.append(f"NULL::float8 AS {c}")
        else:
            parts.append(f"sum({c})::float8 AS {c}")
    parts.append("max(memory_working_set_max_bytes)::float8 AS memory_working_set_max_bytes")
    # Rollup buckets are at least a minute, longer than any sample interval.
    parts.append("NULL::float8 AS max_interval_seconds")
    keys = "".join(f", {c}" for c in group)
    positions = "".join(f", {i + 2}" for i in range(len(group)))
    return (
        f"SELECT date_bin(%s * interval '1 second', bucket, %s) AS b{keys}, {', '.join(parts)} "
        f"FROM {rollup_relation('node' if kind == 'cluster' else kind, resolution)} "
        f"WHERE {where} AND bucket >= %s AND bucket < %s GROUP BY 1{positions} ORDER BY 1"
    )


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
    names: tuple[str, ...] = ("b",) + SUM_COLUMNS + MAX_COLUMNS
    if window.source == "raw":
        sql, key_params = _raw_sql(entity)
        terms = _raw_terms(entity.kind)
        names = ("b", "samples", *terms, *MAX_COLUMNS)
        params = [
            window.step, EPOCH, *key_params, window.start - MAX_INTERVAL, window.end,
            window.start, window.end,
        ]
    else:
        sql, key_params = _rollup_sql(entity, window.source)
        params = [window.step, EPOCH, *key_params, window.start, window.end]
    rows = _fetch(sql, params, parallel=window.source == "raw")
    result = {}
    for row in rows:
        sums = dict.fromkeys(SUM_COLUMNS + MAX_COLUMNS)
        sums.update(zip(names[1:], row[1:]))
        result[row[0]] = sums
    return result


def group_node_ids(entity: Entity, window: Window) -> list[int]:
    """Nodes that hosted pods of a namespace or Deployment during the window.

    A pod is bound to one node for its life, so the inventory answers this without touching the
    samples. last_seen lags by up to a minute (metrics.models.Pod), hence the margin.
    """
    from metrics.models import Node, Pod

    if entity.kind == "cluster":
        nodes = Node.objects.filter(
            first_seen__lt=window.end, last_seen__gte=window.start - timedelta(minutes=2)
        )
        if entity.key:
            nodes = nodes.filter(cluster_id=entity.key[0])
        return sorted(nodes.values_list("id", flat=True))
    pods = Pod.objects.filter(namespace=entity.key[0])
    if entity.kind == "deployment":
        pods = pods.filter(deployment=entity.key[1])
    pods = pods.filter(first_seen__lt=window.end, last_seen__gte=window.start - timedelta(minutes=2))
    return sorted(set(pods.values_list("node_id", flat=True)))


def node_coverage_by_node(node_ids: list[int], window: Window) -> dict[tuple[int, datetime], float]:
    """Per node and bucket: the seconds of the bucket its samples cover. Node samples come in the
    same batch as their pods' samples, so a node's coverage is the coverage of every pod on it."""
    if not node_ids:
        return {}
    if window.source == "raw":
        inner = (
            "SELECT b, node_id, sum(ov) AS cov FROM (SELECT s.node_id, gb AS b, "
            "extract(epoch FROM least(s.time + s.interval_seconds * interval '1 second', "
            "gb + %s * interval '1 second') - greatest(s.time, gb))::float8 AS ov "
            "FROM metrics_nodesample s CROSS JOIN LATERAL generate_series("
            "date_bin(%s * interval '1 second', s.time, %s), s.time + "
            "(s.interval_seconds * interval '1 second') - interval '1 microsecond', "
            "%s * interval '1 second') gb "
            "WHERE s.node_id = ANY(%s) AND s.time >= %s AND s.time < %s) x "
            "WHERE b >= %s AND b < %s GROUP BY b, node_id"
        )
        params: list[Any] = [
            window.step, window.step, EPOCH, window.step, node_ids,
            window.start - MAX_INTERVAL, window.end, window.start, window.end,
        ]
    else:
        inner = (
            "SELECT date_bin(%s * interval '1 second', bucket, %s) AS b, node_id, "
            f"sum(covered_seconds)::float8 AS cov FROM {rollup_relation('node', window.source)} "
            "WHERE node_id = ANY(%s) AND bucket >= %s AND bucket < %s GROUP BY 1, 2"
        )
        params = [window.step, EPOCH, node_ids, window.start, window.end]
    rows = _fetch(inner, params, parallel=False)
    return {(row[1], row[0]): min(float(window.step), float(row[2])) for row in rows}


def node_coverage(node_ids: list[int], window: Window) -> dict[datetime, tuple[float, int]]:
    """Per bucket: seconds covered by the nodes' samples, summed over them, and how many of the
    nodes reported in it."""
    return _sum_coverage(node_coverage_by_node(node_ids, window), set(node_ids))


def _sum_coverage(
    per_node: dict[tuple[int, datetime], float], nodes: set[int]
) -> dict[datetime, tuple[float, int]]:
    result: dict[datetime, tuple[float, int]] = {}
    for (node, bucket), seconds in per_node.items():
        if node in nodes:
            total, count = result.get(bucket, (0.0, 0))
            result[bucket] = (total + seconds, count + 1)
    return result


@dataclass(frozen=True)
class PointField:
    """One field of a series point (and of `usage`): its unit and meaning, defined once here; the
    read API's serializers and OpenAPI schema are built from these (metrics/api/serializers.py)."""

    name: str
    unit: str
    help: str
    integer: bool = False


POINTS = (
    PointField("cpu_millicores", "millicores", "CPU used: CPU-seconds per second of the seconds reported, x 1000 (summed over pods for groups, over nodes for the cluster)."),
    PointField("memory_working_set_bytes", "bytes", "Time-weighted average over the bucket (summed over pods for groups)."),
    PointField("memory_working_set_max_bytes", "bytes", "Largest single sample in the bucket (of one pod, for groups)."),
    PointField("disk_read_bytes_per_second", "bytes/s", "Bytes read per second."),
    PointField("disk_write_bytes_per_second", "bytes/s", "Bytes written per second."),
    PointField("net_rx_bytes_per_second", "bytes/s", "Bytes received per second (null for containers: counted on the pod)."),
    PointField("net_tx_bytes_per_second", "bytes/s", "Bytes sent per second (null for containers: counted on the pod)."),
    PointField("cpu_limit_millicores", "millicores", "CPU limit; for groups the sum over pods that have one."),
    PointField("cpu_percent_of_limit", "%", "CPU of limited pods as a percentage of their limits."),
    PointField("memory_limit_bytes", "bytes", "Memory limit; for groups the sum over pods that have one."),
    PointField("memory_percent_of_limit", "%", "Working set of limited pods as a percentage of their limits."),
    PointField("cpu_capacity_millicores", "millicores", "The node's capacity (a pod: its node's; the cluster: its nodes'); null for namespaces and Deployments."),
    PointField("cpu_percent_of_capacity", "%", "CPU used as a percentage of capacity."),
    PointField("memory_capacity_bytes", "bytes", "Memory capacity, as for CPU."),
    PointField("memory_percent_of_capacity", "%", "Working set as a percentage of capacity."),
    PointField("memory_rss_bytes", "bytes", "Anonymous memory (RSS), time-weighted like the working set."),
    PointField("memory_cache_bytes", "bytes", "Page cache, time-weighted like the working set."),
    PointField("cpu_throttled_millicores", "millicores", "CPU time the CFS quota throttled, per second of the bucket, x 1000."),
    PointField("oom_kills", "count", "OOM kills in intervals that start in the bucket.", integer=True),
    PointField(
        "coverage", "0..1",
        "Share of the bucket for which samples exist: for a pod, container or node its own, for a "
        "namespace, Deployment or the cluster that of the nodes its pods ran on. Below 1 the bucket is "
        "partial (still filling, data started or stopped in it, or a collector gap); null when unknown.",
    ),
)
POINT_FIELDS = ("time", *(f.name for f in POINTS))


def _div(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    if a is None or not b:
        return None
    return a * scale / b


def point_from_sums(
    entity: Entity,
    bucket: datetime,
    seconds: float,
    sums: dict[str, Any] | None,
    *,
    divisor: float | None = None,
    coverage: float | None = None,
) -> dict[str, Any]:
    """One point from a bucket's sums; `seconds` is the bucket's length.

    A pod or node reads its time-weighted average over the seconds it reported, and its coverage
    is that share of the bucket. A namespace or Deployment is a sum over pods, divided by the
    seconds its nodes reported (`divisor`, from node_coverage) so that a bucket still filling up
    or a collector gap reads the true rate, and `coverage` says which share of the bucket its
    nodes reported.
    """
    point: dict[str, Any] = dict.fromkeys(POINT_FIELDS)
    point["time"] = bucket
    point["coverage"] = coverage
    if not sums or not sums.get("samples"):
        return point
    if entity.kind in AGGREGATE_KINDS:
        divisor = divisor or seconds
    else:
        divisor = sums["covered_seconds"]
        if coverage is None and divisor:
            point["coverage"] = min(1.0, divisor / seconds)
    point["cpu_millicores"] = _div(sums["cpu_seconds"], divisor, 1000.0)
    point["memory_working_set_bytes"] = _div(sums["memory_working_set_byte_seconds"], divisor)
    point["memory_working_set_max_bytes"] = sums["memory_working_set_max_bytes"]
    for name in ("disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes"):
        point[f"{name}_per_second"] = _div(sums[name], divisor)
    point["memory_rss_bytes"] = _div(sums.get("memory_rss_byte_seconds"), divisor)
    point["memory_cache_bytes"] = _div(sums.get("memory_cache_byte_seconds"), divisor)
    point["cpu_throttled_millicores"] = _div(sums.get("cpu_throttled_seconds"), divisor, 1000.0)
    oom = sums.get("oom_kills")
    point["oom_kills"] = None if oom is None else int(round(oom))
    point["cpu_limit_millicores"] = _div(sums["cpu_limit_core_seconds"], divisor, 1000.0)
    point["cpu_percent_of_limit"] = _div(sums["cpu_limited_seconds"], sums["cpu_limit_core_seconds"], 100.0)
    point["memory_limit_bytes"] = _div(sums["memory_limit_byte_seconds"], divisor)
    point["memory_percent_of_limit"] = _div(
        sums["memory_limited_byte_seconds"], sums["memory_limit_byte_seconds"], 100.0
    )
    if entity.kind in NODE_KINDS:
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
    nodes: list[int] = []
    covered: dict[datetime, tuple[float, int]] = {}
    if entity.kind in AGGREGATE_KINDS:
        nodes = group_node_ids(entity, window)
        covered = node_coverage(nodes, window)
    return _points(entity, window, sums, covered, len(nodes), now)


def _points(
    entity: Entity,
    window: Window,
    sums: dict[datetime, dict[str, Any]],
    covered: dict[datetime, tuple[float, int]],
    node_count: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """One point per bucket of the window from its sums (and, for groups, its nodes' coverage)."""
    step = timedelta(seconds=window.step)
    points = []
    bucket = window.start
    while bucket < window.end:
        if entity.kind in AGGREGATE_KINDS:
            points.append(_group_point(entity, bucket, window.step, sums.get(bucket), covered.get(bucket), node_count, now))
        else:
            points.append(point_from_sums(entity, bucket, float(window.step), sums.get(bucket)))
        bucket += step
    return points


def _group_point(
    entity: Entity,
    bucket: datetime,
    step: int,
    sums: dict[str, Any] | None,
    covered: tuple[float, int] | None,
    node_count: int,
    now: datetime,
) -> dict[str, Any]:
    if covered and covered[1]:
        seconds, reporting = covered
        # The mean of the reporting nodes' covered seconds: exact when they report at one
        # cadence, and a node silent for the whole bucket lowers coverage, not the rate.
        divisor = seconds / reporting
        coverage = min(1.0, seconds / (max(node_count, reporting) * step))
        return point_from_sums(entity, bucket, float(step), sums, divisor=divisor, coverage=coverage)
    # No node samples (data written without its node's, as some tests and old data do): the
    # bucket's elapsed part, and an unknown coverage.
    elapsed = min(step, max((now - bucket).total_seconds(), 1.0))
    point = point_from_sums(entity, bucket, float(step), sums, divisor=elapsed)
    if sums and sums.get("samples"):
        point["coverage"] = None
    else:
        point["coverage"] = 0.0 if node_count else None
    return point


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
    """Newest complete 1-minute bucket of each namespace or Deployment, keyed like `keys`.

    Complete means every node that hosted the group's pods reported the whole minute (coverage
    1), so a list never shows a bucket that is still filling, or one its data started or stopped
    in, as current usage. Groups without node samples fall back to the newest bucket older than
    COMPLETE_BUCKET_DELAY.
    """
    if kind not in AGGREGATE_KINDS:
        raise ValueError(kind)
    if not keys:
        return {}
    now = now or timezone.now()
    cols = _KEY_COLUMNS[kind]
    arrays = ", ".join("%s::text[]" for _ in cols)
    match = " AND ".join(f"r.{c} = k.{c}" for c in cols)
    names = [c for c in SUM_COLUMNS if c not in _NODE_ONLY]
    sums = ", ".join(f"r.{c}" for c in names)
    since = now - LATEST_BUCKET_LOOKBACK
    sql = (
        f"SELECT {', '.join('k.' + c for c in cols)}, r.bucket, {sums}, r.memory_working_set_max_bytes "
        f"FROM unnest({arrays}) AS k({', '.join(cols)}) "
        f"JOIN {rollup_relation(kind, '1m')} r ON {match} "
        "WHERE r.bucket >= %s AND r.bucket <= %s ORDER BY r.bucket DESC"
    )
    params: list[Any] = [[k[i] for k in keys] for i in range(len(cols))]
    params += [since, now - timedelta(seconds=60)]
    rows = _fetch(sql, params, parallel=False)
    window = Window(start=_floor(since, 60), end=_ceil(now, 60), step=60, source="1m")
    nodes_of = _group_nodes_in(kind, keys, window)
    per_node = node_coverage_by_node(sorted({n for ids in nodes_of.values() for n in ids}), window)
    result: dict[tuple[str, ...], dict[str, Any]] = {}
    fallback: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:  # newest bucket first
        key = tuple(row[: len(cols)])
        if key in result:
            continue
        bucket = row[len(cols)]
        values: dict[str, Any] = dict.fromkeys(SUM_COLUMNS + MAX_COLUMNS)
        values.update(zip(names, row[len(cols) + 1 :]))
        values["memory_working_set_max_bytes"] = row[-1]
        entity = Entity(kind, key)
        node_ids = nodes_of.get(key, set())
        covers = [per_node[(n, bucket)] for n in node_ids if (n, bucket) in per_node]
        if covers:
            coverage = min(1.0, sum(covers) / (len(node_ids) * 60.0))
            if coverage < 0.999:
                continue
            usage = point_from_sums(entity, bucket, 60.0, values, divisor=sum(covers) / len(covers), coverage=coverage)
        elif bucket <= now - COMPLETE_BUCKET_DELAY and key not in fallback:
            usage = point_from_sums(entity, bucket, 60.0, values, divisor=60.0)
            usage["coverage"] = None
            fallback[key] = usage | {"interval_seconds": 60.0}
            continue
        else:
            continue
        usage["interval_seconds"] = 60.0
        result[key] = usage
    for key, usage in fallback.items():
        result.setdefault(key, usage)
    return result


CLUSTER = Entity("cluster", ())


def latest_cluster(now: datetime | None = None, entity: Entity = CLUSTER) -> dict[str, Any] | None:
    """The cluster's newest complete minute (every node that reported lately covered it whole),
    summed over its nodes; None when no node reported a whole minute within the lookback.
    `entity` is CLUSTER (every node) or Entity("cluster", (cluster_id,))."""
    now = now or timezone.now()
    window = Window(
        start=_floor(now - LATEST_BUCKET_LOOKBACK, 60), end=_floor(now, 60), step=60, source="1m"
    )
    for point in reversed(series(entity, window, now=now)):
        if point["cpu_millicores"] is not None and (point["coverage"] or 0) >= 0.999:
            point["interval_seconds"] = 60.0
            return point
    return None


# --- many entities in one request ----------------------------------------------------------------


def _where_many(kind: str, keys: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    cols = _KEY_COLUMNS[kind]
    if len(cols) == 1:
        return f"{cols[0]} = ANY(%s)", [[k[0] for k in keys]]
    arrays = ", ".join("%s::text[]" for _ in cols)
    return (
        f"({', '.join(cols)}) IN (SELECT * FROM unnest({arrays}))",
        [[k[i] for k in keys] for i in range(len(cols))],
    )


def series_many(
    entities: list[Entity], window: Window, now: datetime | None = None
) -> list[list[dict[str, Any]]]:
    """The series of many entities of one kind, in their order, with a fixed number of queries
    (one for the sums, and for namespaces and Deployments one for their nodes and one for those
    nodes' coverage), whatever their number. Each equals series() of that entity."""
    if not entities:
        return []
    kind = entities[0].kind
    if kind == "cluster" or any(e.kind != kind for e in entities):
        raise ValueError("series_many takes entities of one kind other than the cluster")
    now = now or timezone.now()
    cols = _KEY_COLUMNS[kind]
    keys = [e.key for e in entities]
    where, key_params = _where_many(kind, keys)
    if window.source == "raw":
        terms = _raw_terms(kind)
        sql = _raw_spread_sql(_RAW_TABLE[kind], where, terms, group=cols)
        names: tuple[str, ...] = ("samples", *terms, *MAX_COLUMNS)
        params = [window.step, EPOCH, *key_params, window.start - MAX_INTERVAL, window.end, window.start, window.end]
    else:
        sql = _rollup_select(kind, window.source, where, group=cols)
        names = SUM_COLUMNS + MAX_COLUMNS
        params = [window.step, EPOCH, *key_params, window.start, window.end]
    sums: dict[tuple[Any, ...], dict[datetime, dict[str, Any]]] = {}
    for row in _fetch(sql, params, parallel=window.source == "raw"):
        values: dict[str, Any] = dict.fromkeys(SUM_COLUMNS + MAX_COLUMNS)
        values.update(zip(names, row[1 + len(cols):]))
        sums.setdefault(tuple(row[1 : 1 + len(cols)]), {})[row[0]] = values
    nodes_of: dict[tuple[Any, ...], set[int]] = {}
    per_node: dict[tuple[int, datetime], float] = {}
    if kind in AGGREGATE_KINDS:
        nodes_of = _group_nodes_in(kind, keys, window)
        per_node = node_coverage_by_node(sorted({n for ns in nodes_of.values() for n in ns}), window)
    result = []
    for entity in entities:
        key = tuple(entity.key)
        nodes = nodes_of.get(key, set())
        covered = _sum_coverage(per_node, nodes) if kind in AGGREGATE_KINDS else {}
        result.append(_points(entity, window, sums.get(key, {}), covered, len(nodes), now))
    return result


def _group_nodes_in(kind: str, keys: list[tuple[Any, ...]], window: Window) -> dict[tuple[Any, ...], set[int]]:
    """group_node_ids for many namespaces or Deployments in one query."""
    from metrics.models import Pod

    pods = Pod.objects.filter(
        namespace__in={k[0] for k in keys}, first_seen__lt=window.end,
        last_seen__gte=window.start - timedelta(minutes=2),
    )
    wanted = set(map(tuple, keys))
    nodes: dict[tuple[Any, ...], set[int]] = {}
    for namespace, deployment, node_id in pods.values_list("namespace", "deployment", "node_id").distinct():
        key = (namespace,) if kind == "namespace" else (namespace, deployment)
        if key in wanted:
            nodes.setdefault(key, set()).add(node_id)
    return nodes


_LATEST_CONTAINER_COLUMNS = (
    "time", "interval_seconds", "cpu_seconds", "memory_working_set_bytes", "disk_read_bytes",
    "disk_write_bytes", "cpu_limit_cores", "memory_limit_bytes",
)


def latest_containers(ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Newest sample of each container within the lookback, keyed by container id."""
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = _latest_raw("metrics_containersample", "container_id", ids, _LATEST_CONTAINER_COLUMNS, since)
    result = {}
    for i, row in rows.items():
        row.setdefault("net_rx_bytes", None)
        row.setdefault("net_tx_bytes", None)
        result[i] = usage_from_sample(Entity("container", (i,)), row)
    return result
