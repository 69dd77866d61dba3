"""Realistic ingest batches: a node with ~110 pods of 2-3 containers, as a collector would send.

Used by the ingest tests and by bench/ingest.py. Values are plausible for a 10 s interval on a
16-core, 64 GiB worker; the same (node, seed) always yields the same pods, so consecutive batches
of one node look like one node over time.
"""

from __future__ import annotations

import copy
import random
import uuid
from datetime import datetime, timezone
from typing import Any

GiB = 1024**3
MiB = 1024**2

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
        cpu = round(rng.uniform(0.001, 0.08) * interval, 6)  # ~110 pods within 16 cores
        ws = rng.randrange(8 * MiB, 300 * MiB)  # 110 pods stay within the node's 64 GiB
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
            "time": end.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
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
        now = datetime.now(timezone.utc)
        end = now.replace(second=now.second - now.second % 10, microsecond=0)
    return NodeBatches(node, pods=pods, **kwargs).batch(end)


def tick(seconds_ago: float = 0, interval: float = 10) -> datetime:
    """A collection tick (multiple of `interval`) about `seconds_ago` before now, as collectors align."""
    now = datetime.now(timezone.utc).timestamp() - seconds_ago
    return datetime.fromtimestamp(now - now % interval, tz=timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
