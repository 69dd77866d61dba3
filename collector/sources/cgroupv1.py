"""cgroup v1 files (opencontainers/cgroups fs/*.go semantics).

Every counter we need for a pod is hierarchical on v1 as long as we pick the right file:
cpuacct.usage and memory.usage_in_bytes include descendants, memory.stat's total_* keys are the
hierarchical ones, and blkio needs the *_recursive files (the plain ones only count tasks that sit
directly in the cgroup, which for a pod cgroup is nobody).
"""

from __future__ import annotations

from collector.paths import read_bytes, read_text
from collector.sources.cgroupstats import CgroupStats, working_set

# memory.limit_in_bytes without a limit is PAGE_COUNTER_MAX pages: 9223372036854771712 on 4k pages.
UNLIMITED_MEMORY = 1 << 60


def parse_flat_keyed(text: str) -> dict[str, int]:
    """'key value' lines (cpu.stat, memory.stat, memory.oom_control)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value:
            try:
                values[key] = int(value)
            except ValueError:
                continue
    return values


def pick(data: bytes, needles: tuple[bytes, ...]) -> dict[bytes, int]:
    """Only the wanted keys of a 'key value' file, by search instead of splitting every line.

    `needles` are b"\n<key> "; memory.stat has ~40 lines of which we need three, and this runs
    for every pod and container every cycle.
    """
    buf = b"\n" + data
    out: dict[bytes, int] = {}
    for needle in needles:
        i = buf.find(needle)
        if i >= 0:
            start = i + len(needle)
            end = buf.find(b"\n", start)
            try:
                out[needle] = int(buf[start:end] if end >= 0 else buf[start:])
            except ValueError:
                continue
    return out


MEMORY_STAT_KEYS = (b"\ntotal_inactive_file ", b"\ntotal_rss ", b"\ntotal_cache ")
CPU_STAT_KEYS = (b"\nnr_periods ", b"\nnr_throttled ", b"\nthrottled_time ")
OOM_KEYS = (b"\noom_kill ",)


def parse_cfs_limit(quota_text: str | None, period_text: str | None) -> float | None:
    """cpu.cfs_quota_us / cpu.cfs_period_us in cores; quota -1 means unlimited (None)."""
    if quota_text is None or period_text is None:
        return None
    quota, period = int(quota_text), int(period_text)
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_memory_limit(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    return None if value >= UNLIMITED_MEMORY else value


def parse_blkio(text: str, devices: set[str] | None = None) -> tuple[int, int]:
    """(read, write) summed over devices from blkio.throttle.io_service_bytes / io_serviced.

    Lines are '8:0 Read 1282048'. Only Read and Write are used: Total also includes Discard, and
    Sync/Async split the same I/O a second way. `devices` (major:minor) limits the sum to the
    disks the node counts, so stacked devices (dm, md) do not count the same bytes twice.
    """
    read = write = 0
    for line in text.splitlines():
        f = line.split()
        if len(f) != 3 or (devices is not None and f[0] not in devices):
            continue
        if f[1] == "Read":
            read += int(f[2])
        elif f[1] == "Write":
            write += int(f[2])
    return read, write


def _blkio_file(base: str, name: str) -> str | None:
    text = read_text(f"{base}/blkio.throttle.{name}_recursive")
    if text is None:  # kernels before 4.16 have no throttle *_recursive files
        text = read_text(f"{base}/blkio.throttle.{name}")
    return text


def read_stats(
    hierarchies: dict[str, str], rel: str, devices: set[str] | None = None, blkio: bool = True,
    limits: bool = True,
) -> CgroupStats:
    """Read one cgroup whose path relative to every hierarchy root is `rel` ('' for the root).

    `limits=False` skips the three limit files (the caller keeps them from an earlier cycle).
    """
    s = CgroupStats()
    cpuacct = hierarchies.get("cpuacct")
    if cpuacct is not None:
        data = read_bytes(f"{cpuacct}{rel}/cpuacct.usage")
        if data is not None:
            s.cpu_ns = int(data)
    cpu = hierarchies.get("cpu")
    if cpu is not None:
        data = read_bytes(f"{cpu}{rel}/cpu.stat")
        if data is not None:
            st = pick(data, CPU_STAT_KEYS)
            s.periods = st.get(CPU_STAT_KEYS[0])
            s.throttled_periods = st.get(CPU_STAT_KEYS[1])
            s.throttled_ns = st.get(CPU_STAT_KEYS[2])
        if rel and limits:  # the root cgroup cannot be limited
            s.cpu_limit_cores = parse_cfs_limit(
                read_text(f"{cpu}{rel}/cpu.cfs_quota_us"), read_text(f"{cpu}{rel}/cpu.cfs_period_us")
            )
    memory = hierarchies.get("memory")
    if memory is not None:
        usage_data = read_bytes(f"{memory}{rel}/memory.usage_in_bytes")
        usage = int(usage_data) if usage_data is not None else None
        data = read_bytes(f"{memory}{rel}/memory.stat")
        stat = pick(data, MEMORY_STAT_KEYS) if data is not None else {}
        s.mem_usage = usage
        s.mem_working_set = working_set(usage, stat.get(MEMORY_STAT_KEYS[0]))
        # Negative values can appear in racy per-cpu stats; the contract needs >= 0.
        rss, cache = stat.get(MEMORY_STAT_KEYS[1]), stat.get(MEMORY_STAT_KEYS[2])
        s.mem_rss = max(rss, 0) if rss is not None else None
        s.mem_cache = max(cache, 0) if cache is not None else None
        if rel and limits:
            s.mem_limit = parse_memory_limit(read_text(f"{memory}{rel}/memory.limit_in_bytes"))
        data = read_bytes(f"{memory}{rel}/memory.oom_control")
        if data is not None:
            s.oom_kills = pick(data, OOM_KEYS).get(OOM_KEYS[0])
    blk = hierarchies.get("blkio")
    if blk is not None and blkio:
        base = f"{blk}{rel}"
        text = _blkio_file(base, "io_service_bytes")
        if text is not None:
            s.disk_read_bytes, s.disk_write_bytes = parse_blkio(text, devices)
        text = _blkio_file(base, "io_serviced")
        if text is not None:
            s.disk_read_ops, s.disk_write_ops = parse_blkio(text, devices)
    return s


def parse_blkio_per_device(text: str) -> dict[str, int]:
    """major:minor -> Read + Write bytes (or ops) from a blkio.throttle file."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in ("Read", "Write"):
            totals[f[0]] = totals.get(f[0], 0) + int(f[2])
    return totals


def unaccounted_disks(root_text: str | None, disk_bytes: dict[str, int]) -> list[str]:
    """Disks (major:minor) with I/O in /proc/diskstats but none in the root blkio throttle stats.

    Since Linux 6.10 blk-throttle is set up on a disk's queue only when a cgroup first gets a
    throttle rule for it, and until then no cgroup's throttle statistics count anything on that
    disk. Measured here: once set up it keeps counting even after the rule is removed, so "is there
    a rule now" is the wrong test; "does the root cgroup's hierarchical total see the disk's I/O"
    is the right one, and costs one file read.
    """
    root = parse_blkio_per_device(root_text) if root_text is not None else {}
    return sorted(d for d, done in disk_bytes.items() if done > 0 and root.get(d, 0) == 0)


def kernel_has_blkio_quirk(release: str) -> bool:
    """True for kernels >= 6.10 ('6.18.44-fc-v782' -> True)."""
    parts = release.strip().split(".")
    try:
        major = int(parts[0])
        minor = int("".join(ch for ch in parts[1] if ch.isdigit()) or 0) if len(parts) > 1 else 0
    except ValueError:
        return False
    return (major, minor) >= (6, 10)
