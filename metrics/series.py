"""Time series and latest usage for the cluster, nodes, pods, containers, namespaces and Deployments.

Every query reads either the raw sample tables or the rollup relations
`metrics_rollup_<entity>_<1m|1h>`, which have the same names and columns in every storage tier
(docs/architecture.md), so nothing here asks which tier it runs on.

Both sources are reduced to the same set of sums per output bucket (the rollup columns), and one
function turns sums into a point. That keeps raw and rollup answers identical by construction:
a namespace's CPU over a bucket is the sum of its pods' CPU-seconds divided by the bucket's
length; a single pod's or node's is divided by the seconds it reported (its time-weighted average).
The sums, the point fields and how each is computed come from the metric catalogue
(metrics/catalogue.py); nothing here names a metric except the capacities pods take from their node.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from metrics import catalogue
from metrics.replica import read_connection

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

KINDS = tuple(e.name for e in catalogue.ENTITIES)
# Kinds whose values add up over many pods or nodes: divided by the seconds their nodes reported
# (see _group_point), not by one entity's covered time.
AGGREGATE_KINDS = tuple(e.name for e in catalogue.ENTITIES if e.aggregate)
# Kinds read from node samples and node rollups (capacities, no limits). The cluster is the sum
# of its nodes: what the machines used, system daemons included, against what they have.
NODE_KINDS = tuple(sorted(catalogue.NODE_LEVEL))
# Series-only maximum (raw reads): the longest sample interval in a bucket.
MAX_COLUMNS = ("max_interval_seconds",)
# Every sum a point may read (an entity's sums dict has all of them, None where it has none).
SUM_NAMES = tuple(c.name for c in catalogue.COLUMNS) + MAX_COLUMNS

# No sample interval is longer than this (the ingest contract's maximum): a window's query reaches
# back this far for samples that start before the window and overlap it.
MAX_INTERVAL = timedelta(seconds=3600)

_RAW_TABLE = {e.name: e.source for e in catalogue.ENTITIES}
_KEY_COLUMNS: dict[str, tuple[str, ...]] = {e.name: e.keys for e in catalogue.ENTITIES}


# Point fields a caller asked for (None: all): reads then compute only the sums those need.
Fields = tuple[str, ...] | None


@functools.cache
def _columns(kind: str, fields: Fields = None) -> tuple[catalogue.Column, ...]:
    """The catalogue's sums of a kind (its rollup columns; raw reads compute the same), or those
    the metrics in `fields` read."""
    every = catalogue.columns_of(kind)
    if fields is None:
        return every
    wanted = {c.name for c in catalogue.BASE_COLUMNS}
    for metric in catalogue.metrics_of(kind):
        if metric.name in fields:
            wanted.update(c.name for c in metric.columns)
    return tuple(c for c in every if c.name in wanted)


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
    kind: str, where: str, group: tuple[str, ...] = (), fields: Fields = None
) -> tuple[str, tuple[str, ...]]:
    """Raw samples spread over the step buckets their intervals overlap, and the output's sum
    names (after `b` and the `group` columns).

    USAGE sums count in a bucket in proportion to the overlap (term * overlap / interval), GAUGE
    sums as value * overlap, EVENT sums (OOM kills) whole in the bucket the interval starts in,
    as in the rollups (metrics/catalogue.py).

    Parameters, in order: step, epoch, the key values of `where`, window start - MAX_INTERVAL,
    window end, window start, window end. Every bucket a sample overlaps gets its share, so a step
    that is not a multiple of the sampling interval still sums exactly. `group` adds key columns
    to the output, one row per bucket and key.
    """
    columns = _columns(kind, fields)
    aggregates = ", ".join(f"{c.spread()} AS {c.name}" for c in columns)
    keys = "".join(f", {c}" for c in group)
    names = (*(c.name for c in columns), *MAX_COLUMNS)
    return (
        f"SELECT extract(epoch FROM b)::float8{keys}, {aggregates}, max(interval_seconds) AS max_interval_seconds "
        "FROM (SELECT s.*, g.b, g.b = g.first_b AS first, "
        "extract(epoch FROM least(s.time + s.interval_seconds * interval '1 second', g.b + g.w) "
        "- greatest(s.time, g.b))::float8 AS ov "
        "FROM (SELECT *, %s * interval '1 second' AS w0, %s::timestamptz AS e0 "
        f"FROM {_RAW_TABLE[kind]} WHERE {where} AND time >= %s AND time < %s) s "
        "CROSS JOIN LATERAL (SELECT gb AS b, s.w0 AS w, date_bin(s.w0, s.time, s.e0) AS first_b "
        "FROM generate_series(date_bin(s.w0, s.time, s.e0), "
        "s.time + (s.interval_seconds * interval '1 second') - interval '1 microsecond', s.w0) gb) g"
        f") x WHERE b >= %s AND b < %s GROUP BY b{keys} ORDER BY b"
    ), names


def _raw_sql(entity: Entity) -> tuple[str, tuple[str, ...], list[Any]]:
    where, params = _where(entity)
    sql, names = _raw_spread_sql(entity.kind, where)
    return sql, names, params


def rollup_relation(kind: str, resolution: str) -> str:
    relation = catalogue.ENTITY[kind].relation(resolution)
    if relation is None:
        raise ValueError(f"{kind} has no rollups")
    return relation


def _rollup_sql(entity: Entity, resolution: str) -> tuple[str, list[Any]]:
    where, params = _where(entity)
    return _rollup_select(entity.kind, resolution, where), params


def _rollup_select(
    kind: str, resolution: str, where: str, group: tuple[str, ...] = (), fields: Fields = None
) -> str:
    """Rollup rows summed into step buckets; parameters: step, epoch, the key values of `where`,
    window start, window end."""
    parts = [f"({c.rollup_from_finer()})::float8 AS {c.name}" for c in _columns(kind, fields)]
    # Rollup buckets are at least a minute, longer than any sample interval.
    parts.append("NULL::float8 AS max_interval_seconds")
    keys = "".join(f", {c}" for c in group)
    positions = "".join(f", {i + 2}" for i in range(len(group)))
    return (
        f"SELECT extract(epoch FROM date_bin(%s * interval '1 second', bucket, %s))::float8 AS b{keys}, "
        f"{', '.join(parts)} "
        f"FROM {rollup_relation(kind, resolution)} "
        f"WHERE {where} AND bucket >= %s AND bucket < %s GROUP BY 1{positions} ORDER BY 1"
    )


def _rollup_names(kind: str, fields: Fields = None) -> tuple[str, ...]:
    return (*(c.name for c in _columns(kind, fields)), *MAX_COLUMNS)


class _Buckets:
    """Bucket starts from the epoch seconds the queries return: a window has few distinct buckets
    and many rows, and parsing a timestamptz per row cost more than the sums (bench/query.py)."""

    def __init__(self) -> None:
        self.seen: dict[float, datetime] = {}

    def __call__(self, seconds: float) -> datetime:
        moment = self.seen.get(seconds)
        if moment is None:
            moment = self.seen[seconds] = EPOCH + timedelta(seconds=seconds)
        return moment


def _fetch(sql: str, params: list[Any], *, parallel: bool) -> list[tuple[Any, ...]]:
    db = read_connection()  # the replica when the read API asks (metrics/replica.py)
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        # The planner's cost for the rollup views counts every raw chunk of their real-time
        # branch, so even a 60-row read passes jit_above_cost; compiling it took 7 s of a 7.2 s
        # query on the benchmark data (EXPLAIN ANALYZE, bench/query.py). Reads here are short.
        cursor.execute("SET LOCAL jit = off")
        # Re-bucketing a day of 1m rows of 50 Deployments sorts 72,000 rows of ~35 sums (10 MB):
        # at the default 4 MB that sort went to disk (EXPLAIN ANALYZE, bench/query.py).
        cursor.execute("SET LOCAL work_mem = '32MB'")
        if not parallel:
            # Starting parallel workers for the views' real-time branch, which returns a minute
            # of data, cost 30-100 ms on a busy 2-core machine.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(sql, params)
        return cursor.fetchall()


def fetch_sums(entity: Entity, window: Window) -> dict[datetime, dict[str, Any]]:
    """Per output bucket, the entity's catalogue sums (and MAX_COLUMNS); None where it has none."""
    if window.source == "raw":
        sql, names, key_params = _raw_sql(entity)
        params = [
            window.step, EPOCH, *key_params, window.start - MAX_INTERVAL, window.end,
            window.start, window.end,
        ]
    else:
        sql, key_params = _rollup_sql(entity, window.source)
        names = _rollup_names(entity.kind)
        params = [window.step, EPOCH, *key_params, window.start, window.end]
    rows = _fetch(sql, params, parallel=window.source == "raw")
    result = {}
    at = _Buckets()
    for row in rows:
        sums = dict.fromkeys(SUM_NAMES)
        sums.update(zip(names, row[1:]))
        result[at(row[0])] = sums
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
    if entity.kind in ("deployment", "serving_deployment"):
        pods = pods.filter(deployment=entity.key[1])
    if entity.kind in catalogue.SERVING:
        pods = pods.filter(model_server__isnull=False)  # the nodes of its server pods
    pods = pods.filter(first_seen__lt=window.end, last_seen__gte=window.start - timedelta(minutes=2))
    return sorted(set(pods.values_list("node_id", flat=True)))


