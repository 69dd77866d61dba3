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

The models are imported inside the functions, so bench/ingest.py can build batches before it
configures Django.

reset_rollups() empties the rollups for transactional tests (Django's flush truncates only the
tables of models, not the rollup relations).

Realistic ingest batches, as a collector would send them (the ingest tests, bench/ingest.py):

    batches = NodeBatches("worker-1", pods=110, interval=10.0, seed=1)
    body = batches.batch(end=tick())  # a node with ~110 pods of 2-3 containers

Values are plausible for a 10 s interval on a 16-core, 64 GiB worker; the same (node, seed)
always yields the same pods, so consecutive batches of one node look like one node over time.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any, Union

from django.db import connection
from django.utils import timezone

from metrics import backend, rollups

if TYPE_CHECKING:
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
    from metrics.models import Node

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
    from metrics.models import Pod

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
    from metrics.models import PodSample

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
    from metrics.models import NodeSample

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


# --- ingest batches ------------------------------------------------------------------------------

# (namespace, workload, kind, containers, qos) — a mix like a real shared cluster.
WORKLOADS: list[tuple[str, str, str, list[str], str]] = [
    ("kube-system", "kube-proxy", "DaemonSet", ["kube-proxy"], "BestEffort"),
    ("kube-system", "coredns", "Deployment", ["coredns", "config-reloader"], "Burstable"),
    ("kube-system", "calico-node", "DaemonSet", ["calico-node", "install-cni-watch"], "Burstable"),
    ("monitoring", "kubemonitor-collector", "DaemonSet", ["collector", "gpu-probe"], "Guaranteed"),
    ("payments", "checkout", "Deployment", ["app", "envoy", "log-shipper"], "Burstable"),
    ("payments", "ledger", "StatefulSet", ["postgres", "pgbouncer"], "Guaranteed"),
    ("shop", "frontend", "Deployment", ["nginx", "app", "oauth-proxy"], "Burstable"),
    ("shop", "catalog", "Deployment", ["app", "envoy"], "Burstable"),
    ("shop", "search", "Deployment", ["app", "envoy", "reindexer"], "Burstable"),
    ("data", "etl-nightly", "Job", ["runner", "uploader"], "BestEffort"),
    ("data", "kafka", "StatefulSet", ["kafka", "jmx-exporter"], "Guaranteed"),
    ("default", "debug-shell", "", ["shell", "tcpdump"], "BestEffort"),
]


def _pod(rng: random.Random, node: str, index: int) -> dict[str, Any]:
    namespace, workload, kind, containers, qos = WORKLOADS[index % len(WORKLOADS)]
    pod_hash = f"{rng.getrandbits(40):010x}"[:10]
    suffix = f"{rng.getrandbits(25):05x}"[:5]
    if kind == "Deployment":
        name = f"{workload}-{pod_hash[:9]}-{suffix}"
        owner_kind, owner_name, deployment = "ReplicaSet", f"{workload}-{pod_hash[:9]}", workload
    elif kind in ("DaemonSet", "Job"):
        name = f"{workload}-{suffix}"
        owner_kind, owner_name, deployment = kind, workload, None
    elif kind == "StatefulSet":
        name = f"{workload}-{index}"
        owner_kind, owner_name, deployment = kind, workload, None
    else:
        name = f"{workload}-{index}"
        owner_kind, owner_name, deployment = None, None, None
    labels = {
        "app.kubernetes.io/name": workload,
        "app.kubernetes.io/part-of": namespace,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{workload}-1.{index % 7}.{index % 3}",
    }
    if kind == "Deployment":
        labels["pod-template-hash"] = pod_hash[:9]
    if kind == "StatefulSet":
        labels["statefulset.kubernetes.io/pod-name"] = name
    cpu_limit = None if qos == "BestEffort" else rng.choice([0.25, 0.5, 1.0, 2.0])
    mem_limit = None if qos == "BestEffort" else rng.choice([256, 512, 1024, 4096]) * MiB
    host_network = kind == "DaemonSet" and workload in ("kube-proxy", "calico-node")
    return {
        "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "name": name,
        "namespace": namespace,
        "owner_kind": owner_kind,
        "owner_name": owner_name,
        "deployment": deployment,
        "qos": qos,
        "labels": labels,
        "cpu_limit_cores": cpu_limit,
        "memory_limit_bytes": mem_limit,
        "host_network": host_network,
        "containers": [
            {
                "name": c,
                "id": f"containerd://{rng.getrandbits(256):064x}",
                "image": f"registry.example.com/{namespace}/{c}:v{index % 9}.{index % 4}.1",
            }
            for c in containers
        ],
    }


