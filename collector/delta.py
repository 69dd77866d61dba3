"""(previous snapshot, current snapshot) -> one batch in the ingest contract (docs/api.md).

Usage is the difference of each entity's own cumulative counters: per container, per pod (from the
pod cgroup), per disk and per interface. A counter that went down was reset (a restarted
container, a re-created cgroup): the entity counts from zero, so the delta is the new value, never
negative and never a wrap-around-sized number. A pod seen for the first time only primes its
counters; a container that appears inside a pod we already knew was created during the interval,
so it counts from zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from collector import __version__
from collector.snapshot import Snapshot
from collector.sources.cgroups import ContainerCgroup, PodCgroup
from collector.sources.cgroupstats import CgroupStats

NODE_REQUIRED = (
    "cpu_seconds", "cpu_capacity_cores", "memory_working_set_bytes", "memory_total_bytes",
    "memory_available_bytes", "disk_read_bytes", "disk_write_bytes", "net_rx_bytes",
    "net_tx_bytes", "fs_used_bytes", "fs_capacity_bytes",
)
NET_FIELDS = ("net_rx_bytes", "net_rx_packets", "net_rx_errors", "net_rx_dropped",
              "net_tx_bytes", "net_tx_packets", "net_tx_errors", "net_tx_dropped")
UNKNOWN_NAMESPACE = "unknown"


class PodMetaLike(Protocol):
    name: str
    namespace: str
    owner_kind: str | None
    owner_name: str | None
    deployment: str | None
    qos: str | None
    labels: dict[str, str]
    containers: dict[str, tuple[str, str]]  # bare container id -> (name, image)
    container_names: list[str]


MetaLookup = Callable[[str], "PodMetaLike | None"]


def counter_delta(new: int | float | None, old: int | float | None) -> tuple[Any, bool]:
    """(usage during the interval, whether the counter was reset)."""
    if new is None or old is None:
        return None, False
    if new < old:
        return new, True
    return new - old, False


def _usage(cur: CgroupStats, old: CgroupStats | None) -> tuple[dict[str, Any], bool]:
    """Contract usage fields of one cgroup; old=None means 'counts from zero' (new container)."""
    zero = CgroupStats(cpu_ns=0, throttled_ns=0, throttled_periods=0, periods=0,
                       disk_read_bytes=0, disk_write_bytes=0, disk_read_ops=0, disk_write_ops=0,
                       oom_kills=0, psi_cpu_some_us=0, psi_memory_some_us=0, psi_memory_full_us=0,
                       psi_io_some_us=0, psi_io_full_us=0)
    base = old if old is not None else zero
    reset = False

    def d(name: str) -> Any:
        nonlocal reset
        value, was_reset = counter_delta(getattr(cur, name), getattr(base, name))
        reset = reset or (was_reset and name == "cpu_ns")
        return value

    cpu_ns = d("cpu_ns")
    throttled_ns = d("throttled_ns")
    out: dict[str, Any] = {
        "cpu_seconds": None if cpu_ns is None else cpu_ns / 1e9,
        "memory_working_set_bytes": cur.mem_working_set,
        "disk_read_bytes": d("disk_read_bytes"),
        "disk_write_bytes": d("disk_write_bytes"),
        "memory_rss_bytes": cur.mem_rss,
        "memory_cache_bytes": cur.mem_cache,
        "disk_read_ops": d("disk_read_ops"),
        "disk_write_ops": d("disk_write_ops"),
        "cpu_throttled_seconds": None if throttled_ns is None else throttled_ns / 1e9,
        "cpu_throttled_periods": d("throttled_periods"),
        "cpu_periods": d("periods"),
        "oom_kills": d("oom_kills"),
    }
    for key, attr in (("psi_cpu_some_seconds", "psi_cpu_some_us"),
                      ("psi_memory_some_seconds", "psi_memory_some_us"),
                      ("psi_memory_full_seconds", "psi_memory_full_us"),
                      ("psi_io_some_seconds", "psi_io_some_us"),
                      ("psi_io_full_seconds", "psi_io_full_us")):
        value = d(attr)
        out[key] = None if value is None else value / 1e6
    return out, reset


def _drop_none(fields: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """Optional keys without data are left out; required keys stay, null meaning no data."""
    return {k: v for k, v in fields.items() if v is not None or k in required}


def _sum_tables(cur: Mapping[str, Sequence[int]] | None, old: Mapping[str, Sequence[int]] | None,
                width: int) -> list[int] | None:
    """Per-device (or per-interface) deltas, then summed: a reset of one never skews the others."""
    if cur is None or old is None:
        return None
    total = [0] * width
    for name, values in cur.items():
        before = old.get(name)
        if before is None:
            continue  # a device that appeared primes first
        for i, v in enumerate(values):
            total[i] += counter_delta(v, before[i])[0]
    return total


def node_usage(prev: Snapshot, cur: Snapshot) -> dict[str, Any]:
    n, p = cur.node, prev.node
    out: dict[str, Any] = dict.fromkeys(NODE_REQUIRED)
    cpu, _ = counter_delta(n.cpu_busy_seconds, p.cpu_busy_seconds)
    out["cpu_seconds"] = None if cpu is None else round(cpu, 6)
    out["cpu_capacity_cores"] = n.cpu_capacity_cores
    out["memory_total_bytes"] = n.memory_total_bytes
    out["memory_available_bytes"] = n.memory_available_bytes
    if n.root is not None:
        out["memory_working_set_bytes"] = n.root.mem_working_set
        out["memory_rss_bytes"] = n.root.mem_rss
        out["memory_cache_bytes"] = n.root.mem_cache
    disks = _sum_tables(n.disks, p.disks, 4)
    if disks is not None:
        (out["disk_read_ops"], out["disk_read_bytes"], out["disk_write_ops"],
         out["disk_write_bytes"]) = disks
    net = _sum_tables(n.net, p.net, 8)
    if net is not None:
        out.update(zip(NET_FIELDS, net))
    out["fs_used_bytes"] = n.fs_used_bytes
    out["fs_capacity_bytes"] = n.fs_capacity_bytes
    if n.pressure is not None and p.pressure is not None:
        usage, _ = _usage(n.pressure, p.pressure)
        out.update({k: v for k, v in usage.items() if k.startswith("psi_")})
    return _drop_none(out, NODE_REQUIRED)


def _container_id(c: ContainerCgroup) -> str:
    # The format of the API's status.containerStatuses[].containerID.
    return f"{c.runtime}://{c.id}" if c.runtime else c.id


def _name_containers(pod: PodCgroup, meta: PodMetaLike | None) -> dict[str, tuple[str, str]]:
    """container id -> (name, image) for the workload containers; the sandbox is left out."""
    known = meta.containers if meta is not None else {}
    named: dict[str, tuple[str, str]] = {}
    unnamed: list[ContainerCgroup] = []
    for cid, c in pod.containers.items():
        if c.sandbox is True:
            continue
        if cid in known:
            named[cid] = known[cid]
        elif c.sandbox is None and known:
            # No readable process and no container of that id in the pod's status: the sandbox
            # (or a container already gone). Never report it as a workload container.
            continue
        else:
            unnamed.append(c)
    if unnamed and meta is not None:
        # Names without ids (pod log directories): pair them up when it is unambiguous.
        free = [n for n in meta.container_names if n not in {v[0] for v in named.values()}]
        if len(unnamed) == 1 and len(free) == 1:
            named[unnamed[0].id] = (free[0], "")
            unnamed = []
    for c in unnamed:
        named[c.id] = (c.id[:12], "")
    return named


def _container_row(c: ContainerCgroup, name: str, image: str, old: ContainerCgroup | None,
                   restarted: bool) -> dict[str, Any]:
    assert c.stats is not None
    usage, reset = _usage(c.stats, old.stats if old is not None else None)
    row = {"name": name, "id": _container_id(c), "image": image, **usage,
           "cpu_limit_cores": c.stats.cpu_limit_cores, "memory_limit_bytes": c.stats.mem_limit}
    restarts = int(reset or restarted)
    if restarts:
        row["restarts"] = restarts
    return _drop_none(row, ("cpu_seconds", "memory_working_set_bytes", "disk_read_bytes",
                            "disk_write_bytes"))


def _merge_rows(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two cgroups with one container name (old instance not yet removed): one row, summed."""
    merged = dict(b)
    for key, value in a.items():
        if key in ("name", "id", "image", "cpu_limit_cores", "memory_limit_bytes"):
            continue
        other = merged.get(key)
        if isinstance(value, (int, float)) and isinstance(other, (int, float)):
            merged[key] = value + other
        elif other is None:
            merged[key] = value
    return merged


