"""Nodes, pods and samples for tests, written straight to the database (no HTTP, no ingest).

    node = make_node("worker-1")
    pod = make_pod(node, "web-1", namespace="shop", deployment="web", cpu_limit_cores=1.0)
    make_pod_samples(pod, start, end, interval_seconds=10, cpu_cores=0.5, memory_bytes=100 * MiB)
    make_node_samples(node, start, end, interval_seconds=10, cpu_cores=2.0)

Samples follow docs/architecture.md: `time` is the START of each interval, one sample every
`interval_seconds` from `start` while `time < end`; usage is what was used during the interval
(cpu_seconds = cpu_cores * interval_seconds, bytes = rate * interval_seconds); gauges are values.
Any value argument may be a number or a function of the sample's start time, so a test can
compute its expected totals from the same function. Extra keyword arguments become fields of
every sample (e.g. oom_kills=0).

reset_rollups() empties the rollups for transactional tests (Django's flush truncates only the
tables of models, not the rollup relations).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Union

from django.db import connection
from django.utils import timezone

from metrics import backend, rollups
from metrics.models import Node, NodeSample, Pod, PodSample
from metrics.rollup_schema import ENTITY, INVALIDATION_TABLE, STATE_TABLE

MiB = 1024**2
GiB = 1024**3

Value = Union[float, int, None, Callable[[datetime], Any]]


def _at(value: Value, moment: datetime) -> Any:
    return value(moment) if callable(value) else value


def make_node(
    name: str = "worker-1",
    *,
    cpu_capacity_cores: float = 8.0,
    memory_total_bytes: int = 32 * GiB,
    seen: datetime | None = None,
) -> Node:
    seen = seen or timezone.now()
    return Node.objects.create(
        name=name,
        first_seen=seen,
        last_seen=seen,
        cpu_capacity_cores=cpu_capacity_cores,
        memory_total_bytes=memory_total_bytes,
    )


def make_pod(
    node: Node,
    name: str,
    *,
    namespace: str = "default",
    deployment: str | None = None,
    cpu_limit_cores: float | None = None,
    memory_limit_bytes: int | None = None,
    uid: str | None = None,
    seen: datetime | None = None,
) -> Pod:
    seen = seen or timezone.now()
    return Pod.objects.create(
        uid=uid or str(uuid.uuid4()),
        name=name,
        namespace=namespace,
        node=node,
        owner_kind="ReplicaSet" if deployment else "",
        owner_name=f"{deployment}-5d9c7b8f6" if deployment else "",
        deployment=deployment,
        cpu_limit_cores=cpu_limit_cores,
        memory_limit_bytes=memory_limit_bytes,
        first_seen=seen,
        last_seen=seen,
    )


def sample_times(start: datetime, end: datetime, interval_seconds: float) -> list[datetime]:
    step = timedelta(seconds=interval_seconds)
    times = []
    moment = start
    while moment < end:
        times.append(moment)
        moment += step
    return times


def make_pod_samples(
    pod: Pod,
    start: datetime,
    end: datetime,
    interval_seconds: float = 10.0,
    *,
    cpu_cores: Value = 0.25,
    memory_bytes: Value = 64 * MiB,
    disk_read_bytes_per_second: Value = 0.0,
    net_rx_bytes_per_second: Value = 0.0,
    **extra: Any,
) -> list[PodSample]:
    """Insert one PodSample per interval in [start, end); limits come from the pod."""
    rows = []
    for moment in sample_times(start, end, interval_seconds):
        cores = _at(cpu_cores, moment)
        read = _at(disk_read_bytes_per_second, moment)
        rx = _at(net_rx_bytes_per_second, moment)
        memory = _at(memory_bytes, moment)
        rows.append(
            PodSample(
                pod=pod,
                node_id=pod.node_id,
                namespace=pod.namespace,
                deployment=pod.deployment,
                time=moment,
                interval_seconds=interval_seconds,
                cpu_seconds=None if cores is None else cores * interval_seconds,
                memory_working_set_bytes=None if memory is None else int(memory),
                disk_read_bytes=None if read is None else int(read * interval_seconds),
                net_rx_bytes=None if rx is None else int(rx * interval_seconds),
                cpu_limit_cores=pod.cpu_limit_cores,
                memory_limit_bytes=pod.memory_limit_bytes,
                **{k: _at(v, moment) for k, v in extra.items()},
            )
        )
    return PodSample.objects.bulk_create(rows, batch_size=2000)


def make_node_samples(
    node: Node,
    start: datetime,
    end: datetime,
    interval_seconds: float = 10.0,
    *,
    cpu_cores: Value = 1.0,
    memory_bytes: Value = 4 * GiB,
    **extra: Any,
) -> list[NodeSample]:
    """Insert one NodeSample per interval in [start, end); capacities come from the node."""
    rows = []
    for moment in sample_times(start, end, interval_seconds):
        cores = _at(cpu_cores, moment)
        memory = _at(memory_bytes, moment)
        rows.append(
            NodeSample(
                node=node,
                time=moment,
                interval_seconds=interval_seconds,
                cpu_seconds=None if cores is None else cores * interval_seconds,
                memory_working_set_bytes=None if memory is None else int(memory),
                cpu_capacity_cores=node.cpu_capacity_cores,
                memory_total_bytes=node.memory_total_bytes,
                **{k: _at(v, moment) for k, v in extra.items()},
            )
        )
    return NodeSample.objects.bulk_create(rows, batch_size=2000)


def reset_rollups() -> None:
    """Empty every rollup relation and its refresh state (call with empty sample tables).

    Needs a transactional test (`django_db(transaction=True)`): in tier tsl it refreshes the
    continuous aggregates, which cannot run inside a transaction.
    """
    backend.clear_cache()
    tier = backend.storage_tier()
    with connection.cursor() as cursor:
        if tier == "tsl":
            end = timezone.now() - timedelta(minutes=2)
            for resolution in ("1m", "1h"):
                for entity in ENTITY.values():
                    # force: rewrite buckets whatever TimescaleDB believes is up to date, so
                    # rows of an earlier test (whose raw rows were truncated) disappear.
                    assert rollups.call_refresh(
                        cursor, entity.relation(resolution), end - timedelta(days=400), end, force=True
                    )
            return
        tables = [f"{e.relation(r)}_mat" for e in ENTITY.values() for r in ("1m", "1h")]
        cursor.execute(f"TRUNCATE {', '.join(tables)}, {INVALIDATION_TABLE}")
        cursor.execute(
            f"UPDATE {STATE_TABLE} SET invalidation_threshold = NULL, materialized_1m = NULL, "
            "materialized_1h = NULL, refreshed_at = NULL"
        )
