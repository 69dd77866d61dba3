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
only after COMMIT, so a rolled-back batch never leaves ids behind; a node whose row was deleted
and recreated (different id or first_seen) drops the cache of its pods; and the least recently
seen nodes are forgotten beyond settings.INGEST_INVENTORY_CACHE_NODES (default 2000, about 70 KB
each per worker process).
"""

from __future__ import annotations

from collections.abc import Collection

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any, Callable

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction

from metrics.ingest.gpus import GpuSampleConflict, store_gpus
from metrics.ingest import overlap
from metrics import clusters
from metrics.ingest.schema import IngestBatch as Batch
from metrics.models import (
    ContainerSample,
    NetworkMixin,
    NodeSample,
    Pod,
    PodSample,
    SampleBase,
    ServingSample,
)

try:  # Provided by the storage engineer's rollups module; optional until it lands.
    from metrics.rollups import record_ingested_range as _record_ingested_range
except ImportError:  # pragma: no cover - depends on what is merged
    _record_ingested_range = None  # type: ignore[assignment]

# Pods' and containers' last_seen is refreshed when it is this old (see Pod.last_seen).
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
_RESOLUTION = LAST_SEEN_RESOLUTION.total_seconds()
# Binary COPY skips formatting every number as text and parsing it back (measured in bench/ingest.py).
COPY_FORMAT = "BINARY"

# Column lists and COPY types come from the models, so a metric added there reaches ingest (and
# fails loudly at import if the batch schema lacks it) instead of drifting from a copy kept here.
_SAMPLE_KEYS = {"id", "time", "interval_seconds"}


def _names(model: type[models.Model], exclude: Collection[str] = frozenset()) -> list[str]:
    return [f.attname for f in model._meta.local_fields if f.attname not in exclude]


BASE_USAGE = _names(SampleBase, _SAMPLE_KEYS)
NETWORK = _names(NetworkMixin)
_SHARED = _SAMPLE_KEYS | set(BASE_USAGE) | set(NETWORK)
NODE_ONLY = _names(NodeSample, _SHARED | {"node_id"})
POD_USAGE = BASE_USAGE + NETWORK + _names(PodSample, _SHARED | {"pod_id", "node_id", "namespace", "deployment"})
CONTAINER_USAGE = BASE_USAGE + _names(ContainerSample, _SHARED | {"container_id", "pod_id"})

POD_SAMPLE_COLUMNS = ["pod_id", "node_id", "time", "interval_seconds", "namespace", "deployment"] + POD_USAGE
CONTAINER_SAMPLE_COLUMNS = ["container_id", "pod_id", "time", "interval_seconds"] + CONTAINER_USAGE

# PostgreSQL type names for binary COPY and typed parameters, by Django field type.
_PG_TYPES = {
    "FloatField": "float8",
    "BigIntegerField": "int8",
    "BigAutoField": "int8",
    "ForeignKey": "int8",
    "IntegerField": "int4",
    "CharField": "text",
    "DateTimeField": "timestamptz",
    "JSONField": "jsonb",
    "BooleanField": "bool",
}


def _pg_types(model: type[models.Model], columns: list[str]) -> list[str]:
    fields = {f.attname: f for f in model._meta.concrete_fields}
    return [_PG_TYPES[fields[c].get_internal_type()] for c in columns]


POD_SAMPLE_TYPES = _pg_types(PodSample, POD_SAMPLE_COLUMNS)
CONTAINER_SAMPLE_TYPES = _pg_types(ContainerSample, CONTAINER_SAMPLE_COLUMNS)

# Model serving: one row per pod that sent a `serving` block (metrics.models.ServingSample).
SERVING_USAGE = _names(
    ServingSample,
    {"id", "time", "interval_seconds", "pod_id", "node_id", "namespace", "deployment", "model_server", "model_name"},
)
SERVING_SAMPLE_COLUMNS = (
    ["pod_id", "node_id", "time", "interval_seconds", "namespace", "deployment", "model_server", "model_name"]
    + SERVING_USAGE
)
SERVING_SAMPLE_TYPES = _pg_types(ServingSample, SERVING_SAMPLE_COLUMNS)
_serving_usage = attrgetter(*SERVING_USAGE)
SERVING_COPY = (
    f"COPY metrics_servingsample ({', '.join(SERVING_SAMPLE_COLUMNS)}) FROM STDIN (FORMAT {COPY_FORMAT})"
)

_pod_usage = attrgetter(*POD_USAGE)
_container_usage = attrgetter(*CONTAINER_USAGE)
# The container state columns (alerting): part of the inventory upsert and its change check.
CONTAINER_STATE = ["ready", "state", "state_reason", "last_termination_reason", "last_termination_time"]
_container_key = attrgetter("name", "id", "image", *CONTAINER_STATE)
_container_state = attrgetter(*CONTAINER_STATE)
_name = attrgetter("name")


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
         collector_info, interval_seconds, cluster_id)
    VALUES (%b::text, %b::timestamptz, %b::timestamptz, %b::float8, %b::int8, %b::int8, %b::jsonb,
            %b::float8, %b::int8)
    ON CONFLICT (name) DO UPDATE SET
        first_seen = LEAST(metrics_node.first_seen, EXCLUDED.first_seen),
        {_newer("metrics_node", "cpu_capacity_cores", keep_old_when_null=True)},
        {_newer("metrics_node", "memory_total_bytes", keep_old_when_null=True)},
        {_newer("metrics_node", "fs_capacity_bytes", keep_old_when_null=True)},
        {_newer("metrics_node", "collector_info")},
        {_newer("metrics_node", "interval_seconds")},
        last_seen = GREATEST(metrics_node.last_seen, EXCLUDED.last_seen)
    RETURNING id, first_seen, cluster_id
), sample AS (
    INSERT INTO metrics_nodesample ({", ".join(_NODE_SAMPLE_COLUMNS)})
    SELECT node.id, {", ".join(f"%b::{t}" for t in _pg_types(NodeSample, _NODE_SAMPLE_COLUMNS)[1:])} FROM node
    ON CONFLICT (node_id, time) DO NOTHING
    RETURNING 1
)
SELECT node.id, node.first_seen, EXISTS (SELECT FROM sample), node.cluster_id FROM node
"""

