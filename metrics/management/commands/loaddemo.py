"""Load realistic synthetic data: `manage.py loaddemo [--hours 6] [--nodes 3] [--interval 60]`.

A small cluster (a web shop, a data namespace, cluster add-ons, a collector DaemonSet, a vLLM model
server on the first node's GPU, two NVIDIA L4s there) over the last hours: one batch per node per interval, through the same validation (`parse_batch`) and writer
(`writer.store`) as POST /api/ingest/, so the demo is stored exactly like collector data. CPU
follows a daily curve with noise, memory creeps and drops at a restart, disk and network follow
the CPU. Everything is derived from --seed, so a rerun produces the same batches, which ingest
stores once (a batch already stored is a no-op). The rollups are refreshed at the end, and the
alert rules evaluated every 5 minutes over the demo's time (a busy GPU fires, OOM kills fire and
resolve). The vLLM Deployment and a bare SGLang pod report serving samples.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from metrics.ingest import writer
from metrics.ingest.schema import BatchInvalid, parse_batch

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    kind: str  # Deployment, StatefulSet, DaemonSet, Job, or Pod (a bare pod, no owner)
    replicas: int
    containers: tuple[tuple[str, str], ...]  # (name, image)
    cpu_cores: float  # typical usage per replica
    memory_bytes: int  # typical working set per replica
    cpu_limit: float | None
    memory_limit: int | None
    io_bytes_per_cpu_second: float = 2 * MiB
    net_bytes_per_cpu_second: float = 4 * MiB
    gpus: int = 0  # GPUs per replica; such pods run on the GPU node (the first)
    model_server: str | None = None  # vllm or sglang: its pods also report serving samples
    model_name: str | None = None
    oom_at_peak: bool = False  # its memory cycle ends in an OOM kill rather than a trim


WORKLOADS = (
    Workload("shop", "frontend", "Deployment", 3, (("nginx", "nginx:1.27"), ("app", "shop/frontend:2.4.1")),
             0.35, 220 * MiB, 1.0, 512 * MiB, 0.2 * MiB, 12 * MiB),
    Workload("shop", "cart", "Deployment", 2, (("cart", "shop/cart:1.9.0"),), 0.2, 180 * MiB, 0.5, 256 * MiB,
             oom_at_peak=True),
    Workload("shop", "checkout", "Deployment", 2, (("checkout", "shop/checkout:3.0.2"),), 0.15, 300 * MiB,
             None, 1 * GiB),
    Workload("data", "postgres", "StatefulSet", 1, (("postgres", "postgres:16"),), 0.6, 1200 * MiB, 2.0,
             4 * GiB, 20 * MiB, 3 * MiB),
    Workload("data", "etl", "Deployment", 1, (("worker", "data/etl:0.7.3"),), 0.9, 700 * MiB, None, None,
             8 * MiB, 6 * MiB),
    Workload("kube-system", "coredns", "Deployment", 2, (("coredns", "registry.k8s.io/coredns/coredns:v1.11.3"),),
             0.01, 25 * MiB, None, 170 * MiB, 0, 1 * MiB),
    Workload("kubemonitor", "kubemonitor-collector", "DaemonSet", 0, (("collector", "kubemonitor/collector:1.0.0"),),
             0.004, 35 * MiB, 0.2, 128 * MiB, 0, 0.5 * MiB),
    # Last, so the pods above keep their nodes. A model server holding one of the GPU node's GPUs.
    Workload("ml", "vllm", "Deployment", 1, (("vllm", "vllm/vllm-openai:v0.6.3"),), 0.8, 6 * GiB, 4.0,
             16 * GiB, 0.5 * MiB, 2 * MiB, gpus=1, model_server="vllm",
             model_name="meta-llama/Llama-3.1-8B-Instruct"),
    # A bare SGLang pod (no Deployment) on the first node's second GPU, less busy.
    Workload("ml", "sglang-qwen", "Pod", 1, (("sglang", "lmsysorg/sglang:v0.4.1"),), 0.5, 4 * GiB, 4.0,
             12 * GiB, 0.5 * MiB, 1 * MiB, gpus=1, model_server="sglang", model_name="Qwen/Qwen2.5-7B-Instruct"),
)
# The first node's GPUs: 24 GiB NVIDIA L4s, one for each model server.
GPUS_ON_FIRST_NODE = 2
GPU_MODEL = "NVIDIA L4"
GPU_MEMORY = 24 * GiB


def _stable_hex(*parts: Any, length: int = 10) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class DemoPod:
    workload: Workload
    name: str
    uid: str
    node: str
    owner_kind: str | None
    owner_name: str | None
    deployment: str | None
    phase: float  # de-synchronises the replicas' curves

    @property
    def qos(self) -> str:
        w = self.workload
        if w.cpu_limit is None and w.memory_limit is None:
            return "BestEffort"
        return "Burstable"


def build_pods(nodes: list[str]) -> list[DemoPod]:
    pods: list[DemoPod] = []
    slot = 0
    for w in WORKLOADS:
        replicas = len(nodes) if w.kind == "DaemonSet" else w.replicas
        rs_hash = _stable_hex(w.namespace, w.name, "rs")
        for i in range(replicas):
            if w.kind == "Deployment":
                name = f"{w.name}-{rs_hash}-{_stable_hex(w.name, i, length=5)}"
                owner_kind, owner_name, deployment = "ReplicaSet", f"{w.name}-{rs_hash}", w.name
            elif w.kind == "Pod":
                name, owner_kind, owner_name, deployment = w.name, None, None, None
            elif w.kind == "StatefulSet":
                name, owner_kind, owner_name, deployment = f"{w.name}-{i}", "StatefulSet", w.name, None
            else:
                name = f"{w.name}-{_stable_hex(w.name, i, length=5)}"
                owner_kind, owner_name, deployment = w.kind, w.name, None
            if w.kind == "DaemonSet":
                node = nodes[i]
            elif w.gpus:
                node = nodes[0]
            else:
                node = nodes[slot % len(nodes)]
            slot += 1
            uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubemonitor-demo/{w.namespace}/{name}"))
            pods.append(DemoPod(w, name, uid, node, owner_kind, owner_name, deployment, phase=(slot * 0.7) % 6.28))
    return pods


def _daily(moment: datetime, phase: float) -> float:
    """1 ± 0.5 over the day, busiest mid-afternoon UTC."""
    hours = moment.hour + moment.minute / 60
    return 1 + 0.5 * math.sin((hours - 9) / 24 * 2 * math.pi + phase * 0.1)


def pod_usage(pod: DemoPod, end: datetime, interval: float, rng: random.Random) -> dict[str, Any]:
    w = pod.workload
    cpu_cores = max(0.0005, w.cpu_cores * _daily(end, pod.phase) * rng.uniform(0.8, 1.2))
    if w.cpu_limit is not None:
        cpu_cores = min(cpu_cores, w.cpu_limit)
    # Memory creeps up over a 3-hour cycle and falls back, as a cache fills and is trimmed.
    cycle = ((end.timestamp() / 3600 + pod.phase) % 3) / 3
    # The cycle wrapped during this interval: the container was OOM-killed at its peak (an
    # alert that fires and resolves, for the alerts view's history).
    killed = cycle < (((end.timestamp() - interval) / 3600 + pod.phase) % 3) / 3
    memory = int(w.memory_bytes * (0.85 + 0.3 * cycle) * rng.uniform(0.98, 1.02))
    if w.memory_limit is not None:
        memory = min(memory, int(w.memory_limit * 0.97))
    cpu_seconds = cpu_cores * interval
    io = cpu_seconds * w.io_bytes_per_cpu_second
    net = cpu_seconds * w.net_bytes_per_cpu_second
    gpu: dict[str, Any] = {}
    if w.gpus:
        # The vLLM server under steady load keeps its GPU above 90 % busy (so the demo's
        # PodGPUUtilisationHigh alert fires), the SGLang one follows the day's requests; the
        # weights and KV cache fill most of the device.
        busy = (90 + 5 * _daily(end, pod.phase) * rng.uniform(0.9, 1.1) if w.model_server == "vllm"
                else 45 * _daily(end, pod.phase) * rng.uniform(0.85, 1.15))
        gpu = {
            "gpu_utilization_percent": round(min(99.5, busy), 1),
            "gpu_memory_bytes": int(GPU_MEMORY * 0.9 * rng.uniform(0.98, 1.0)),
        }
    return {
        **gpu,
        **({"oom_kills": int(killed)} if w.oom_at_peak else {}),
        "cpu_seconds": round(cpu_seconds, 6),
        "memory_working_set_bytes": memory,
        "disk_read_bytes": int(io * rng.uniform(0.1, 0.4)),
        "disk_write_bytes": int(io * rng.uniform(0.6, 0.9)),
        "net_rx_bytes": int(net * rng.uniform(0.4, 0.6)),
        "net_tx_bytes": int(net * rng.uniform(0.4, 0.6)),
    }


def serving(pod: DemoPod, end: datetime, interval: float, rng: random.Random) -> dict[str, Any]:
    """What a model server did in the interval: about 2 requests/s (vLLM; SGLang 1) at the day's
    average, ~600 prompt and ~250 output tokens each, latencies that grow with the load."""
    load = _daily(end, pod.phase) * rng.uniform(0.9, 1.1)
    requests = max(1, round((2 if pod.workload.model_server == "vllm" else 1) * load * interval))
    ttft, itl = 0.08 + 0.06 * load, 0.018 + 0.008 * load  # mean seconds
    e2e = ttft + 250 * itl
    return {
        "requests_running": round(6 * load),
        "requests_waiting": max(0, round(8 * (load - 1.2))),
        "kv_cache_usage_percent": round(min(98.0, 25 + 40 * load), 1),
        "prompt_tokens": int(requests * 600 * rng.uniform(0.9, 1.1)),
        "generation_tokens": int(requests * 250 * rng.uniform(0.9, 1.1)),
        "requests_succeeded": requests,
        "preemptions": 0,
        "ttft_seconds_sum": round(ttft * requests, 4), "ttft_count": requests,
        "ttft_p50_seconds": round(ttft * 0.8, 4), "ttft_p95_seconds": round(ttft * 2.2, 4),
        "itl_seconds_sum": round(itl * requests * 250, 4), "itl_count": requests * 250,
        "itl_p50_seconds": round(itl * 0.9, 4), "itl_p95_seconds": round(itl * 1.8, 4),
        "e2e_seconds_sum": round(e2e * requests, 4), "e2e_count": requests,
        "e2e_p50_seconds": round(e2e * 0.9, 4), "e2e_p95_seconds": round(e2e * 1.9, 4),
    }


def make_batch(node: str, node_index: int, pods: list[DemoPod], end: datetime, interval: float, seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}/{node}/{end.isoformat()}")
    pod_entries = []
    totals = {"cpu_seconds": 0.0, "memory_working_set_bytes": 0, "disk_read_bytes": 0, "disk_write_bytes": 0,
              "net_rx_bytes": 0, "net_tx_bytes": 0}
    for pod in pods:
        if pod.node != node:
            continue
        usage = pod_usage(pod, end, interval, rng)
        for key in totals:
            totals[key] += usage[key]
        n = len(pod.workload.containers)
        containers = []
        for cname, image in pod.workload.containers:
            containers.append({
                "name": cname,
                "id": "containerd://" + _stable_hex(pod.uid, cname, length=64),
                "image": image,
                "cpu_seconds": round(usage["cpu_seconds"] / n, 6),
                "memory_working_set_bytes": usage["memory_working_set_bytes"] // n,
                "disk_read_bytes": usage["disk_read_bytes"] // n,
                "disk_write_bytes": usage["disk_write_bytes"] // n,
                "cpu_limit_cores": pod.workload.cpu_limit / n if pod.workload.cpu_limit else None,
                "memory_limit_bytes": pod.workload.memory_limit // n if pod.workload.memory_limit else None,
            })
        if pod.workload.gpus:
            for c in containers:
                c["gpu_utilization_percent"] = usage["gpu_utilization_percent"]
                c["gpu_memory_bytes"] = usage["gpu_memory_bytes"]
        pod_entries.append({
            "uid": pod.uid,
            "name": pod.name,
            "namespace": pod.workload.namespace,
            "owner_kind": pod.owner_kind,
            "owner_name": pod.owner_name,
            "deployment": pod.deployment,
            "qos": pod.qos,
            "labels": {"app.kubernetes.io/name": pod.workload.name, "demo": "true"},
            **usage,
            "cpu_limit_cores": pod.workload.cpu_limit,
            "memory_limit_bytes": pod.workload.memory_limit,
            "phase": "Running",
            "ready": True,
            # Requests as teams set them: generous, twice the typical use (what right-sizing
            # finds); BestEffort pods (no limit either) have none.
            **({"cpu_request_cores": round(pod.workload.cpu_cores * 2, 3),
                "memory_request_bytes": min(int(pod.workload.memory_bytes * 1.5), pod.workload.memory_limit or GiB ** 2)} if pod.qos == "Burstable" else {}),
            "containers": containers,
            **({"model_server": pod.workload.model_server, "model_name": pod.workload.model_name,
                "serving": serving(pod, end, interval, rng)} if pod.workload.model_server else {}),
        })
    capacity_cores = 4.0 if node_index % 2 == 0 else 8.0
    memory_total = 16 * GiB if node_index % 2 == 0 else 32 * GiB
    # The node: its pods plus the system (kubelet, runtime, journald).
    system_cpu = 0.15 * interval * rng.uniform(0.8, 1.2)
    working_set = totals["memory_working_set_bytes"] + int(1.5 * GiB)
    batch: dict[str, Any] = {
        "node": node,
        "time": end.isoformat().replace("+00:00", "Z"),
        "interval_seconds": interval,
        "node_usage": {
            "cpu_seconds": round(totals["cpu_seconds"] + system_cpu, 6),
            "cpu_capacity_cores": capacity_cores,
            "memory_working_set_bytes": working_set,
            "memory_total_bytes": memory_total,
            "memory_available_bytes": max(0, memory_total - working_set - 2 * GiB),
            "disk_read_bytes": totals["disk_read_bytes"] + int(rng.uniform(0, 64 * 1024) * interval),
            "disk_write_bytes": totals["disk_write_bytes"] + int(rng.uniform(32, 256) * 1024 * interval),
            "net_rx_bytes": totals["net_rx_bytes"] + int(rng.uniform(2, 8) * 1024 * interval),
            "net_tx_bytes": totals["net_tx_bytes"] + int(rng.uniform(2, 8) * 1024 * interval),
            "fs_used_bytes": int((40 + node_index * 7) * GiB),
            "fs_capacity_bytes": 100 * GiB,
        },
        "pods": pod_entries,
        "collector": {"version": "demo"},
    }
    if node_index == 0:
        batch["gpus"] = demo_gpus(node, [p for p in pods if p.node == node and p.workload.gpus], pod_entries, rng)
        # The node's own GPU figures, as the collector sends them: summed over its devices.
        batch["node_usage"]["gpu_utilization_percent"] = round(sum(g["utilization_percent"] for g in batch["gpus"]), 1)
        batch["node_usage"]["gpu_memory_bytes"] = sum(g["memory_used_bytes"] for g in batch["gpus"])
    return batch


def demo_gpus(node: str, holders: list[DemoPod], entries: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    by_uid = {e["uid"]: e for e in entries}
    gpus = []
    for index in range(GPUS_ON_FIRST_NODE):
        holder = holders[index] if index < len(holders) else None
        used = by_uid[holder.uid] if holder else None
        utilization = used["gpu_utilization_percent"] if used else 0.0
        memory = used["gpu_memory_bytes"] if used else 0
        gpus.append({
            "uuid": f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'kubemonitor-demo/{node}/gpu{index}')}",
            "index": index,
            "name": GPU_MODEL,
            "memory_total_bytes": GPU_MEMORY,
            "mig_mode": "disabled",
            "driver_version": "550.90.07",
            "utilization_percent": utilization,
            "memory_used_bytes": memory,
            # An L4 idles near 16 W and is capped at 72 W.
            "power_watts": round(16 + 0.5 * utilization * rng.uniform(0.95, 1.05), 1),
            "temperature_celsius": round(34 + 0.35 * utilization + rng.uniform(-1, 1), 1),
            "pods": [{
                "uid": holder.uid, "namespace": holder.workload.namespace, "pod": holder.name,
                "container": holder.workload.containers[0][0], "allocated": True,
                "memory_bytes": memory, "utilization_percent": utilization,
            }] if holder else [],
        })
    return gpus


class Command(BaseCommand):
    help = "Load a few hours of realistic synthetic samples for a small demo cluster (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=float, default=6.0, help="How far back the data goes (6).")
        parser.add_argument("--nodes", type=int, default=3, help="Number of nodes (3).")
        parser.add_argument("--interval", type=int, default=60, help="Seconds per sample (60; 10 is realistic).")
        parser.add_argument("--seed", type=int, default=1, help="Random seed; the same seed gives the same data.")
        parser.add_argument("--node-prefix", default="demo-node", help="Node names are <prefix>-1, -2, ...")
        parser.add_argument("--no-refresh", action="store_true", help="Do not refresh the rollups afterwards.")

    def handle(self, *args: Any, hours: float, nodes: int, interval: int, seed: int, node_prefix: str,
               no_refresh: bool, **options: Any) -> None:
        if not 0 < hours <= 24 * settings.RETENTION_RAW_DAYS:
            raise CommandError(f"--hours must be > 0 and within the raw retention ({settings.RETENTION_RAW_DAYS} days)")
        if not 1 <= nodes <= 100:
            raise CommandError("--nodes must be between 1 and 100")
        if interval not in (10, 15, 20, 30, 60):
            raise CommandError("--interval must divide a minute: 10, 15, 20, 30 or 60")
        node_names = [f"{node_prefix}-{i + 1}" for i in range(nodes)]
        pods = build_pods(node_names)
        now = datetime.now(timezone.utc)
        # Ends aligned to the interval, as collectors align their ticks, so rollups are exact.
        last_end = datetime.fromtimestamp(now.timestamp() // interval * interval, timezone.utc)
        steps = int(hours * 3600 // interval)
        retention = timedelta(days=settings.RETENTION_RAW_DAYS)
        stored = duplicates = 0
        self.stdout.write(f"loaddemo: {steps} intervals x {nodes} nodes to store ({len(pods)} pods)")
        # A line at each tenth: a week at 10 s is 60,000 batches per node and takes minutes.
        marks = {steps * tenth // 10 for tenth in range(1, 10)} - {0}
        for done, step in enumerate(range(steps - 1, -1, -1)):
            if done in marks:
                self.stdout.write(f"loaddemo: {done * 100 // steps} % ({done}/{steps} intervals)")
                self.stdout.flush()
            end = last_end - timedelta(seconds=step * interval)
            for index, node in enumerate(node_names):
                body = json.dumps(make_batch(node, index, pods, end, interval, seed)).encode()
                try:
                    batch = parse_batch(body, now, retention)
                except BatchInvalid as exc:  # a bug in this generator, not in the user's input
                    raise CommandError(f"generated batch refused: {exc.errors}") from exc
                result = writer.store(batch)
                if result.duplicate:
                    duplicates += 1
                else:
                    stored += 1
        self.stdout.write(
            f"loaddemo: {stored} batches stored, {duplicates} already there "
            f"({nodes} nodes, {len(pods)} pods, {hours:g} h at {interval} s)"
        )
        if not no_refresh:
            call_command("refreshrollups", stdout=self.stdout, stderr=self.stderr)
        self.evaluate_alerts(last_end - timedelta(seconds=(steps - 1) * interval), last_end)

    def evaluate_alerts(self, first_end: datetime, last_end: datetime) -> None:
        """The alert rules evaluated every 5 minutes over the demo's time, as `evaluatealerts`
        would have run them: alerts go pending, fire and resolve, so both the active alerts and
        their history have rows."""
        from django.db.models import Max

        from metrics.alerts.evaluate import run_cycle
        from metrics.alerts.models import AlertRule

        # A rerun goes on from the last cycle (of this or a real evaluator): evaluating the same
        # minutes again would record each resolved alert twice.
        done = AlertRule.objects.aggregate(last=Max("last_evaluated"))["last"]
        fired = resolved = 0
        moment = max(first_end, done or first_end) + timedelta(minutes=5)
        if done is not None and done >= last_end:
            return
        while True:
            result = run_cycle(min(moment, last_end), dispatch=False)
            fired, resolved = fired + result.fired, resolved + result.resolved
            if moment >= last_end:
                break
            moment += timedelta(minutes=5)
        self.stdout.write(f"loaddemo: alert rules evaluated every 5 minutes: {fired} fired, {resolved} resolved")
