"""Find the kubelet's pods and containers in the cgroup tree and read their counters.

Layouts (kubernetes pkg/kubelet/cm/*_linux.go):
  cgroupfs driver: kubepods/pod<uid>/<leaf>                     (Guaranteed)
                   kubepods/{burstable,besteffort}/pod<uid>/<leaf>
  systemd driver:  kubepods.slice/kubepods-pod<uid_>.slice/<leaf>   ('-' in the uid escaped to '_')
                   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/<leaf>
Container leaves: <64 hex id> (containerd/docker under cgroupfs), crio-<id> / crio-<id>.scope,
cri-containerd-<id>.scope, docker-<id>.scope, and '<slice>:cri-containerd:<id>' when containerd
runs without SystemdCgroup; crio-conmon-<id> is CRI-O's monitor process, not a container.

A pod's totals come from the pod cgroup itself, which contains every container, the sandbox and
runtime overhead; container rows come from the leaves, minus the sandbox (pause) container. Nothing
is summed from children, so nothing is counted twice.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from collector.paths import Roots, read_bytes, read_text, readlink
from collector.sources import cgroupv1, cgroupv2
from collector.sources.cgroupstats import CgroupStats
from collector.sources.mountinfo import CgroupMounts
from collector.sources.netdev import pod_interfaces, read_netdev

_POD = re.compile(r"^(?:kubepods-(?:burstable-|besteffort-)?)?pod([0-9a-fA-F_-]{8,64})(?:\.slice)?$")
_LEAF = re.compile(
    r"^(?:(?P<prefix>cri-containerd|crio|docker)-|.*:(?P<cprefix>cri-containerd|crio|docker):)?"
    r"(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)
_RUNTIME = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}
_QOS_DIRS = {
    "burstable": "Burstable", "besteffort": "BestEffort",
    "kubepods-burstable.slice": "Burstable", "kubepods-besteffort.slice": "BestEffort",
}
KUBEPODS = ("kubepods", "kubepods.slice")
# The sandbox ("pause") image's entrypoint is /pause (registry.k8s.io/pause, cri-dockerd, CRI-O).
SANDBOX_COMMANDS = {b"pause"}


def parse_pod_dir(name: str) -> str | None:
    """'pod1b2c…' or 'kubepods-burstable-pod1b2c_…slice' -> the pod uid with dashes."""
    m = _POD.match(name)
    return m.group(1).replace("_", "-") if m else None


def parse_container_dir(name: str) -> tuple[str, str] | None:
    """A container leaf's (runtime, id), or None for anything that is not a container."""
    if name.startswith("crio-conmon-"):
        return None
    m = _LEAF.match(name)
    if not m:
        return None
    prefix = m.group("prefix") or m.group("cprefix")
    return _RUNTIME.get(prefix or "", ""), m.group("id")


@dataclass
class Layout:
    version: int  # 1 or 2
    driver: str  # "cgroupfs" or "systemd"
    hierarchies: dict[str, str]  # v1: controller -> hierarchy root here; v2: {"unified": root}
    kubepods: str  # "/kubepods" or "/kubepods.slice"

    @property
    def list_root(self) -> str:
        """The hierarchy in which to list pods: on v1 cpuacct, whose directories hold the fewest
        files (listing a pod directory returns its files too), else cpu or memory."""
        h = self.hierarchies
        return h.get("unified") or h.get("cpuacct") or h.get("cpu") or h.get("memory") or ""

    @property
    def procs_root(self) -> str:
        h = self.hierarchies
        return h.get("unified") or h.get("memory") or self.list_root


def discover(roots: Roots, mounts: CgroupMounts) -> Layout | None:
    """The kubelet's cgroup root in whichever hierarchy this host uses, or None (no kubelet)."""
    version = mounts.version
    if version == 1:
        hierarchies = {c: roots.host_path(p) for c, p in mounts.v1.items()
                       if c in ("cpu", "cpuacct", "memory", "blkio", "cpuset")}
    elif version == 2 and mounts.v2 is not None:
        hierarchies = {"unified": roots.host_path(mounts.v2)}
    else:
        return None
    probe = Layout(version, "cgroupfs", hierarchies, "")
    for name in KUBEPODS:
        if os.path.isdir(os.path.join(probe.list_root, name)):
            return Layout(version, "systemd" if name.endswith(".slice") else "cgroupfs",
                          hierarchies, "/" + name)
    return None