# The pod inventory's columns, from the model: a column added to Pod reaches the upsert (and
# fails loudly in _pod_row if the batch lacks it) instead of drifting from a copy kept here.
# `first_seen` / `last_seen` are merged with LEAST / GREATEST; `uid` is the conflict key; every
# other column takes the newest batch's value.
_POD_COLUMNS = _names(Pod, {"id"})
# jsonb travels as text in the unnest arrays and is cast in the SELECT.
_POD_INVENTORY = [
    (c, "text" if t == "jsonb" else t) for c, t in zip(_POD_COLUMNS, _pg_types(Pod, _POD_COLUMNS))
]
_POD_UPDATED = [c for c in _POD_COLUMNS if c not in ("uid", "first_seen", "last_seen")]
# Once a pod is known to serve a model it stays known: a batch sent before the collector
# (re)confirmed it says null, which must not blank the inventory.
_POD_KEPT_WHEN_NULL = {"model_server", "model_name"}
_POD_SELECT = ", ".join(f"u.{c}::jsonb" if c == "labels" else f"u.{c}" for c, _ in _POD_INVENTORY)
POD_SQL = f"""
INSERT INTO metrics_pod ({", ".join(c for c, _ in _POD_INVENTORY)})
SELECT {_POD_SELECT}
FROM unnest({", ".join(f"%b::{t}[]" for _, t in _POD_INVENTORY)}) AS u({", ".join(c for c, _ in _POD_INVENTORY)})
ON CONFLICT (uid) DO UPDATE SET
    {", ".join(_newer("metrics_pod", c, keep_old_when_null=c in _POD_KEPT_WHEN_NULL) for c in _POD_UPDATED)},
    first_seen = LEAST(metrics_pod.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(metrics_pod.last_seen, EXCLUDED.last_seen)
RETURNING id, uid
"""