POD_STATE_FIELDS = ("phase", "ready", "cpu_request_cores", "memory_request_bytes")
CONTAINER_STATE_FIELDS = ("ready", "state", "state_reason", "last_termination_reason",
                          "last_termination_time", "cpu_request_cores", "memory_request_bytes")


def _add_state(row: dict[str, Any], meta: PodMetaLike | None) -> None:
    """The pod's state and spec from the pod list (podmeta), where the source knows them."""
    if meta is None:
        return
    for key in POD_STATE_FIELDS:
        value = getattr(meta, key, None)
        if value is not None:
            row[key] = value
    states = getattr(meta, "container_states", None) or {}
    for c in row["containers"]:
        state = states.get(c["name"])
        for key in CONTAINER_STATE_FIELDS if state is not None else ():
            value = getattr(state, key, None)
            if value is not None:
                c[key] = value


def pod_row(pod: PodCgroup, old: PodCgroup, meta: PodMetaLike | None,
            disk_unavailable: bool) -> dict[str, Any]:
    assert pod.stats is not None
    usage, _ = _usage(pod.stats, old.stats)
    row: dict[str, Any] = {
        "uid": pod.uid,
        "name": meta.name if meta else pod.uid,
        "namespace": meta.namespace if meta else UNKNOWN_NAMESPACE,
        "owner_kind": meta.owner_kind if meta else None,
        "owner_name": meta.owner_name if meta else None,
        "deployment": meta.deployment if meta else None,
        "qos": (meta.qos if meta and meta.qos else pod.qos),
        "labels": dict(meta.labels) if meta else {},
        **usage,
        "net_rx_bytes": None,
        "net_tx_bytes": None,
        "cpu_limit_cores": pod.stats.cpu_limit_cores,
        "memory_limit_bytes": pod.stats.mem_limit,
    }
    if pod.host_network is not None:
        row["host_network"] = pod.host_network
    if pod.net is not None and old.net is not None:
        for key, new, old_value in zip(NET_FIELDS, pod.net, old.net):
            row[key], _ = counter_delta(new, old_value)
    names = _name_containers(pod, meta)
    old_names = {n for n, _ in _name_containers(old, meta).values()}
    rows: dict[str, dict[str, Any]] = {}
    for cid, (name, image) in sorted(names.items()):
        c = pod.containers[cid]
        before = old.containers.get(cid)
        # A new cgroup under a name the pod had before: the container was restarted.
        restarted = before is None and name in old_names and cid not in old.containers
        r = _container_row(c, name, image, before, restarted)
        rows[name] = _merge_rows(rows[name], r) if name in rows else r
    row["containers"] = sorted(rows.values(), key=lambda r: r["name"])
    _add_state(row, meta)
    if disk_unavailable:
        for target in (row, *row["containers"]):
            for key in ("disk_read_bytes", "disk_write_bytes"):
                target[key] = None
            for key in ("disk_read_ops", "disk_write_ops"):
                target.pop(key, None)
    return _drop_none(row, ("owner_kind", "owner_name", "deployment", "qos", "cpu_seconds",
                            "memory_working_set_bytes", "disk_read_bytes", "disk_write_bytes",
                            "net_rx_bytes", "net_tx_bytes", "cpu_limit_cores", "memory_limit_bytes"))