def node_coverage_by_node(node_ids: list[int], window: Window) -> dict[tuple[int, datetime], float]:
    """Per node and bucket: the seconds of the bucket its samples cover. Node samples come in the
    same batch as their pods' samples, so a node's coverage is the coverage of every pod on it."""
    if not node_ids:
        return {}
    if window.source == "raw":
        inner = (
            "SELECT extract(epoch FROM b)::float8, node_id, sum(ov) AS cov FROM (SELECT s.node_id, gb AS b, "
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
            "SELECT extract(epoch FROM date_bin(%s * interval '1 second', bucket, %s))::float8, node_id, "
            f"sum(covered_seconds)::float8 AS cov FROM {rollup_relation('node', window.source)} "
            "WHERE node_id = ANY(%s) AND bucket >= %s AND bucket < %s GROUP BY 1, 2"
        )
        params = [window.step, EPOCH, node_ids, window.start, window.end]
    rows = _fetch(inner, params, parallel=False)
    at = _Buckets()
    return {(row[1], at(row[0])): min(float(window.step), float(row[2])) for row in rows}


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


def _sum_node_coverage(
    by_node: dict[int, list[tuple[datetime, float]]], nodes: frozenset[int]
) -> dict[datetime, tuple[float, int]]:
    """_sum_coverage from coverage indexed by node (series_many: one pass per node set)."""
    result: dict[datetime, tuple[float, int]] = {}
    for node in nodes:
        for bucket, seconds in by_node.get(node, ()):
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