_CONTAINER_STATE_TYPES = ["bool", "text", "text", "text", "timestamptz"]
CONTAINER_SQL = f"""
INSERT INTO metrics_container (pod_id, name, container_id, image, {", ".join(CONTAINER_STATE)}, first_seen, last_seen)
SELECT * FROM unnest(%b::int8[], %b::text[], %b::text[], %b::text[],
                     {", ".join(f"%b::{t}[]" for t in _CONTAINER_STATE_TYPES)}, %b::timestamptz[], %b::timestamptz[])
ON CONFLICT (pod_id, name) DO UPDATE SET
    {_newer("metrics_container", "container_id")},
    {_newer("metrics_container", "image")},
    {", ".join(_newer("metrics_container", c) for c in CONTAINER_STATE)},
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


@dataclass(slots=True)
class PodEntry:
    """What the cache knows of one pod; slots keep it as small as a tuple (about 0.5 KB per pod
    with its containers, see bench/ingest.py). Times are UNIX seconds."""

    pod_id: int
    # Hash of the pod's inventory values (_pod_values), to skip the upsert when unchanged.
    fingerprint: int
    # When its last_seen was written.
    written: float
    # Hash of its containers' (name, runtime id, image, state), their names and ids in that order, and
    # when their last_seen was written.
    containers_fingerprint: int
    container_names: tuple[str, ...]
    container_ids: tuple[int, ...]
    containers_written: float


@dataclass
class _NodeCache:
    node_id: int
    first_seen: datetime
    pods: dict[str, PodEntry] = field(default_factory=dict)  # by uid


# Least recently used nodes are forgotten beyond this many: about 70 KB per 110-pod node and
# worker process (measured), so the default bounds the cache near 140 MB per worker.
# settings.INGEST_INVENTORY_CACHE_NODES overrides it.
DEFAULT_CACHED_NODES = 2000
_cache: OrderedDict[str, _NodeCache] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget all cached inventory ids (tests that recreate the database call this)."""
    with _cache_lock:
        _cache.clear()


def _remember(node: str, entry: _NodeCache) -> None:
    with _cache_lock:
        _cache[node] = entry
        _cache.move_to_end(node)
        limit = getattr(settings, "INGEST_INVENTORY_CACHE_NODES", DEFAULT_CACHED_NODES)
        while len(_cache) > limit:
            _cache.popitem(last=False)