def gpu_fields(gpu: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(node fields, pod uid -> fields, bare container id -> fields) from a GPU reading.

    The reading (collector.sources.gpu.read_gpus) may be a mapping or an object with `node`,
    `pods` and optionally `containers`, each holding contract keys (gpu_utilization_percent,
    gpu_memory_bytes). Missing parts are simply no data.
    """
    if gpu is None:
        return {}, {}, {}

    def part(name: str) -> Any:
        return gpu.get(name) if isinstance(gpu, dict) else getattr(gpu, name, None)

    return dict(part("node") or {}), dict(part("pods") or {}), dict(part("containers") or {})


def _gpu_devices(cur: Snapshot, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch's `gpus` (collector/gpuattribution.py); for devices without per-process
    figures, the device's utilisation also goes to the pod (and container) holding it alone."""
    gpu = cur.gpu
    devices = (gpu.get("devices") if isinstance(gpu, dict) else getattr(gpu, "devices", None)) if gpu else None
    if not devices:
        return []
    from collector.gpuattribution import attribute

    found = attribute(devices, cur.gpu_allocations, pods)
    for row in pods:
        extra = found.pod_utilization.get(row["uid"])
        if extra is not None:
            row["gpu_utilization_percent"] = round(row.get("gpu_utilization_percent", 0.0) + extra, 3)
        for c in row["containers"]:
            extra = found.container_utilization.get((row["uid"], c["name"]))
            if extra is not None:
                c["gpu_utilization_percent"] = round(c.get("gpu_utilization_percent", 0.0) + extra, 3)
    return found.gpus


def rfc3339(tick: float) -> str:
    return datetime.fromtimestamp(round(tick, 3), timezone.utc).isoformat().replace("+00:00", "Z")


def build_batch(prev: Snapshot, cur: Snapshot, node_name: str, meta: MetaLookup,
                interval: float | None = None, extra_warnings: list[str] | None = None,
                ) -> dict[str, Any]:
    """The batch for the interval from `prev` to `cur`.

    `interval` is the nominal tick length; the batch's interval is the whole number of nominal
    ticks between the two snapshots (a missed tick gives 2x), so that with ticks aligned to the
    wall clock every interval lies wholly inside one server bucket.
    """
    measured = cur.monotonic - prev.monotonic
    if interval:
        seconds = max(round(measured / interval), 1) * interval
    else:
        seconds = round(measured, 3)
    pods = []
    for uid, pod in sorted(cur.pods.items()):
        old = prev.pods.get(uid)
        if old is None or pod.stats is None or old.stats is None:
            continue  # a pod seen for the first time only primes
        pods.append(pod_row(pod, old, meta(uid), cur.disk_stats_unavailable))
    usage = node_usage(prev, cur)
    node_gpu, pod_gpu, container_gpu = gpu_fields(cur.gpu)
    usage.update({k: v for k, v in node_gpu.items() if v is not None})
    if pod_gpu or container_gpu:
        for row in pods:
            row.update({k: v for k, v in pod_gpu.get(row["uid"], {}).items() if v is not None})
            for c in row["containers"]:
                bare = c["id"].rsplit("/", 1)[-1]
                c.update({k: v for k, v in container_gpu.get(bare, {}).items() if v is not None})
    for row in pods:  # model servers: kind, model and what they served (modelserver.py)
        row.update(cur.serving.get(row["uid"], {}))
    gpus = _gpu_devices(cur, pods)
    batch: dict[str, Any] = {
        "node": node_name,
        "time": rfc3339(cur.tick),
        "interval_seconds": float(seconds),
        "node_usage": usage,
        "pods": pods,
        **({"gpus": gpus} if gpus else {}),
        "collector": {
            "version": __version__,
            "cgroup_version": cur.cgroup_version,
            "cgroup_driver": cur.cgroup_driver or None,
            "cycle_cpu_seconds": round(cur.cpu_seconds, 6),
            "sources": cur.sources,
        },
    }
    warnings = list(cur.warnings) + list(extra_warnings or [])
    if warnings:
        batch["warnings"] = warnings[:100]
    return batch