# The catalogue's resource metrics (model servers have their own points, SERVING_POINTS), then
# coverage.
POINTS = (
    *(PointField(m.name, m.unit, m.help, m.integer) for m in catalogue.METRICS if m.entities <= catalogue.RESOURCES),
    PointField(
        "coverage", "0..1",
        "Share of the bucket for which samples exist: for a pod, container or node its own, for a "
        "namespace, Deployment or the cluster that of the nodes its pods ran on. Below 1 the bucket is "
        "partial (still filling, data started or stopped in it, or a collector gap); null when unknown.",
    ),
)
POINT_FIELDS = ("time", *(f.name for f in POINTS))
SERVING_POINTS = (
    *(PointField(m.name, m.unit, m.help, m.integer) for m in catalogue.metrics_of("serving")),
    PointField(
        "coverage", "0..1",
        "Share of the bucket for which samples exist: a server pod's own, a Deployment's that of the "
        "nodes its pods ran on.",
    ),
)
SERVING_FIELDS = tuple(m.name for m in catalogue.metrics_of("serving"))


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
    fields: Fields = None,
) -> dict[str, Any]:
    """One point from a bucket's sums; `seconds` is the bucket's length (`fields`: only these
    metrics are computed, the others stay null).

    A pod or node reads its time-weighted average over the seconds it reported, and its coverage
    is that share of the bucket. A namespace or Deployment is a sum over pods, divided by the
    seconds its nodes reported (`divisor`, from node_coverage) so that a bucket still filling up
    or a collector gap reads the true rate, and `coverage` says which share of the bucket its
    nodes reported.
    """
    point: dict[str, Any] = dict.fromkeys(POINT_FIELDS if fields is None else _point_keys(fields))
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
    # The loop runs once per metric per point (300,000 times for 50 series of a day): plain
    # tuples, no calls.
    for name, how, first, second, scale in _rules(entity.kind, fields):
        value = sums.get(first)
        if value is None:
            continue
        if how == _RATE:
            point[name] = value * scale / divisor if divisor else None
        elif how == _RATIO:
            below = sums.get(second)
            point[name] = value * scale / below if below else None
        elif how == _TOTAL:
            point[name] = int(round(value))
        else:
            point[name] = float(value)
    if entity.kind not in NODE_KINDS and (entity.cpu_capacity_cores or entity.memory_capacity_bytes):
        _capacity_from_node(point, entity)
    return point


