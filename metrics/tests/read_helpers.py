"""Inventory and samples for the read API tests, written straight through the ORM.

Values vary per sample (a deterministic pattern), so a test that compares a series with sums
computed here in Python fails if a bucket loses, doubles or misplaces any sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from metrics.models import Node, NodeSample, Pod, PodSample

GiB = 1024**3


def make_node(name: str, *, cpu_cores: float = 8.0, memory: int = 32 * GiB) -> Node:
    now = timezone.now()
    return Node.objects.create(
        name=name, first_seen=now - timedelta(days=1), last_seen=now,
        cpu_capacity_cores=cpu_cores, memory_total_bytes=memory,
    )


def make_pod(
    name: str, namespace: str, node: Node, *, deployment: str | None = None,
    labels: dict[str, str] | None = None, cpu_limit: float | None = None,
    memory_limit: int | None = None, last_seen: datetime | None = None,
) -> Pod:
    now = timezone.now()
    return Pod.objects.create(
        uid=f"uid-{namespace}-{name}-{Pod.objects.count()}", name=name, namespace=namespace,
        node=node, owner_kind="ReplicaSet" if deployment else "", owner_name=deployment or "",
        deployment=deployment, qos="Burstable", labels=labels or {},
        cpu_limit_cores=cpu_limit, memory_limit_bytes=memory_limit,
        first_seen=now - timedelta(days=1), last_seen=last_seen or now,
    )


@dataclass
class Row:
    time: datetime
    interval: float
    values: dict[str, Any] = field(default_factory=dict)


def pod_rows(pod: Pod, start: datetime, end: datetime, interval: float, seed: int = 0) -> list[PodSample]:
    """Samples every `interval` seconds in [start, end), with varying values."""
    rows = []
    t = start
    i = 0
    while t < end:
        k = (i * 7 + seed * 13) % 11
        rows.append(PodSample(
            time=t, interval_seconds=interval, pod=pod, node_id=pod.node_id,
            namespace=pod.namespace, deployment=pod.deployment,
            cpu_seconds=interval * (0.05 + 0.01 * k),
            memory_working_set_bytes=(100 + 10 * k + seed) * 1024 * 1024,
            disk_read_bytes=1000 * k, disk_write_bytes=500 * (k + 1),
            net_rx_bytes=2000 * (k + seed), net_tx_bytes=300 * k,
            cpu_limit_cores=pod.cpu_limit_cores, memory_limit_bytes=pod.memory_limit_bytes,
        ))
        t += timedelta(seconds=interval)
        i += 1
    PodSample.objects.bulk_create(rows)
    return rows


def node_rows(node: Node, start: datetime, end: datetime, interval: float) -> list[NodeSample]:
    rows = []
    t = start
    i = 0
    while t < end:
        k = (i * 5) % 9
        rows.append(NodeSample(
            time=t, interval_seconds=interval, node=node,
            cpu_seconds=interval * (1.0 + 0.1 * k),
            memory_working_set_bytes=(4 + k) * GiB, disk_read_bytes=10_000 * k,
            disk_write_bytes=20_000, net_rx_bytes=50_000 * k, net_tx_bytes=7_000,
            cpu_capacity_cores=node.cpu_capacity_cores, memory_total_bytes=node.memory_total_bytes,
        ))
        t += timedelta(seconds=interval)
        i += 1
    NodeSample.objects.bulk_create(rows)
    return rows


def expected_buckets(
    rows: list[Any], start: datetime, step: int, *, aggregate: bool
) -> dict[datetime, dict[str, float]]:
    """The series' semantics computed by hand: per bucket, CPU in millicores and memory in bytes
    (sums over bucket length for groups, over covered seconds for one pod or node)."""
    sums: dict[datetime, dict[str, float]] = {}
    for r in rows:
        offset = int((r.time - start).total_seconds()) // step
        b = start + timedelta(seconds=offset * step)
        s = sums.setdefault(b, {"cpu": 0.0, "mem": 0.0, "covered": 0.0, "rx": 0.0, "read": 0.0})
        s["cpu"] += r.cpu_seconds
        s["mem"] += r.memory_working_set_bytes * r.interval_seconds
        s["covered"] += r.interval_seconds
        s["rx"] += r.net_rx_bytes
        s["read"] += r.disk_read_bytes
    result = {}
    for b, s in sums.items():
        d = step if aggregate else s["covered"]
        result[b] = {
            "cpu_millicores": s["cpu"] * 1000 / d,
            "memory_working_set_bytes": s["mem"] / d,
            "net_rx_bytes_per_second": s["rx"] / d,
            "disk_read_bytes_per_second": s["read"] / d,
        }
    return result
