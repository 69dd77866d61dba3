"""/proc/stat: the node's CPU time.

busy = total - idle - iowait over user nice system idle iowait irq softirq steal; guest and
guest_nice are already inside user and nice, so they are not added again. Some kernels let idle
and iowait step backwards a little (node_exporter collector/cpu_linux.go); `CpuGuard` keeps every
field monotonic so a jitter never becomes negative or inflated usage.
"""

from __future__ import annotations

import os

from collector.paths import Roots, read_text

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_stat(text: str) -> dict[str, int]:
    """The aggregate `cpu` line as ticks per field (missing trailing fields = 0)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            values += [0] * (len(FIELDS) - len(values))
            return dict(zip(FIELDS, values))
    raise ValueError("no aggregate cpu line in /proc/stat")


def busy_seconds(ticks: dict[str, int], hz: int = USER_HZ) -> float:
    total = sum(ticks[f] for f in FIELDS)
    return (total - ticks["idle"] - ticks["iowait"]) / hz


class CpuGuard:
    """Keeps each /proc/stat field from going backwards between readings."""

    def __init__(self) -> None:
        self._last: dict[str, int] | None = None

    def apply(self, ticks: dict[str, int]) -> dict[str, int]:
        if self._last is not None:
            ticks = {f: max(v, self._last[f]) for f, v in ticks.items()}
        self._last = ticks
        return ticks


def read_stat(roots: Roots) -> dict[str, int]:
    text = read_text(roots.proc_path("stat"))
    if text is None:
        raise FileNotFoundError(roots.proc_path("stat"))
    return parse_stat(text)


def parse_cpu_list(text: str) -> set[int]:
    """'0-3,8,10-11' -> {0,1,2,3,8,10,11} (the format of cpu/online and cpuset.cpus)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        else:
            cpus.add(int(part))
    return cpus


def read_capacity(roots: Roots, root_cpuset_path: str | None) -> float | None:
    """Online CPUs, narrowed to the root cgroup's cpuset when one is readable."""
    online_text = read_text(roots.sys_path("devices", "system", "cpu", "online"))
    online = parse_cpu_list(online_text) if online_text else None
    allowed: set[int] | None = None
    if root_cpuset_path is not None:
        text = read_text(root_cpuset_path)
        if text and text.strip():
            allowed = parse_cpu_list(text)
    if online is not None and allowed is not None:
        return float(len(online & allowed))
    if online is not None:
        return float(len(online))
    return float(len(allowed)) if allowed is not None else None
