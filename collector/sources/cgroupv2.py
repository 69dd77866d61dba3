"""cgroup v2 files (opencontainers/cgroups fs2/*.go semantics). Everything is hierarchical on v2.

Units are converted explicitly: cpu.stat and *.pressure are in microseconds, we keep nanoseconds
for CPU (like v1's cpuacct.usage) and microseconds for pressure stall totals.
"""

from __future__ import annotations

from collector.paths import read_bytes, read_text
from collector.sources.cgroupstats import CgroupStats, working_set
from collector.sources.cgroupv1 import pick

MEMORY_STAT_KEYS = (b"\nanon ", b"\nfile ", b"\ninactive_file ")
CPU_STAT_KEYS = (b"\nusage_usec ", b"\nnr_periods ", b"\nnr_throttled ", b"\nthrottled_usec ")
EVENTS_KEYS = (b"\noom_kill ",)


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


def _pressure_totals(data: bytes) -> tuple[int | None, int | None]:
    """(some, full) totals in µs; the file is 'some …' then, since Linux 5.13, 'full …'."""
    found: list[int | None] = [None, None]
    for index, prefix in enumerate((b"some ", b"full ")):
        line = data.find(prefix)
        if line < 0:
            continue
        i = data.find(b"total=", line)
        if i >= 0:
            end = data.find(b"\n", i)
            found[index] = int(data[i + 6:end] if end >= 0 else data[i + 6:])
    return found[0], found[1]


def read_pressure(base: str, into: CgroupStats, suffix: str = ".pressure") -> None:
    """A cgroup's cpu/memory/io.pressure, or with suffix="" the node's /proc/pressure/{cpu,…}."""
    data = read_bytes(f"{base}/cpu{suffix}")
    if data is not None:
        into.psi_cpu_some_us = _pressure_totals(data)[0]
    data = read_bytes(f"{base}/memory{suffix}")
    if data is not None:
        into.psi_memory_some_us, into.psi_memory_full_us = _pressure_totals(data)
    data = read_bytes(f"{base}/io{suffix}")
    if data is not None:
        into.psi_io_some_us, into.psi_io_full_us = _pressure_totals(data)


def read_stats(base: str, root: bool = False, devices: set[str] | None = None,
               limits: bool = True) -> CgroupStats:
    """Read the cgroup directory `base`; `root` for the root cgroup, which has no memory.current.

    `limits=False` skips cpu.max and memory.max (the caller keeps them from an earlier cycle).
    """
    s = CgroupStats()
    data = read_bytes(f"{base}/cpu.stat")
    if data is not None:
        st = pick(data, CPU_STAT_KEYS)
        usage, periods, throttled, throttled_usec = (st.get(k) for k in CPU_STAT_KEYS)
        s.cpu_ns = usage * 1000 if usage is not None else None
        # Present only where the cpu controller is enabled for this cgroup.
        s.periods, s.throttled_periods = periods, throttled
        s.throttled_ns = throttled_usec * 1000 if throttled_usec is not None else None
    data = read_bytes(f"{base}/memory.stat")
    stat = pick(data, MEMORY_STAT_KEYS) if data is not None else {}
    anon, file, inactive_file = (stat.get(k) for k in MEMORY_STAT_KEYS)
    if root:
        # opencontainers/cgroups fs2: the root has no memory.current; its usage is anon + file.
        usage = anon + file if anon is not None and file is not None else None
    else:
        cur = read_bytes(f"{base}/memory.current")
        usage = int(cur) if cur is not None else None
        if limits:
            s.cpu_limit_cores = parse_cpu_max(read_text(f"{base}/cpu.max"))
            s.mem_limit = parse_memory_max(read_text(f"{base}/memory.max"))
    s.mem_usage = usage
    s.mem_working_set = working_set(usage, inactive_file)
    s.mem_rss = max(anon, 0) if anon is not None else None
    s.mem_cache = max(file, 0) if file is not None else None
    data = read_bytes(f"{base}/memory.events")
    if data is not None:
        s.oom_kills = pick(data, EVENTS_KEYS).get(EVENTS_KEYS[0])
    text = read_text(f"{base}/io.stat")
    if text is not None:
        s.disk_read_bytes, s.disk_write_bytes, s.disk_read_ops, s.disk_write_ops = parse_io_stat(
            text, devices
        )
    read_pressure(base, s)
    return s
