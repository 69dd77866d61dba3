"""cgroup v2 files (opencontainers/cgroups fs2/*.go semantics). Everything is hierarchical on v2.

Units are converted explicitly: cpu.stat and *.pressure are in microseconds, we keep nanoseconds
for CPU (like v1's cpuacct.usage) and microseconds for pressure stall totals.
"""

from __future__ import annotations

from collector.paths import read_bytes, read_text
from collector.sources.cgroupstats import CgroupStats, working_set
from collector.sources.cgroupv1 import parse_flat_keyed


def parse_cpu_max(text: str | None) -> float | None:
    """'max 100000' -> None (unlimited); '50000 100000' -> 0.5 cores."""
    if text is None:
        return None
    f = text.split()
    if not f or f[0] == "max":
        return None
    period = int(f[1]) if len(f) > 1 else 100000
    quota = int(f[0])
    return quota / period if quota > 0 and period > 0 else None


def parse_memory_max(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return None if text == "max" else int(text)


def parse_io_stat(text: str, devices: set[str] | None = None) -> tuple[int, int, int, int]:
    """(rbytes, wbytes, rios, wios) summed over the devices we count (dbytes/dios ignored)."""
    rb = wb = ri = wi = 0
    for line in text.splitlines():
        f = line.split()
        if not f or (devices is not None and f[0] not in devices):
            continue
        for kv in f[1:]:
            key, _, value = kv.partition("=")
            if key == "rbytes":
                rb += int(value)
            elif key == "wbytes":
                wb += int(value)
            elif key == "rios":
                ri += int(value)
            elif key == "wios":
                wi += int(value)
    return rb, wb, ri, wi


def parse_pressure(text: str) -> dict[str, int]:
    """'some avg10=0.00 avg60=0.00 avg300=0.00 total=1234' lines -> {'some': 1234, 'full': ...} (µs)."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        for kv in f[1:]:
            if kv.startswith("total="):
                totals[f[0]] = int(kv[6:])
    return totals


def read_pressure(base: str, into: CgroupStats) -> None:
    text = read_text(f"{base}/cpu.pressure")
    if text is not None:
        into.psi_cpu_some_us = parse_pressure(text).get("some")
    text = read_text(f"{base}/memory.pressure")
    if text is not None:
        p = parse_pressure(text)
        into.psi_memory_some_us, into.psi_memory_full_us = p.get("some"), p.get("full")
    text = read_text(f"{base}/io.pressure")
    if text is not None:
        p = parse_pressure(text)
        into.psi_io_some_us, into.psi_io_full_us = p.get("some"), p.get("full")


def read_stats(base: str, root: bool = False, devices: set[str] | None = None) -> CgroupStats:
    """Read the cgroup directory `base`; `root` for the root cgroup, which has no memory.current."""
    s = CgroupStats()
    text = read_text(f"{base}/cpu.stat")
    if text is not None:
        st = parse_flat_keyed(text)
        if "usage_usec" in st:
            s.cpu_ns = st["usage_usec"] * 1000
        # Present only where the cpu controller is enabled for this cgroup.
        s.periods = st.get("nr_periods")
        s.throttled_periods = st.get("nr_throttled")
        if "throttled_usec" in st:
            s.throttled_ns = st["throttled_usec"] * 1000
    text = read_text(f"{base}/memory.stat")
    stat = parse_flat_keyed(text) if text is not None else {}
    if root:
        # opencontainers/cgroups fs2: the root has no memory.current; its usage is anon + file.
        usage = stat["anon"] + stat["file"] if "anon" in stat and "file" in stat else None
    else:
        data = read_bytes(f"{base}/memory.current")
        usage = int(data) if data is not None else None
        s.cpu_limit_cores = parse_cpu_max(read_text(f"{base}/cpu.max"))
        s.mem_limit = parse_memory_max(read_text(f"{base}/memory.max"))
    s.mem_usage = usage
    s.mem_working_set = working_set(usage, stat.get("inactive_file"))
    s.mem_rss = max(stat["anon"], 0) if "anon" in stat else None
    s.mem_cache = max(stat["file"], 0) if "file" in stat else None
    text = read_text(f"{base}/memory.events")
    if text is not None:
        s.oom_kills = parse_flat_keyed(text).get("oom_kill")
    text = read_text(f"{base}/io.stat")
    if text is not None:
        s.disk_read_bytes, s.disk_write_bytes, s.disk_read_ops, s.disk_write_ops = parse_io_stat(
            text, devices
        )
    read_pressure(base, s)
    return s
