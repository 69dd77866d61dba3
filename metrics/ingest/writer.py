"""Store one validated batch in one transaction: inventory upserts, then samples by COPY.

Round trips per batch, in the common case (pods and containers unchanged and written less than a
minute ago): one statement that upserts the node and inserts its sample, one COPY for the pods,
one COPY for the containers, the rollup bookkeeping, and COMMIT. The node sample's unique
(node, time) is the batch's idempotency key: if it already exists the batch is a retry, and the
transaction is rolled back so nothing at all is written twice.

Inventory is kept in an in-process cache per node (ids, the last values written and when). A pod
or container row is upserted only when it is new or something about it changed; when only its
last_seen is a minute old (the model promises last_seen to within a minute) a cheap UPDATE by id
refreshes it, and a row deleted meanwhile (e.g. in the admin) is written again. The cache is filled
only after COMMIT, so a rolled-back batch never leaves ids behind, and a node whose row was deleted
and recreated (different id or first_seen) drops the cache of its pods.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any, Callable, Iterable

import psycopg
from django.db import connection, transaction

from metrics.ingest.schema import IngestBatch as Batch

try:  # Provided by the storage engineer's rollups module; optional until it lands.
    from metrics.rollups import record_ingested_range as _record_ingested_range
except ImportError:  # pragma: no cover - depends on what is merged
    _record_ingested_range = None

# Pods' and containers' last_seen is refreshed when it is this old (see Pod.last_seen).
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Binary COPY skips formatting every number as text and parsing it back (measured in bench/ingest.py).
COPY_FORMAT = "BINARY"

# Columns every sample table has, in SampleBase order.
BASE_USAGE = [
    "cpu_seconds",
    "memory_working_set_bytes",
    "memory_rss_bytes",
    "memory_cache_bytes",
    "disk_read_bytes",
    "disk_write_bytes",
    "disk_read_ops",
    "disk_write_ops",
    "cpu_throttled_seconds",
    "cpu_throttled_periods",
    "cpu_periods",
    "oom_kills",
    "psi_cpu_some_seconds",
    "psi_memory_some_seconds",
    "psi_memory_full_seconds",
    "psi_io_some_seconds",
    "psi_io_full_seconds",
    "gpu_utilization_percent",
    "gpu_memory_bytes",
]
NETWORK = [
    "net_rx_bytes",
    "net_tx_bytes",
    "net_rx_packets",
    "net_tx_packets",
    "net_rx_errors",
    "net_tx_errors",
    "net_rx_dropped",
    "net_tx_dropped",
]
NODE_ONLY = [
    "cpu_capacity_cores",
    "memory_total_bytes",
    "memory_available_bytes",
    "fs_used_bytes",
    "fs_capacity_bytes",
]
POD_USAGE = BASE_USAGE + NETWORK + ["cpu_limit_cores", "memory_limit_bytes", "fs_used_bytes"]
CONTAINER_USAGE = BASE_USAGE + ["cpu_limit_cores", "memory_limit_bytes", "restarts"]

POD_SAMPLE_COLUMNS = ["pod_id", "node_id", "time", "interval_seconds", "namespace", "deployment"] + POD_USAGE
CONTAINER_SAMPLE_COLUMNS = ["container_id", "pod_id", "time", "interval_seconds"] + CONTAINER_USAGE

_FLOATS = {
    "interval_seconds",
    "cpu_seconds",
    "cpu_throttled_seconds",
    "psi_cpu_some_seconds",
    "psi_memory_some_seconds",
    "psi_memory_full_seconds",
    "psi_io_some_seconds",
    "psi_io_full_seconds",
    "gpu_utilization_percent",
    "cpu_limit_cores",
    "cpu_capacity_cores",
}
_INTS = {"oom_kills", "restarts"}
_TEXT = {"namespace", "deployment"}


def _pg_type(column: str) -> str:
    if column == "time":
        return "timestamptz"
    if column in _FLOATS:
        return "float8"
    if column in _INTS:
        return "int4"
    if column in _TEXT:
        return "text"
    return "int8"


POD_SAMPLE_TYPES = [_pg_type(c) for c in POD_SAMPLE_COLUMNS]
CONTAINER_SAMPLE_TYPES = [_pg_type(c) for c in CONTAINER_SAMPLE_COLUMNS]

_pod_usage = attrgetter(*POD_USAGE)
_container_usage = attrgetter(*CONTAINER_USAGE)


def _node_value(usage: Any, name: str) -> Any:
    return getattr(usage, name, None)


# --- SQL ------------------------------------------------------------------------------------------

_NODE_SAMPLE_COLUMNS = ["node_id", "time", "interval_seconds"] + BASE_USAGE + NETWORK + NODE_ONLY


def _newer(table: str, column: str, keep_old_when_null: bool = False) -> str:
    """SET clause that takes the incoming value only when this batch is not older than the row."""
    new = f"COALESCE(EXCLUDED.{column}, {table}.{column})" if keep_old_when_null else f"EXCLUDED.{column}"
    return (
        f"{column} = CASE WHEN EXCLUDED.last_seen >= {table}.last_seen THEN {new} "
        f"ELSE {table}.{column} END"
    )


NODE_SQL = f"""
WITH node AS (
    INSERT INTO metrics_node
        (name, first_seen, last_seen, cpu_capacity_cores, memory_total_bytes, fs_capacity_bytes,
         collector_info)
    VALUES (%s::text, %s::timestamptz, %s::timestamptz, %s::float8, %s::int8, %s::int8, %s::jsonb)
    ON CONFLICT (name) DO UPDATE SET
        first_seen = LEAST(metrics_node.first_seen, EXCLUDED.first_seen),
        {_newer("metrics_node", "cpu_capacity_cores", keep_old_when_null=True)},
        {_newer("metrics_node", "memory_total_bytes", keep_old_when_null=True)},
        {_newer("metrics_node", "fs_capacity_bytes", keep_old_when_null=True)},
        {_newer("metrics_node", "collector_info")},
        last_seen = GREATEST(metrics_node.last_seen, EXCLUDED.last_seen)
    RETURNING id, first_seen
), sample AS (
    INSERT INTO metrics_nodesample ({", ".join(_NODE_SAMPLE_COLUMNS)})
    SELECT node.id, {", ".join(f"%s::{_pg_type(c)}" for c in _NODE_SAMPLE_COLUMNS[1:])} FROM node
    ON CONFLICT (node_id, time) DO NOTHING
    RETURNING 1
)
SELECT node.id, node.first_seen, EXISTS (SELECT FROM sample) FROM node
"""

_POD_INVENTORY = [
    ("uid", "text"),
    ("name", "text"),
    ("namespace", "text"),
    ("node_id", "int8"),
    ("owner_kind", "text"),
    ("owner_name", "text"),
    ("deployment", "text"),
    ("qos", "text"),
    ("labels", "text"),
    ("cpu_limit_cores", "float8"),
    ("memory_limit_bytes", "int8"),
    ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
]
_POD_SELECT = ", ".join(f"u.{c}::jsonb" if c == "labels" else f"u.{c}" for c, _ in _POD_INVENTORY)
POD_SQL = f"""
INSERT INTO metrics_pod ({", ".join(c for c, _ in _POD_INVENTORY)})
SELECT {_POD_SELECT}
FROM unnest({", ".join(f"%s::{t}[]" for _, t in _POD_INVENTORY)}) AS u({", ".join(c for c, _ in _POD_INVENTORY)})
ON CONFLICT (uid) DO UPDATE SET
    {", ".join(_newer("metrics_pod", c) for c, _ in _POD_INVENTORY[1:11])},
    first_seen = LEAST(metrics_pod.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(metrics_pod.last_seen, EXCLUDED.last_seen)
RETURNING id, uid
"""

CONTAINER_SQL = f"""
INSERT INTO metrics_container (pod_id, name, container_id, image, first_seen, last_seen)
SELECT * FROM unnest(%s::int8[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
ON CONFLICT (pod_id, name) DO UPDATE SET
    {_newer("metrics_container", "container_id")},
    {_newer("metrics_container", "image")},
    first_seen = LEAST(metrics_container.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(metrics_container.last_seen, EXCLUDED.last_seen)
RETURNING id, pod_id, name
"""

POD_COPY = f"COPY metrics_podsample ({', '.join(POD_SAMPLE_COLUMNS)}) FROM STDIN (FORMAT {COPY_FORMAT})"
CONTAINER_COPY = (
    f"COPY metrics_containersample ({', '.join(CONTAINER_SAMPLE_COLUMNS)}) "
    f"FROM STDIN (FORMAT {COPY_FORMAT})"
)


# --- inventory cache ------------------------------------------------------------------------------


@dataclass
class _Entry:
    id: int
    values: tuple[Any, ...]
    written: datetime  # last_seen as last written to the row


@dataclass
class _NodeCache:
    node_id: int
    first_seen: datetime
    pods: dict[str, _Entry] = field(default_factory=dict)  # by uid
    containers: dict[tuple[int, str], _Entry] = field(default_factory=dict)  # by (pod id, name)


_cache: dict[str, _NodeCache] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget all cached inventory ids (tests that recreate the database call this)."""
    with _cache_lock:
        _cache.clear()


def _touch(cursor: Any, table: str, ids: list[int], last_seen: datetime) -> set[int]:
    """Refresh last_seen of unchanged rows; returns the ids still there (not deleted meanwhile)."""
    rows = cursor.execute(
        f"UPDATE {table} SET last_seen = GREATEST(last_seen, %s) WHERE id = ANY(%s) RETURNING id",
        [last_seen, sorted(ids)],
    ).fetchall()
    return {row[0] for row in rows}


# --- result ---------------------------------------------------------------------------------------


@dataclass
class Stored:
    duplicate: bool
    pods: int = 0
    containers: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class SampleConflict(Exception):
    """A pod or container sample overlaps one already stored (its start time is taken)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Duplicate(Exception):
    pass


_KEY_DETAIL = re.compile(r"\((\w+), \"?time\"?\)=\((\d+), ([^)]*)\)")


def _conflict_errors(exc: psycopg.Error, batch: Batch, pod_ids: dict[str, int], container_ids: dict[tuple[int, str], int]) -> dict[str, list[str]]:
    detail = getattr(exc.diag, "message_detail", None) or ""
    match = _KEY_DETAIL.search(detail)
    if match:
        column, key, start = match.group(1), int(match.group(2)), match.group(3)
        for i, pod in enumerate(batch.pods):
            pod_id = pod_ids.get(pod.uid)
            if column == "pod_id" and pod_id == key:
                return {f"pods[{i}]": [f"A sample of this pod starting at {start} is already stored (overlapping intervals)."]}
            for j, container in enumerate(pod.containers):
                if column == "container_id" and container_ids.get((pod_id or -1, container.name)) == key:
                    return {
                        f"pods[{i}].containers[{j}]": [
                            f"A sample of this container starting at {start} is already stored (overlapping intervals)."
                        ]
                    }
    return {"pods": ["A sample in this batch overlaps one already stored (overlapping intervals)."]}


# --- writing --------------------------------------------------------------------------------------


def store(batch: Batch, received: datetime | None = None, clock: Callable[[], float] | None = None) -> Stored:
    """Write `batch` atomically. Returns Stored(duplicate=True) and writes nothing for a retry.

    Raises SampleConflict (nothing written) when a pod's or container's interval overlaps a stored
    one. `clock` (e.g. time.perf_counter) fills Stored.timings for the benchmark's breakdown.
    """
    timings: dict[str, float] = {}
    tick = clock or (lambda: 0.0)
    end = batch.time.astimezone(timezone.utc)
    interval = batch.interval_seconds
    start = end - timedelta(seconds=interval)
    usage = batch.node_usage

    info: dict[str, Any] = batch.collector.model_dump() if batch.collector is not None else {}
    info["warnings"] = list(batch.warnings or [])
    if received is not None:
        info["received"] = received.isoformat()
        # Positive: the node's clock is ahead of the server's (its interval "ends" in the future).
        info["clock_skew_seconds"] = round((end - received).total_seconds(), 3)

    pod_ids: dict[str, int] = {}
    container_ids: dict[tuple[int, str], int] = {}
    try:
        with transaction.atomic(), connection.cursor() as django_cursor:
            # The psycopg cursor itself: COPY, and no Django wrapper overhead per statement.
            # (A server-side-binding cursor, which would prepare the statements, measured no faster.)
            cursor = django_cursor.cursor
            t0 = tick()
            node_row = cursor.execute(
                NODE_SQL,
                [
                    batch.node,
                    start,
                    end,
                    usage.cpu_capacity_cores,
                    usage.memory_total_bytes,
                    usage.fs_capacity_bytes,
                    json.dumps(info),
                    start,
                    interval,
                    *[_node_value(usage, c) for c in _NODE_SAMPLE_COLUMNS[3:]],
                ],
            ).fetchone()
            assert node_row is not None
            node_id, node_first_seen, inserted = node_row
            if not inserted:
                raise _Duplicate
            t1 = tick()
            timings["node"] = t1 - t0

            cached = _cache.get(batch.node)
            if cached is None or cached.node_id != node_id or cached.first_seen != node_first_seen:
                cached = _NodeCache(node_id, node_first_seen)
            new_cache = _NodeCache(node_id, node_first_seen)

            # Pods: upsert the new and changed ones in one statement, touch the stale ones.
            starts: dict[float, datetime] = {interval: start}
            upsert: list[tuple[Any, ...]] = []  # new or changed: full upsert
            touch: list[tuple[Any, ...]] = []  # unchanged, last_seen a minute old: touch it
            for pod in batch.pods:
                pod_interval = pod.interval_seconds or interval
                pod_start = starts.get(pod_interval) or starts.setdefault(
                    pod_interval, end - timedelta(seconds=pod_interval)
                )
                values = (
                    pod.name,
                    pod.namespace,
                    node_id,
                    pod.owner_kind or "",
                    pod.owner_name or "",
                    pod.deployment,
                    pod.qos or "",
                    pod.labels,
                    pod.cpu_limit_cores,
                    pod.memory_limit_bytes,
                )
                entry = cached.pods.get(pod.uid)
                if entry is None or entry.values != values:
                    upsert.append((pod.uid, values, pod_start))
                elif end - entry.written < LAST_SEEN_RESOLUTION:  # also a late batch: nothing to do
                    pod_ids[pod.uid] = entry.id
                    new_cache.pods[pod.uid] = entry
                else:
                    touch.append((pod.uid, entry.id, values, pod_start))
            if touch:
                alive = _touch(cursor, "metrics_pod", [row[1] for row in touch], end)
                for uid, pod_id, values, pod_start in touch:
                    if pod_id in alive:
                        pod_ids[uid] = pod_id
                        new_cache.pods[uid] = _Entry(pod_id, values, end)
                    else:  # deleted since it was cached (e.g. in the admin): write it again
                        upsert.append((uid, values, pod_start))
            if upsert:
                upsert.sort(key=lambda row: row[0])  # a stable lock order across concurrent batches
                columns: list[list[Any]] = [[] for _ in _POD_INVENTORY]
                for uid, values, pod_start in upsert:
                    row = (uid, *values[:7], json.dumps(values[7]), *values[8:], pod_start, end)
                    for column, value in zip(columns, row):
                        column.append(value)
                by_uid = {uid: values for uid, values, _ in upsert}
                for pod_id, uid in cursor.execute(POD_SQL, columns).fetchall():
                    pod_ids[uid] = pod_id
                    new_cache.pods[uid] = _Entry(pod_id, by_uid[uid], end)
            t2 = tick()
            timings["pods"] = t2 - t1

            # Containers, the same way.
            c_upsert: list[tuple[int, str, tuple[str, str], datetime]] = []
            c_touch: list[tuple[Any, ...]] = []
            for pod in batch.pods:
                pod_id = pod_ids[pod.uid]
                pod_interval = pod.interval_seconds or interval
                for container in pod.containers:
                    c_values = (container.id, container.image)
                    key = (pod_id, container.name)
                    entry = cached.containers.get(key)
                    if entry is None or entry.values != c_values:
                        c_interval = container.interval_seconds or pod_interval
                        c_start = starts.get(c_interval) or end - timedelta(seconds=c_interval)
                        c_upsert.append((pod_id, container.name, c_values, c_start))
                    elif end - entry.written < LAST_SEEN_RESOLUTION:
                        container_ids[key] = entry.id
                        new_cache.containers[key] = entry
                    else:
                        c_touch.append((key, entry.id, c_values, container.interval_seconds or pod_interval))
            if c_touch:
                alive = _touch(cursor, "metrics_container", [row[1] for row in c_touch], end)
                for key, container_id, c_values, c_interval in c_touch:
                    if container_id in alive:
                        container_ids[key] = container_id
                        new_cache.containers[key] = _Entry(container_id, c_values, end)
                    else:
                        c_start = starts.get(c_interval) or end - timedelta(seconds=c_interval)
                        c_upsert.append((key[0], key[1], c_values, c_start))
            if c_upsert:
                c_upsert.sort(key=lambda row: (row[0], row[1]))
                c_columns: list[list[Any]] = [[], [], [], [], [], []]
                for pod_id, name, (cid, image), c_start in c_upsert:
                    for column, value in zip(c_columns, (pod_id, name, cid, image, c_start, end)):
                        column.append(value)
                c_by_key = {(p, n): v for p, n, v, _ in c_upsert}
                for container_id, pod_id, name in cursor.execute(CONTAINER_SQL, c_columns).fetchall():
                    container_ids[(pod_id, name)] = container_id
                    new_cache.containers[(pod_id, name)] = _Entry(container_id, c_by_key[(pod_id, name)], end)
            t3 = tick()
            timings["containers"] = t3 - t2

            # Samples.
            earliest = start
            n_containers = sum(len(pod.containers) for pod in batch.pods)
            if batch.pods:
                earliest = min(earliest, _copy_pods(cursor, batch, pod_ids, node_id, starts))
            t4 = tick()
            timings["copy_pods"] = t4 - t3
            if n_containers:
                earliest = min(earliest, _copy_containers(cursor, batch, pod_ids, container_ids, starts))
            t5 = tick()
            timings["copy_containers"] = t5 - t4

            if _record_ingested_range is not None:
                _record_ingested_range(cursor, earliest, end)
            timings["rollup_log"] = tick() - t5

            def remember() -> None:
                with _cache_lock:
                    _cache[batch.node] = new_cache

            transaction.on_commit(remember)
            t6 = tick()
        timings["commit"] = tick() - t6
    except _Duplicate:
        return Stored(duplicate=True, timings=timings)
    except psycopg.errors.UniqueViolation as exc:
        raise SampleConflict(_conflict_errors(exc, batch, pod_ids, container_ids)) from None
    return Stored(duplicate=False, pods=len(batch.pods), containers=n_containers, timings=timings)


def _copy_pods(cursor: Any, batch: Batch, pod_ids: dict[str, int], node_id: int, starts: dict[float, datetime]) -> datetime:
    """COPY the pod samples; returns the earliest start written (`starts` holds every start used)."""
    interval = batch.interval_seconds
    with cursor.copy(POD_COPY) as copy:
        if COPY_FORMAT == "BINARY":
            copy.set_types(POD_SAMPLE_TYPES)
        write = copy.write_row
        for pod in batch.pods:
            pod_interval = pod.interval_seconds or interval
            write((pod_ids[pod.uid], node_id, starts[pod_interval], pod_interval, pod.namespace, pod.deployment, *_pod_usage(pod)))
    return min(starts.values())


def _copy_containers(
    cursor: Any,
    batch: Batch,
    pod_ids: dict[str, int],
    container_ids: dict[tuple[int, str], int],
    starts: dict[float, datetime],
) -> datetime:
    """COPY the container samples; returns the earliest start written."""
    interval = batch.interval_seconds
    end = batch.time.astimezone(timezone.utc)
    with cursor.copy(CONTAINER_COPY) as copy:
        if COPY_FORMAT == "BINARY":
            copy.set_types(CONTAINER_SAMPLE_TYPES)
        write = copy.write_row
        for pod in batch.pods:
            pod_id = pod_ids[pod.uid]
            pod_interval = pod.interval_seconds or interval
            for container in pod.containers:
                c_interval = container.interval_seconds or pod_interval
                c_start = starts.get(c_interval) or starts.setdefault(c_interval, end - timedelta(seconds=c_interval))
                write((container_ids[(pod_id, container.name)], pod_id, c_start, c_interval, *_container_usage(container)))
    return min(starts.values())