@functools.cache
def _point_keys(fields: tuple[str, ...]) -> tuple[str, ...]:
    return ("time", "coverage", *fields)


_RATE, _RATIO, _TOTAL = catalogue.RATE, catalogue.RATIO, catalogue.TOTAL


@functools.cache
def _rules(kind: str, fields: Fields = None) -> tuple[tuple[str, str, str, str, float], ...]:
    """Per metric of a kind (in `fields`): (field, how, column, second column or "", scale)."""
    return tuple(
        (m.name, m.point, m.columns[0].name, m.columns[-1].name if len(m.columns) > 1 else "", m.scale)
        for m in catalogue.metrics_of(kind)
        if fields is None or m.name in fields
    )


def _capacity_from_node(point: dict[str, Any], entity: Entity) -> None:
    # A pod's share of its node, from the node's current capacity in the inventory (only into
    # the fields the point has: a caller may have asked for some).
    values: dict[str, Any] = {}
    if entity.cpu_capacity_cores:
        values["cpu_capacity_millicores"] = entity.cpu_capacity_cores * 1000.0
        values["cpu_percent_of_capacity"] = _div(point.get("cpu_millicores"), values["cpu_capacity_millicores"], 100.0)
    if entity.memory_capacity_bytes:
        values["memory_capacity_bytes"] = float(entity.memory_capacity_bytes)
        values["memory_percent_of_capacity"] = _div(
            point.get("memory_working_set_bytes"), values["memory_capacity_bytes"], 100.0
        )
    for name, value in values.items():
        if name in point:
            point[name] = value


def series(
    entity: Entity, window: Window, now: datetime | None = None, fields: Fields = None
) -> list[dict[str, Any]]:
    """One point per bucket of the window, oldest first; buckets without data have nulls (with
    `fields`: points carry only those, `time` and `coverage`)."""
    now = now or timezone.now()
    sums = fetch_sums(entity, window)
    nodes: list[int] = []
    covered: dict[datetime, tuple[float, int]] = {}
    if entity.kind in AGGREGATE_KINDS:
        nodes = group_node_ids(entity, window)
        covered = node_coverage(nodes, window)
    return _points(entity, window, sums, covered, len(nodes), now, fields)


