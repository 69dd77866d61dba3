"""One cumulative reading of the node, its pods and containers at an instant.

`Collector.take()` reads every source once; the batch is the difference of two snapshots
(delta.py). What is expensive and never changes within minutes (mountinfo, the cgroup layout,
the set of whole disks, the blkio quirk check) is cached here and refreshed on a slow timer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from collector import heldfiles
from collector.paths import Roots, read_text
from collector.sources import (
    Sources,
    cgroupv1,
    cgroupv2,
    diskstats,
    filesystem,
    meminfo,
    mountinfo,
    netdev,
    procstat,
)
from collector.sources import cgroups as cg
from collector.sources.cgroupstats import CgroupStats

log = logging.getLogger("collector.snapshot")

# How often to re-check slow-changing facts (seconds).
LAYOUT_REFRESH = 60.0
DISKS_REFRESH = 60.0

BLKIO_WARNING = (
    "blkio: throttle statistics unavailable on kernel >= 6.10 without a throttle rule; "
    "disk bytes reported as null"
)


@dataclass
class NodeReading:
    cpu_busy_seconds: float | None = None
    cpu_capacity_cores: float | None = None
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    root: CgroupStats | None = None  # root cgroup: working set, rss, cache
    disks: dict[str, tuple[int, int, int, int]] | None = None
    net: dict[str, netdev.Counters] | None = None
    fs_used_bytes: int | None = None
    fs_capacity_bytes: int | None = None
    pressure: CgroupStats | None = None  # node-wide PSI from <proc>/pressure/*


@dataclass
class Snapshot:
    tick: float  # wall-clock time (UNIX seconds) this reading stands for: the aligned tick
    monotonic: float
    node: NodeReading
    pods: dict[str, cg.PodCgroup]
    cgroup_version: int | None = None
    cgroup_driver: str | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    disk_stats_unavailable: bool = False  # the v1 blkio >= 6.10 quirk: pod disk bytes are null
    # Optional GPU reading from collector.sources.gpu.read_gpus(); None when the node has none.
    # delta.py reads it through `gpu_fields()`; see there for the expected shape.
    gpu: Any = None
    # Pod uid -> model_server, model_name and `serving` fields (collector/sources/modelserver.py),
    # set by the agent after the scrapes of this cycle are collected.
    serving: dict[str, dict[str, Any]] = field(default_factory=dict)
    # GPU allocations from the kubelet's pod-resources API (podresources.Allocation list); None
    # where the node has no GPU or no socket.
    gpu_allocations: Any = None
    cpu_seconds: float = 0.0  # CPU this process spent taking the snapshot


class Collector:
    def __init__(self, roots: Roots, gpu: bool = True) -> None:
        self.roots = roots
        self.sources = Sources()
        self.cpu_guard = procstat.CpuGuard()
        self._mounts: mountinfo.CgroupMounts | None = None
        self._layout: cg.Layout | None = None
        self._root_layout: cg.Layout | None = None
        self._reader: cg.CgroupReader | None = None
        self._layout_at = -1e18
        self._disks: set[str] | None = None
        self._devices: dict[str, str] = {}  # counted disk name -> major:minor
        self._disks_at = -1e18
        self._blkio_quirk = False
        self._quirk_kernel: bool | None = None
        self._gpu = gpu

    # -- slow-changing facts -------------------------------------------------------------------

    def _refresh_layout(self, now: float) -> None:
        if self._layout is not None and now - self._layout_at < LAYOUT_REFRESH * 10:
            return
        if self._layout is None and now - self._layout_at < LAYOUT_REFRESH:
            return
        self._layout_at = now
        self._mounts = mountinfo.read_cgroup_mounts(self.roots)
        self._root_layout = cg.root_layout(self.roots, self._mounts)
        # Keep the cgroup files open between cycles (only on real cgroup filesystems).
        heldfiles.activate(self._root_layout.hierarchies.values() if self._root_layout else ())
        layout = cg.discover(self.roots, self._mounts)
        if layout != self._layout:
            if layout is None:
                log.info("no kubepods cgroup found (cgroup v%s); reporting the node only",
                         self._mounts.version)
            else:
                log.info("found kubelet cgroups: cgroup v%d, %s driver, %s",
                         layout.version, layout.driver, layout.list_root + layout.kubepods)
            self._layout = layout
            self._reader = cg.CgroupReader(self.roots, layout) if layout else None

    def _refresh_disks(self, now: float) -> None:
        if now - self._disks_at < DISKS_REFRESH:
            return
        self._disks_at = now
        self._disks = diskstats.whole_disks(self.roots)
        text = read_text(self.roots.proc_path("diskstats"))
        devices: dict[str, str] = {}
        for line in (text or "").splitlines():
            f = line.split()
            if len(f) >= 3 and diskstats.is_counted(f[2], self._disks):
                devices[f[2]] = f"{f[0]}:{f[1]}"
        self._devices = devices

    def _check_blkio_quirk(self, disks: dict[str, tuple[int, int, int, int]] | None) -> None:
        """Kernels >= 6.10 keep no v1 blkio throttle statistics for a disk until some cgroup
        gets a throttle rule on it: then pod disk bytes would read zero. Detect it from the data
        (cgroupv1.unaccounted_disks) and report null plus a warning instead of zeros."""
        layout = self._layout
        if layout is None or layout.version != 1 or "blkio" not in layout.hierarchies or not disks:
            self._blkio_quirk = False
            return
        if self._quirk_kernel is None:
            release = read_text(self.roots.proc_path("sys", "kernel", "osrelease")) or ""
            self._quirk_kernel = cgroupv1.kernel_has_blkio_quirk(release)
        if not self._quirk_kernel:
            return
        root = read_text(layout.hierarchies["blkio"] + "/blkio.throttle.io_service_bytes_recursive")
        done = {self._devices[name]: v[1] + v[3] for name, v in disks.items() if name in self._devices}
        missing = cgroupv1.unaccounted_disks(root, done)
        quirk = bool(missing)
        if quirk and not self._blkio_quirk:
            log.warning("cgroup v1 blkio throttle statistics count nothing on disk(s) %s (kernel "
                        ">= 6.10 without a throttle rule); pod and container disk bytes are "
                        "reported as null", ", ".join(missing))
        elif not quirk and self._blkio_quirk:
            log.info("cgroup v1 blkio throttle statistics count again; pod disk bytes reported")
        self._blkio_quirk = quirk

    # -- one reading ---------------------------------------------------------------------------

    def take(self, tick: float | None = None) -> Snapshot:
        cpu0 = time.process_time()
        now = time.monotonic()
        self.sources.begin_cycle()
        run = self.sources.run
        self._refresh_layout(now)
        self._refresh_disks(now)

        node = NodeReading()
        ticks = run("procstat", procstat.read_stat, self.roots)
        if ticks is not None:
            node.cpu_busy_seconds = procstat.busy_seconds(self.cpu_guard.apply(ticks))
        node.cpu_capacity_cores = run("cpu_capacity", self._read_capacity)
        mem = run("meminfo", meminfo.read_meminfo, self.roots)
        if mem is not None:
            node.memory_total_bytes = mem.get("MemTotal")
            node.memory_available_bytes = mem.get("MemAvailable")
        if self._root_layout is not None:
            node.root = run("root_cgroup", self._read_root)
        node.disks = run("diskstats", diskstats.read_diskstats, self.roots, self._disks)
        interfaces = run("netdev", netdev.read_netdev, self.roots, 1)
        if interfaces is not None:
            node.net = netdev.node_interfaces(interfaces)
        fs = run("filesystem", filesystem.read_filesystem, self.roots)
        if fs is not None:
            node.fs_used_bytes, node.fs_capacity_bytes = fs
        node.pressure = run("pressure", self._read_pressure)

        run("blkio_check", self._check_blkio_quirk, node.disks)
        pods: dict[str, cg.PodCgroup] = {}
        if self._reader is not None:
            devices = set(self._devices.values()) if self._devices else None
            read = run("cgroups", self._reader.read, devices, not self._blkio_quirk)
            pods = read or {}

        snap = Snapshot(
            tick=time.time() if tick is None else tick,
            monotonic=now,
            node=node,
            pods=pods,
            cgroup_version=self._root_layout.version if self._root_layout else None,
            cgroup_driver=self._layout.driver if self._layout else None,
            disk_stats_unavailable=self._blkio_quirk,
        )
        if self._blkio_quirk:
            snap.warnings.append(BLKIO_WARNING)
        if self._gpu:
            snap.gpu = run("gpu", self._read_gpu)
            if snap.gpu is None and self.sources.status.get("gpu", {}).get("ok"):
                del self.sources.status["gpu"]  # no GPU and no error: nothing to report
            if snap.gpu is not None:
                snap.gpu_allocations = run("podresources", self._read_allocations)
                if snap.gpu_allocations is None and self.sources.status.get("podresources", {}).get("ok"):
                    del self.sources.status["podresources"]  # no kubelet socket: nothing to report
        snap.sources = self.sources.status
        heldfiles.end_cycle()  # close the files of cgroups that are gone
        snap.cpu_seconds = time.process_time() - cpu0
        return snap

    def _read_capacity(self) -> float | None:
        path = None
        layout = self._root_layout
        if layout is not None:
            if layout.version == 1 and "cpuset" in layout.hierarchies:
                path = layout.hierarchies["cpuset"] + "/cpuset.effective_cpus"
            elif layout.version == 2:
                path = layout.hierarchies["unified"] + "/cpuset.cpus.effective"
        return procstat.read_capacity(self.roots, path)

    def _read_root(self) -> CgroupStats:
        layout = self._root_layout
        assert layout is not None
        if layout.version == 2:
            return cgroupv2.read_stats(layout.hierarchies["unified"], root=True)
        return cgroupv1.read_stats(layout.hierarchies, "", blkio=False)

    def _read_pressure(self) -> CgroupStats | None:
        s = CgroupStats()
        cgroupv2.read_pressure(self.roots.proc_path("pressure"), s, suffix="")
        return None if s.psi_cpu_some_us is None and s.psi_memory_some_us is None else s

    def _read_gpu(self) -> Any:
        try:
            from collector.sources import gpu  # optional module (NVML); absent = no GPU support
        except ImportError:
            return None
        return gpu.read_gpus(self.roots)

    def _read_allocations(self) -> Any:
        from collector.sources import podresources

        return podresources.read_allocations(self.roots.pod_resources_socket)