def root_layout(roots: Roots, mounts: CgroupMounts) -> Layout | None:
    """The hierarchies alone (for the node's root cgroup), with or without a kubelet."""
    if mounts.version == 1:
        return Layout(1, "", {c: roots.host_path(p) for c, p in mounts.v1.items()}, "")
    if mounts.version == 2 and mounts.v2 is not None:
        return Layout(2, "", {"unified": roots.host_path(mounts.v2)}, "")
    return None


@dataclass
class ContainerCgroup:
    id: str
    runtime: str
    rel: str  # path relative to the hierarchy roots, e.g. /kubepods/burstable/pod…/<id>
    sandbox: bool | None = None  # True: pause; None: could not tell from its process
    stats: CgroupStats | None = None


@dataclass
class PodCgroup:
    uid: str
    qos: str  # from the cgroup path: Guaranteed, Burstable, BestEffort
    rel: str
    containers: dict[str, ContainerCgroup] = field(default_factory=dict)
    stats: CgroupStats | None = None
    net: tuple[int, ...] | None = None  # summed netdev counters of the pod's namespace
    host_network: bool | None = None


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:  # vanished or unreadable: nothing there this cycle
        return []


def list_pods(layout: Layout) -> list[PodCgroup]:
    """Every pod cgroup with its container leaves (no counters read yet)."""
    base = layout.list_root + layout.kubepods
    pods: list[PodCgroup] = []
    for name in _subdirs(base):
        qos = _QOS_DIRS.get(name)
        if qos is not None:
            for pod_name in _subdirs(f"{base}/{name}"):
                uid = parse_pod_dir(pod_name)
                if uid:
                    pods.append(PodCgroup(uid, qos, f"{layout.kubepods}/{name}/{pod_name}"))
            continue
        uid = parse_pod_dir(name)
        if uid:  # Guaranteed pods sit directly under kubepods
            pods.append(PodCgroup(uid, "Guaranteed", f"{layout.kubepods}/{name}"))
    for pod in pods:
        for leaf in _subdirs(layout.list_root + pod.rel):
            parsed = parse_container_dir(leaf)
            if parsed:
                runtime, cid = parsed
                pod.containers[cid] = ContainerCgroup(cid, runtime, f"{pod.rel}/{leaf}")
    return pods


def read_cgroup(layout: Layout, rel: str, devices: set[str] | None, blkio: bool = True,
                limits: bool = True) -> CgroupStats:
    if layout.version == 2:
        return cgroupv2.read_stats(layout.hierarchies["unified"] + rel, root=not rel,
                                   devices=devices, limits=limits)
    return cgroupv1.read_stats(layout.hierarchies, rel, devices, blkio=blkio, limits=limits)


# Limits change only on an in-place resize: re-read them once a minute, not every cycle.
LIMITS_TTL = 60.0


def cgroup_pids(layout: Layout, rel: str) -> list[int]:
    data = read_bytes(f"{layout.procs_root}{rel}/cgroup.procs")
    if not data:
        return []
    return [int(p) for p in data.split()]


def is_sandbox_process(roots: Roots, pid: int) -> bool | None:
    """True when the process is the pause binary; None when it cannot be read."""
    data = read_bytes(roots.proc_path(pid, "cmdline"))
    if not data:
        return None
    argv0 = data.split(b"\0", 1)[0]
    return argv0.rsplit(b"/", 1)[-1] in SANDBOX_COMMANDS


def netns(roots: Roots, pid: int | str) -> str | None:
    return readlink(roots.proc_path(pid, "ns", "net"))


def pod_uid_for_pid(roots: Roots, pid: int) -> str | None:
    """The uid of the pod whose cgroup holds `pid` (for mapping GPU processes to pods), or None."""
    found = container_for_pid(roots, pid)
    return found[0] if found else None


def container_for_pid(roots: Roots, pid: int) -> tuple[str, str | None] | None:
    """(pod uid, container id or None) from <proc>/<pid>/cgroup, for either cgroup version."""
    text = read_text(roots.proc_path(pid, "cgroup"))
    if not text:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if "kubepods" not in path:
            continue
        uid = cid = None
        for part in path.split("/"):
            if uid is None:
                uid = parse_pod_dir(part)
            else:
                leaf = parse_container_dir(part)
                if leaf:
                    cid = leaf[1]
        if uid:
            return uid, cid
    return None


