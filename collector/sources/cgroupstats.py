"""What one cgroup (node root, pod or container) says at an instant: cumulative counters + gauges."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class CgroupStats:
    # Cumulative counters (deltas go into the batch).
    cpu_ns: int | None = None
    throttled_ns: int | None = None
    throttled_periods: int | None = None
    periods: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    disk_read_ops: int | None = None
    disk_write_ops: int | None = None
    oom_kills: int | None = None
    psi_cpu_some_us: int | None = None
    psi_memory_some_us: int | None = None
    psi_memory_full_us: int | None = None
    psi_io_some_us: int | None = None
    psi_io_full_us: int | None = None
    # Gauges (values at the end of the interval).
    mem_usage: int | None = None
    mem_working_set: int | None = None
    mem_rss: int | None = None
    mem_cache: int | None = None
    mem_limit: int | None = None  # None = unlimited
    cpu_limit_cores: float | None = None  # None = unlimited

    def no_data(self) -> bool:
        return self.cpu_ns is None and self.mem_usage is None


COUNTERS = tuple(f.name for f in fields(CgroupStats) if not f.name.startswith(("mem_", "cpu_limit")))


def working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """cAdvisor's working set: usage - inactive_file, clamped at 0 (stats can race past usage)."""
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)