def _touch(cursor: Any, table: str, ids: list[int], last_seen: datetime) -> set[int]:
    """Refresh last_seen of unchanged rows; returns the ids still there (not deleted meanwhile)."""
    rows = cursor.execute(
        f"UPDATE {table} SET last_seen = GREATEST(last_seen, %b) WHERE id = ANY(%b::int8[]) RETURNING id",
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


def _conflict_errors(exc: psycopg.Error, batch: Batch, pod_ids: list[int], container_ids: list[tuple[int, ...]]) -> dict[str, list[str]]:
    detail = getattr(exc.diag, "message_detail", None) or ""
    match = _KEY_DETAIL.search(detail)
    if match:
        column, key, start = match.group(1), int(match.group(2)), match.group(3)
        # On a hypertable the violated index is the chunk's copy, named <chunk prefix>_<index name>.
        serving = (getattr(exc.diag, "constraint_name", None) or "").endswith("servingsample_pod_time_unique")
        for i, pod_id in enumerate(pod_ids):
            if column == "pod_id" and pod_id == key and serving:
                return {f"pods[{i}].serving": [f"A serving sample of this pod starting at {start} is already stored (overlapping intervals)."]}
            if column == "pod_id" and pod_id == key:
                return {f"pods[{i}]": [f"A sample of this pod starting at {start} is already stored (overlapping intervals)."]}
        for i, ids in enumerate(container_ids):
            for j, container_id in enumerate(ids):
                if column == "container_id" and container_id == key:
                    return {
                        f"pods[{i}].containers[{j}]": [
                            f"A sample of this container starting at {start} is already stored (overlapping intervals)."
                        ]
                    }
    return {"pods": ["A sample in this batch overlaps one already stored (overlapping intervals)."]}


# --- writing --------------------------------------------------------------------------------------


def store(
    batch: Batch,
    received: datetime | None = None,
    clock: Callable[[], float] | None = None,
    cluster: clusters.IngestCluster | None = None,
) -> Stored:
    """Write `batch` atomically. Returns Stored(duplicate=True) and writes nothing for a retry.

    Raises SampleConflict (nothing written) when a pod's or container's interval overlaps a stored
    one, and clusters.ClusterRefused (nothing written) when the node belongs to another cluster
    than the one `cluster` (default: from the batch alone, metrics.clusters.for_batch) insists on.
    `clock` (e.g. time.perf_counter) fills Stored.timings for the benchmark's breakdown.
    """
    cluster = cluster or clusters.for_batch(batch.cluster, None)
    try:
        return _store(batch, received, clock, cluster)
    except IntegrityError as exc:
        # A cached cluster id whose row was deleted meanwhile (metrics.clusters): the foreign key
        # is checked at COMMIT, so nothing was stored; once more with fresh ids.
        if not clusters.is_missing_cluster(exc):
            raise
        return _store(batch, received, clock, clusters.resolve_again(cluster))


def _store(
    batch: Batch, received: datetime | None, clock: Callable[[], float] | None, cluster: clusters.IngestCluster
) -> Stored:
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

    pod_ids: list[int] = []
    container_ids: list[tuple[int, ...]] = []
    try:
        with (
            transaction.atomic(),
            connection.cursor() as django_cursor,
            psycopg.Cursor(django_cursor.cursor.connection) as cursor,
        ):
            # A psycopg cursor with server-side binding on Django's connection (same transaction),
            # for COPY and the statements below: their parameters go in binary (%b), apart from
            # the SQL. Django's default client-side cursor would quote every value into the SQL
            # text, which for the inventory arrays cost about 4 ms of CPU per statement against
            # 1 ms (bench/ingest.py --profile-server). Nothing is prepared (Django sets
            # prepare_threshold to None), so poolers in transaction mode stay safe.
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
                    interval,
                    cluster.id,
                    start,
                    interval,
                    *[_node_value(usage, c) for c in _NODE_SAMPLE_COLUMNS[3:]],
                ],
            ).fetchone()
            assert node_row is not None
            node_id, node_first_seen, inserted, node_cluster = node_row
            # Checked before the duplicate test: a retry into the wrong cluster is refused too.
            if cluster.strict and node_cluster != cluster.id:
                raise clusters.refuse_node(batch.node, node_cluster, cluster)
            # Overlaps with this node's stored intervals: a 400, or a retry (raises Duplicate).
            overlapping = overlap.check_node(cursor, node_id, start, end, interval, inserted)
            if overlapping:
                raise SampleConflict(overlapping)
            if not inserted:
                raise _Duplicate
            t1 = tick()
            timings["node"] = t1 - t0

            cached = _cache.get(batch.node)
            if cached is None or cached.node_id != node_id or cached.first_seen != node_first_seen:
                cached = _NodeCache(node_id, node_first_seen)
            starts: dict[float, datetime] = {interval: start}
            own = {pod.interval_seconds for pod in batch.pods}
            own.update(c.interval_seconds for pod in batch.pods for c in pod.containers)
            for seconds in own:
                if seconds is not None and seconds not in starts:
                    starts[seconds] = end - timedelta(seconds=seconds)
            pod_ids, pod_entries = _pods(cursor, batch, node_id, cached, end, starts)
            t2 = tick()
            timings["pods"] = t2 - t1
            container_ids, new_cache = _containers(cursor, batch, pod_ids, pod_entries, cached, end)
            if any(seconds > interval for seconds in starts):  # someone reaches back: rare
                overlapping = _reaching_back(cursor, batch, pod_ids, container_ids, start, end, starts)
                if overlapping:
                    raise SampleConflict(overlapping)
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
            serving = [i for i, pod in enumerate(batch.pods) if pod.serving is not None]
            if serving:
                # A late scrape covers more than one tick and starts before the batch: the
                # rollups' invalidated range must reach back to it.
                earliest = min(earliest, _copy_serving(cursor, batch, serving, pod_ids, node_id, end))
            t5 = tick()
            timings["copy_containers"] = t5 - t4

            # GPUs (metrics/ingest/gpus.py): after the pods, whose ids their samples point at.
            if batch.gpus:
                pod_id_by_uid = {pod.uid: pod_id for pod, pod_id in zip(batch.pods, pod_ids)}
                try:
                    store_gpus(cursor, batch.gpus, node_id, pod_id_by_uid, start, end, interval)
                except GpuSampleConflict as exc:
                    raise SampleConflict(exc.errors) from None

            if _record_ingested_range is not None:
                _record_ingested_range(cursor, earliest, end)
            timings["rollup_log"] = tick() - t5

            # Only once committed: a rolled-back batch must leave no ids behind.
            transaction.on_commit(lambda: _remember(batch.node, new_cache))
            t6 = tick()
        timings["commit"] = tick() - t6
    except (_Duplicate, overlap.Duplicate):
        return Stored(duplicate=True, timings=timings)
    except psycopg.errors.UniqueViolation as exc:
        raise SampleConflict(_conflict_errors(exc, batch, pod_ids, container_ids)) from None
    return Stored(duplicate=False, pods=len(batch.pods), containers=n_containers, timings=timings)