class CgroupReader:
    """Reads pods and containers each cycle; remembers what never changes (sandbox verdicts)."""

    def __init__(self, roots: Roots, layout: Layout) -> None:
        self.roots = roots
        self.layout = layout
        self._sandbox: dict[str, bool | None] = {}
        self._host_netns: str | None = None
        self._pod_pid: dict[str, int] = {}
        self._limits: dict[str, tuple[float, float | None, int | None]] = {}
        self.clock = time.monotonic

    def read(self, devices: set[str] | None, blkio: bool = True) -> dict[str, PodCgroup]:
        # PID 1's link needs ptrace-read rights on it; without them our own namespace is the
        # next best reference (the collector's DaemonSet runs with hostNetwork).
        self._host_netns = netns(self.roots, 1) or netns(self.roots, "self")
        pods: dict[str, PodCgroup] = {}
        seen_ids: set[str] = set()
        for pod in list_pods(self.layout):
            stats = self._read_cgroup(pod.rel, devices, blkio)
            if self._vanished(stats, pod.rel):
                # Listed a moment ago, gone now: the pod was deleted mid-read. Skip it quietly.
                continue
            pod.stats = stats
            for cid, c in list(pod.containers.items()):
                seen_ids.add(cid)
                if self._sandbox.get(cid) is True:
                    # The sandbox is never a container row (its usage is in the pod's own
                    # figures): once known, its counters are not read again.
                    c.sandbox = True
                    continue
                c.stats = self._read_cgroup(c.rel, devices, blkio)
                if self._vanished(c.stats, c.rel):
                    del pod.containers[cid]
                    continue
                c.sandbox = self._is_sandbox(c)
            self._read_network(pod)
            pods[pod.uid] = pod
        # Forget verdicts for containers that are gone, so the cache stays the size of the node.
        for cid in set(self._sandbox) - seen_ids:
            del self._sandbox[cid]
        for uid in set(self._pod_pid) - pods.keys():
            del self._pod_pid[uid]
        live = {p.rel for p in pods.values()} | {c.rel for p in pods.values()
                                                 for c in p.containers.values()}
        for rel in set(self._limits) - live:
            del self._limits[rel]
        return pods

    def _read_cgroup(self, rel: str, devices: set[str] | None, blkio: bool) -> CgroupStats:
        now = self.clock()
        cached = self._limits.get(rel)
        fresh = cached is not None and now < cached[0]
        stats = read_cgroup(self.layout, rel, devices, blkio, limits=not fresh)
        if fresh:
            assert cached is not None
            stats.cpu_limit_cores, stats.mem_limit = cached[1], cached[2]
        elif stats.mem_usage is not None or stats.cpu_ns is not None:
            self._limits[rel] = (now + LIMITS_TTL, stats.cpu_limit_cores, stats.mem_limit)
        return stats

    def _vanished(self, stats: CgroupStats, rel: str) -> bool:
        if stats.cpu_ns is not None and stats.mem_usage is not None:
            return False
        # A file is missing: either this kernel lacks it (keep the cgroup, that value is "no
        # data") or the cgroup was removed while we read it (drop it for this cycle).
        return stats.no_data() or not os.path.isdir(self.layout.list_root + rel)

    def _is_sandbox(self, c: ContainerCgroup) -> bool | None:
        if c.id in self._sandbox and self._sandbox[c.id] is not None:
            return self._sandbox[c.id]
        verdict: bool | None = None
        for pid in cgroup_pids(self.layout, c.rel)[:1]:
            verdict = is_sandbox_process(self.roots, pid)
        self._sandbox[c.id] = verdict
        return verdict

    def _pid_for(self, pod: PodCgroup) -> int | None:
        cached = self._pod_pid.get(pod.uid)
        if cached is not None and netns(self.roots, cached) is not None:
            return cached
        # Prefer the sandbox: it holds the pod's network namespace for the pod's whole life.
        ordered = sorted(pod.containers.values(), key=lambda c: c.sandbox is not True)
        for c in ordered:
            for pid in cgroup_pids(self.layout, c.rel)[:1]:
                self._pod_pid[pod.uid] = pid
                return pid
        for pid in cgroup_pids(self.layout, pod.rel)[:1]:
            self._pod_pid[pod.uid] = pid
            return pid
        return None

    def _read_network(self, pod: PodCgroup) -> None:
        pid = self._pid_for(pod)
        if pid is None:
            return
        ns = netns(self.roots, pid)
        if ns is None:
            return
        if self._host_netns is not None and ns == self._host_netns:
            # hostNetwork: the namespace is the node's; its traffic is the node's, not the pod's.
            pod.host_network = True
            return
        interfaces = read_netdev(self.roots, pid)
        if interfaces is None:
            return
        pod.host_network = False
        total = [0] * 8
        for counters in pod_interfaces(interfaces).values():
            for i, v in enumerate(counters):
                total[i] += v
        pod.net = tuple(total)