def _points(
    entity: Entity,
    window: Window,
    sums: dict[datetime, dict[str, Any]],
    covered: dict[datetime, tuple[float, int]],
    node_count: int,
    now: datetime,
    fields: Fields = None,
) -> list[dict[str, Any]]:
    """One point per bucket of the window from its sums (and, for groups, its nodes' coverage);
    with `fields`, points carry only those, `time` and `coverage`."""
    step = timedelta(seconds=window.step)
    points = []
    bucket = window.start
    while bucket < window.end:
        if entity.kind in AGGREGATE_KINDS:
            point = _group_point(
                entity, bucket, window.step, sums.get(bucket), covered.get(bucket), node_count, now, fields
            )
        else:
            point = point_from_sums(entity, bucket, float(window.step), sums.get(bucket), fields=fields)
        points.append(point)
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
    fields: Fields = None,
) -> dict[str, Any]:
    if covered and covered[1]:
        seconds, reporting = covered
        # The mean of the reporting nodes' covered seconds: exact when they report at one
        # cadence, and a node silent for the whole bucket lowers coverage, not the rate.
        divisor = seconds / reporting
        coverage = min(1.0, seconds / (max(node_count, reporting) * step))
        return point_from_sums(entity, bucket, float(step), sums, divisor=divisor, coverage=coverage, fields=fields)
    # No node samples (data written without its node's, as some tests and old data do): the
    # bucket's elapsed part, and an unknown coverage.
    elapsed = min(step, max((now - bucket).total_seconds(), 1.0))
    point = point_from_sums(entity, bucket, float(step), sums, divisor=elapsed, fields=fields)
    if sums and sums.get("samples"):
        point["coverage"] = None
    else:
        point["coverage"] = 0.0 if node_count else None
    return point


# --- latest usage ------------------------------------------------------------------------------

def _latest_raw(kind: str, ids: list[int], since: datetime) -> dict[int, dict[str, Any]]:
    """The newest sample of each id within the lookback, as the catalogue sums of one sample
    (so it goes through point_from_sums like a bucket), plus its time and interval."""
    if not ids:
        return {}
    (key,) = _KEY_COLUMNS[kind]
    columns = _columns(kind)
    sums = ", ".join(f"{c.one_sample()} AS {c.name}" for c in columns)
    # One index probe per id on the (key, time) unique index, newest chunk first: no scan, and
    # the time bound lets TimescaleDB skip all but the newest chunks.
    sql = (
        f"SELECT k.id, s.* FROM unnest(%s::bigint[]) AS k(id) "
        f"CROSS JOIN LATERAL (SELECT time, interval_seconds, {sums} FROM {_RAW_TABLE[kind]} "
        f"WHERE {key} = k.id AND time >= %s ORDER BY time DESC LIMIT 1) s"
    )
    names = ("time", "interval_seconds", *(c.name for c in columns))
    with read_connection().cursor() as cursor:
        cursor.execute(sql, [list(ids), since])
        result = {}
        for row in cursor.fetchall():
            values: dict[str, Any] = dict.fromkeys(SUM_NAMES)
            values.update(zip(names, row[1:]))
            values["max_interval_seconds"] = values["interval_seconds"]
            result[row[0]] = values
        return result