def _reaching_back(
    cursor: Any,
    batch: Batch,
    pod_ids: list[int],
    container_ids: list[tuple[int, ...]],
    start: datetime,
    end: datetime,
    starts: dict[float, datetime],
) -> dict[str, list[str]]:
    """Overlap errors for pods and containers whose interval starts before the batch's."""
    interval = batch.interval_seconds
    pods: dict[int, tuple[str, datetime, float]] = {}
    containers: dict[int, tuple[str, datetime, float]] = {}
    for i, (pod, pod_id, ids) in enumerate(zip(batch.pods, pod_ids, container_ids)):
        pod_interval = pod.interval_seconds or interval
        if starts[pod_interval] < start:
            pods[pod_id] = (f"pods[{i}]", starts[pod_interval], pod_interval)
        for j, (container, container_id) in enumerate(zip(pod.containers, ids)):
            c_interval = container.interval_seconds or pod_interval
            if starts[c_interval] < start:
                containers[container_id] = (f"pods[{i}].containers[{j}]", starts[c_interval], c_interval)
    errors = overlap.check_members(cursor, overlap.POD_PROBE, pods, end, "pod")
    errors.update(overlap.check_members(cursor, overlap.CONTAINER_PROBE, containers, end, "container"))
    return errors


def _copy_pods(cursor: Any, batch: Batch, pod_ids: list[int], node_id: int, starts: dict[float, datetime]) -> datetime:
    """COPY the pod samples; returns the earliest start written (`starts` holds every start used)."""
    interval = batch.interval_seconds
    with cursor.copy(POD_COPY) as copy:
        if COPY_FORMAT == "BINARY":
            copy.set_types(POD_SAMPLE_TYPES)
        write = copy.write_row
        for pod, pod_id in zip(batch.pods, pod_ids):
            pod_interval = pod.interval_seconds or interval
            write((pod_id, node_id, starts[pod_interval], pod_interval, pod.namespace, pod.deployment, *_pod_usage(pod)))
    return min(starts.values())


def _copy_containers(
    cursor: Any,
    batch: Batch,
    pod_ids: list[int],
    container_ids: list[tuple[int, ...]],
    starts: dict[float, datetime],
) -> datetime:
    """COPY the container samples; returns the earliest start written."""
    interval = batch.interval_seconds
    with cursor.copy(CONTAINER_COPY) as copy:
        if COPY_FORMAT == "BINARY":
            copy.set_types(CONTAINER_SAMPLE_TYPES)
        write = copy.write_row
        for pod, pod_id, ids in zip(batch.pods, pod_ids, container_ids):
            pod_interval = pod.interval_seconds or interval
            for container, container_id in zip(pod.containers, ids):
                c_interval = container.interval_seconds or pod_interval
                write((container_id, pod_id, starts[c_interval], c_interval, *_container_usage(container)))
    return min(starts.values())


def _copy_serving(
    cursor: Any, batch: Batch, indexes: list[int], pod_ids: list[int], node_id: int, end: datetime
) -> datetime:
    """COPY the serving samples and return the earliest start. Each covers its own interval (a
    late scrape covers more than one tick), ending with the batch."""
    earliest = end
    with cursor.copy(SERVING_COPY) as copy:
        if COPY_FORMAT == "BINARY":
            copy.set_types(SERVING_SAMPLE_TYPES)
        for i in indexes:
            pod = batch.pods[i]
            serving = pod.serving
            assert serving is not None
            seconds = serving.interval_seconds or pod.interval_seconds or batch.interval_seconds
            start = end - timedelta(seconds=seconds)
            earliest = min(earliest, start)
            copy.write_row((
                pod_ids[i], node_id, start, seconds, pod.namespace,
                pod.deployment, pod.model_server, pod.model_name, *_serving_usage(serving),
            ))
    return earliest


# --- inventory ------------------------------------------------------------------------------------


def _pod_values(pod: Any, node_id: int) -> dict[str, Any]:
    """The pod's inventory values by column, except first_seen and last_seen."""
    values = {
        "node_id": node_id,
        "owner_kind": pod.owner_kind or "",
        "owner_name": pod.owner_name or "",
        "qos": pod.qos or "",
        # In the collector's order: a reordering only costs one needless upsert.
        "labels": json.dumps(pod.labels),
    }
    for column in _POD_COLUMNS:
        if column not in values and column not in ("first_seen", "last_seen"):
            values[column] = getattr(pod, column)
    return values


def _pod_fingerprint(values: dict[str, Any]) -> int:
    return hash(tuple(values[c] for c in _POD_COLUMNS if c in values))