def _usage(rng: random.Random, interval: float, pod: dict[str, Any]) -> None:
    """Fill in one interval's usage for a pod and its containers (in place)."""
    pod_cpu = pod_ws = pod_rss = pod_cache = pod_rd = pod_wr = 0
    for container in pod["containers"]:
        cpu = round(rng.uniform(0.001, 0.4) * interval, 6)
        ws = rng.randrange(8 * MiB, 900 * MiB)
        rss = ws * 3 // 4
        cache = ws - rss
        rd = rng.choice([0, 0, 4096 * rng.randrange(1, 200)])
        wr = rng.choice([0, 4096 * rng.randrange(1, 500)])
        container.update(
            cpu_seconds=cpu,
            memory_working_set_bytes=ws,
            memory_rss_bytes=rss,
            memory_cache_bytes=cache,
            disk_read_bytes=rd,
            disk_write_bytes=wr,
            disk_read_ops=rd // 4096,
            disk_write_ops=wr // 4096,
            cpu_throttled_seconds=round(rng.uniform(0, 0.05), 6),
            cpu_throttled_periods=rng.randrange(0, 5),
            cpu_periods=int(interval * 10),
            oom_kills=0,
            psi_cpu_some_seconds=round(rng.uniform(0, 0.02), 6),
            psi_memory_some_seconds=0.0,
            psi_memory_full_seconds=0.0,
            psi_io_some_seconds=round(rng.uniform(0, 0.01), 6),
            psi_io_full_seconds=0.0,
            restarts=0,
        )
        pod_cpu += cpu
        pod_ws += ws
        pod_rss += rss
        pod_cache += cache
        pod_rd += rd
        pod_wr += wr
    rx = None if pod["host_network"] else rng.randrange(0, 50 * MiB)
    tx = None if pod["host_network"] else rng.randrange(0, 50 * MiB)
    pod.update(
        cpu_seconds=round(pod_cpu, 6),
        memory_working_set_bytes=pod_ws,
        memory_rss_bytes=pod_rss,
        memory_cache_bytes=pod_cache,
        disk_read_bytes=pod_rd,
        disk_write_bytes=pod_wr,
        net_rx_bytes=rx,
        net_tx_bytes=tx,
        net_rx_packets=None if rx is None else rx // 900,
        net_tx_packets=None if tx is None else tx // 900,
        net_rx_errors=None if rx is None else 0,
        net_tx_errors=None if tx is None else 0,
        net_rx_dropped=None if rx is None else 0,
        net_tx_dropped=None if tx is None else 0,
        cpu_throttled_seconds=round(rng.uniform(0, 0.1), 6),
        cpu_throttled_periods=rng.randrange(0, 10),
        cpu_periods=int(interval * 10),
        oom_kills=0,
        psi_cpu_some_seconds=round(rng.uniform(0, 0.05), 6),
        psi_memory_some_seconds=0.0,
        psi_memory_full_seconds=0.0,
        psi_io_some_seconds=round(rng.uniform(0, 0.02), 6),
        psi_io_full_seconds=0.0,
    )


class NodeBatches:
    """Consecutive batches of one node: fixed pods, new usage every interval."""

    def __init__(self, node: str, pods: int = 110, interval: float = 10.0, seed: int | None = None):
        self.node = node
        self.interval = interval
        self.rng = random.Random(f"{node}/{seed}")
        self.pods = [_pod(self.rng, node, i) for i in range(pods)]

    def batch(self, end: datetime) -> dict[str, Any]:
        pods = copy.deepcopy(self.pods)
        for pod in pods:
            _usage(self.rng, self.interval, pod)
        rng = self.rng
        return {
            "node": self.node,
            "time": end.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z"),
            "interval_seconds": self.interval,
            "node_usage": {
                "cpu_seconds": round(sum(p["cpu_seconds"] for p in pods) + rng.uniform(1, 5), 6),
                "cpu_capacity_cores": 16.0,
                "memory_working_set_bytes": sum(p["memory_working_set_bytes"] for p in pods),
                "memory_total_bytes": 64 * GiB,
                "memory_available_bytes": 20 * GiB + rng.randrange(0, GiB),
                "disk_read_bytes": sum(p["disk_read_bytes"] for p in pods),
                "disk_write_bytes": sum(p["disk_write_bytes"] for p in pods),
                "net_rx_bytes": rng.randrange(0, 500 * MiB),
                "net_tx_bytes": rng.randrange(0, 500 * MiB),
                "fs_used_bytes": 40 * GiB + rng.randrange(0, GiB),
                "fs_capacity_bytes": 200 * GiB,
                "memory_rss_bytes": 30 * GiB,
                "memory_cache_bytes": 10 * GiB,
                "psi_cpu_some_seconds": round(rng.uniform(0, 0.5), 6),
            },
            "pods": pods,
            "collector": {
                "version": "0.1.0",
                "cgroup_version": 2,
                "cgroup_driver": "systemd",
                "cycle_cpu_seconds": 0.031,
                "sources": {
                    "cgroup": {"ok": True, "seconds": 0.012, "error": None},
                    "proc": {"ok": True, "seconds": 0.002, "error": None},
                    "kubelet": {"ok": True, "seconds": 0.009, "error": None},
                },
            },
            "warnings": [],
        }


def batch(node: str = "worker-1", end: datetime | None = None, pods: int = 110, **kwargs: Any) -> dict[str, Any]:
    """One realistic batch, ending at `end` (default: the current 10 s tick)."""
    if end is None:
        now = datetime.now(dt_timezone.utc)
        end = now.replace(second=now.second - now.second % 10, microsecond=0)
    return NodeBatches(node, pods=pods, **kwargs).batch(end)


def tick(seconds_ago: float = 0, interval: float = 10) -> datetime:
    """A collection tick (multiple of `interval`) about `seconds_ago` before now, as collectors align."""
    now = datetime.now(dt_timezone.utc).timestamp() - seconds_ago
    return datetime.fromtimestamp(now - now % interval, tz=dt_timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")