def usage_from_sample(entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    usage = point_from_sums(entity, row["time"], row["interval_seconds"], row)
    usage["interval_seconds"] = row["interval_seconds"]
    return usage


def latest_pods(pods: Iterable[Any], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Newest usage of each pod (objects with id and node capacities), keyed by pod id."""
    pods = list(pods)
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = _latest_raw("pod", [p.id for p in pods], since)
    result = {}
    for pod in pods:
        if pod.id in rows:
            node = pod.node
            entity = Entity("pod", (pod.id,), node.cpu_capacity_cores, node.memory_total_bytes)
            result[pod.id] = usage_from_sample(entity, rows[pod.id])
    return result


def latest_nodes(ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = _latest_raw("node", ids, since)
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
    names = [c.name for c in _columns(kind)]
    sums = ", ".join(f"r.{c}" for c in names)
    since = now - LATEST_BUCKET_LOOKBACK
    sql = (
        f"SELECT {', '.join('k.' + c for c in cols)}, r.bucket, {sums} "
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
        values: dict[str, Any] = dict.fromkeys(SUM_NAMES)
        values.update(zip(names, row[len(cols) + 1 :]))
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
    entities: list[Entity], window: Window, now: datetime | None = None, fields: Fields = None
) -> list[list[dict[str, Any]]]:
    """The series of many entities of one kind, in their order, with a fixed number of queries
    (one for the sums, and for namespaces and Deployments one for their nodes and one for those
    nodes' coverage), whatever their number. Each equals series() of that entity. `fields`
    (point field names) limits the sums read and the points to those fields."""
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
        sql, names = _raw_spread_sql(kind, where, group=cols, fields=fields)
        params = [window.step, EPOCH, *key_params, window.start - MAX_INTERVAL, window.end, window.start, window.end]
    else:
        sql = _rollup_select(kind, window.source, where, group=cols, fields=fields)
        names = _rollup_names(kind, fields)
        params = [window.step, EPOCH, *key_params, window.start, window.end]
    sums: dict[tuple[Any, ...], dict[datetime, dict[str, Any]]] = {}
    at = _Buckets()
    for row in _fetch(sql, params, parallel=window.source == "raw"):
        # Sums an entity lacks are simply absent: point_from_sums reads them with get().
        values = dict(zip(names, row[1 + len(cols):]))
        sums.setdefault(tuple(row[1 : 1 + len(cols)]), {})[at(row[0])] = values
    nodes_of: dict[tuple[Any, ...], set[int]] = {}
    per_node: dict[tuple[int, datetime], float] = {}
    if kind in AGGREGATE_KINDS:
        nodes_of = _group_nodes_in(kind, keys, window)
        per_node = node_coverage_by_node(sorted({n for ns in nodes_of.values() for n in ns}), window)
    result = []
    # Many groups share their nodes (every Deployment spread over the same few): sum once per set.
    coverage_of: dict[frozenset[int], dict[datetime, tuple[float, int]]] = {}
    by_node: dict[int, list[tuple[datetime, float]]] = {}
    for (node, bucket), seconds in per_node.items():
        by_node.setdefault(node, []).append((bucket, seconds))
    for entity in entities:
        key = tuple(entity.key)
        nodes = nodes_of.get(key, set())
        covered: dict[datetime, tuple[float, int]] = {}
        if kind in AGGREGATE_KINDS:
            node_set = frozenset(nodes)
            if node_set not in coverage_of:
                coverage_of[node_set] = _sum_node_coverage(by_node, node_set)
            covered = coverage_of[node_set]
        result.append(_points(entity, window, sums.get(key, {}), covered, len(nodes), now, fields))
    return result


def _group_nodes_in(kind: str, keys: list[tuple[Any, ...]], window: Window) -> dict[tuple[Any, ...], set[int]]:
    """group_node_ids for many namespaces or Deployments in one query."""
    from metrics.models import Pod

    pods = Pod.objects.filter(
        namespace__in={k[0] for k in keys}, first_seen__lt=window.end,
        last_seen__gte=window.start - timedelta(minutes=2),
    )
    if kind in catalogue.SERVING:
        pods = pods.filter(model_server__isnull=False)
    wanted = set(map(tuple, keys))
    nodes: dict[tuple[Any, ...], set[int]] = {}
    for namespace, deployment, node_id in pods.values_list("namespace", "deployment", "node_id").distinct():
        key = (namespace,) if len(_KEY_COLUMNS[kind]) == 1 else (namespace, deployment)
        if key in wanted:
            nodes.setdefault(key, set()).add(node_id)
    return nodes


def latest_containers(ids: list[int], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Newest sample of each container within the lookback, keyed by container id."""
    since = (now or timezone.now()) - LATEST_LOOKBACK
    rows = _latest_raw("container", ids, since)
    return {i: usage_from_sample(Entity("container", (i,)), row) for i, row in rows.items()}
