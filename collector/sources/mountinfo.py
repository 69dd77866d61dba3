"""Find the cgroup hierarchies from the host's mountinfo (never hard-coded paths).

cgroup v1 controllers may be mounted one per hierarchy (cpu and cpuacct apart) or combined
(cpu,cpuacct); the cgroup2 mount may be the only one (unified), or sit beside v1 at
/sys/fs/cgroup/unified (hybrid, where it usually holds no controllers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from collector.paths import Roots, read_text

V1_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "devices", "freezer",
                  "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc"}
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134.
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), path)


@dataclass
class CgroupMounts:
    """Where each v1 controller and the v2 hierarchy are mounted, as paths on the host."""

    v1: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v2: str | None = None

    @property
    def version(self) -> int | None:
        # Hybrid hosts mount both; the kubelet then uses v1 for resource controllers.
        if "memory" in self.v1 or "cpuacct" in self.v1 or "cpu" in self.v1:
            return 1
        return 2 if self.v2 is not None else None


def parse_mountinfo(text: str) -> CgroupMounts:
    mounts = CgroupMounts()
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        fstype, mount_point = rf[0], _unescape(lf[4])
        if fstype == "cgroup2":
            if mounts.v2 is None:
                mounts.v2 = mount_point
        elif fstype == "cgroup":
            for option in rf[2].split(","):
                if option in V1_CONTROLLERS and option not in mounts.v1:
                    mounts.v1[option] = mount_point
    return mounts


def read_cgroup_mounts(roots: Roots) -> CgroupMounts:
    """PID 1's mount namespace is the host's (hostPID); fall back to our own when it is hidden."""
    for pid in ("1", "self"):
        text = read_text(roots.proc_path(pid, "mountinfo"))
        if text:
            mounts = parse_mountinfo(text)
            if mounts.version is not None:
                return mounts
    return CgroupMounts()