def _pods(
    cursor: Any, batch: Batch, node_id: int, cached: _NodeCache, end: datetime, starts: dict[float, datetime]
) -> tuple[list[int], list[tuple[int, float]]]:
    """Pod ids in batch order, upserting new and changed pods and touching stale ones.

    Returns the ids and, per pod, (fingerprint, when its last_seen was written).
    """
    pods = batch.pods
    end_ts = end.timestamp()
    ids = [0] * len(pods)
    entries: list[tuple[int, float]] = [(0, end_ts)] * len(pods)
    upsert: list[int] = []  # indexes of new or changed pods: full upsert
    touch: list[int] = []  # unchanged, last_seen a minute old: UPDATE last_seen by id
    values = [_pod_values(pod, node_id) for pod in pods]
    for i, pod in enumerate(pods):
        fingerprint = _pod_fingerprint(values[i])
        entry = cached.pods.get(pod.uid)
        if entry is None or entry.fingerprint != fingerprint:
            upsert.append(i)
            entries[i] = (fingerprint, end_ts)
        elif end_ts - entry.written < _RESOLUTION:  # also a late batch: nothing to write
            ids[i] = entry.pod_id
            entries[i] = (fingerprint, entry.written)
        else:
            ids[i] = entry.pod_id
            touch.append(i)
            entries[i] = (fingerprint, end_ts)
    if touch:
        alive = _touch(cursor, "metrics_pod", [ids[i] for i in touch], end)
        # A pod deleted since it was cached (e.g. in the admin) is written again.
        upsert.extend(i for i in touch if ids[i] not in alive)
    if upsert:
        upsert.sort(key=lambda i: pods[i].uid)  # one lock order for concurrent batches
        columns: list[list[Any]] = [[] for _ in _POD_INVENTORY]
        interval = batch.interval_seconds
        for i in upsert:
            row = values[i] | {
                "first_seen": starts[pods[i].interval_seconds or interval], "last_seen": end,
            }
            for column, name in zip(columns, _POD_COLUMNS):
                column.append(row[name])
        index = {pods[i].uid: i for i in upsert}
        for pod_id, uid in cursor.execute(POD_SQL, columns).fetchall():
            ids[index[uid]] = pod_id
    return ids, entries


def _containers(
    cursor: Any,
    batch: Batch,
    pod_ids: list[int],
    pod_entries: list[tuple[int, float]],
    cached: _NodeCache,
    end: datetime,
) -> tuple[list[tuple[int, ...]], _NodeCache]:
    """Container ids per pod in batch order, upserted or touched like the pods.

    Returns them and the node's new cache (pods and containers), to remember after COMMIT.
    """
    pods = batch.pods
    end_ts = end.timestamp()
    interval = batch.interval_seconds
    ids: list[tuple[int, ...]] = [()] * len(pods)
    fingerprints = [0] * len(pods)
    names: list[tuple[str, ...]] = [()] * len(pods)
    written = [end_ts] * len(pods)
    upsert: list[int] = []
    touch: list[int] = []
    for i, pod in enumerate(pods):
        containers = pod.containers
        fingerprints[i] = hash(tuple(map(_container_key, containers)))
        names[i] = tuple(map(_name, containers))
        if not containers:
            continue
        entry = cached.pods.get(pod.uid)
        if (
            entry is None or entry.pod_id != pod_ids[i]
            or entry.containers_fingerprint != fingerprints[i] or entry.container_names != names[i]
        ):
            upsert.append(i)
        elif end_ts - entry.containers_written < _RESOLUTION:
            ids[i] = entry.container_ids
            written[i] = entry.containers_written
        else:
            ids[i] = entry.container_ids
            touch.append(i)
    if touch:
        alive = _touch(cursor, "metrics_container", [c for i in touch for c in ids[i]], end)
        upsert.extend(i for i in touch if not alive.issuperset(ids[i]))
    if upsert:
        rows = sorted(
            (pod_ids[i], c.name, c.id, c.image, *_container_state(c), end - timedelta(seconds=c.interval_seconds or pods[i].interval_seconds or interval))
            for i in upsert
            for c in pods[i].containers
        )
        columns = [list(column) for column in zip(*rows)] + [[end] * len(rows)]
        by_key = {(pod_id, name): container_id for container_id, pod_id, name in cursor.execute(CONTAINER_SQL, columns).fetchall()}
        for i in upsert:
            ids[i] = tuple(by_key[(pod_ids[i], c.name)] for c in pods[i].containers)
    new_cache = _NodeCache(cached.node_id, cached.first_seen)
    for i, pod in enumerate(pods):
        fingerprint, pod_written = pod_entries[i]
        new_cache.pods[pod.uid] = PodEntry(
            pod_ids[i], fingerprint, pod_written, fingerprints[i], names[i], ids[i], written[i]
        )
    return ids, new_cache
