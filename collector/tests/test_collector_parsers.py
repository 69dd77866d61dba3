"""Parsers fed with files captured on this machine (fixtures/), one source at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from layouts import FIXTURES, V1

from collector.sources import cgroupv1, cgroupv2, diskstats, meminfo, mountinfo, netdev, procstat

T0, T1 = V1 / "t0", V1 / "t1"
CG = "sys/fs/cgroup"
WEB = "kubepods/burstable/pod051f3a5c-0d5c-411e-bd16-bd0dc14f6bb7"
APP = WEB + "/e4a610d89475eb9844291f10ef01147394c5c1a791888eb2efb927685bca1519"
BATCH = "kubepods/besteffort/podabe1d8e2-a5c2-4e46-bbf2-6861ae35b10e"


def text(path: Path) -> str:
    return path.read_text()


# -- /proc/stat ----------------------------------------------------------------------------------

def test_proc_stat_busy_time_leaves_out_idle_and_iowait() -> None:
    ticks = procstat.parse_stat(text(T0 / "proc/stat"))
    line = text(T0 / "proc/stat").splitlines()[0].split()[1:9]
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, line)
    assert ticks["idle"] == idle and ticks["iowait"] == iowait
    assert procstat.busy_seconds(ticks, hz=100) == pytest.approx(
        (user + nice + system + irq + softirq + steal) / 100)


def test_proc_stat_fields_never_go_backwards() -> None:
    guard = procstat.CpuGuard()
    first = procstat.parse_stat(text(T0 / "proc/stat"))
    guard.apply(first)
    jitter = dict(first, idle=first["idle"] - 5, iowait=first["iowait"] - 3)
    assert guard.apply(jitter) == first


def test_cpu_capacity_is_online_cpus_narrowed_by_the_root_cpuset(tmp_path: Path) -> None:
    assert procstat.parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-7\n")
    (tmp_path / "cpuset").write_text("2-3\n")
    from collector.paths import Roots

    roots = Roots(str(tmp_path / "proc"), str(tmp_path / "sys"))
    assert procstat.read_capacity(roots, str(tmp_path / "cpuset")) == 2.0
    assert procstat.read_capacity(roots, None) == 8.0


# -- /proc/meminfo -------------------------------------------------------------------------------

def test_meminfo_is_converted_from_kib_to_bytes() -> None:
    raw = text(T0 / "proc/meminfo")
    total_kib = int(raw.splitlines()[0].split()[1])
    values = meminfo.parse_meminfo(raw)
    assert values["MemTotal"] == total_kib * 1024
    assert 0 < values["MemAvailable"] <= values["MemTotal"]


# -- /proc/diskstats -----------------------------------------------------------------------------

def test_diskstats_counts_whole_disks_and_skips_loop_zram_and_partitions() -> None:
    raw = text(T0 / "proc/diskstats")
    whole = {p.name for p in (T0 / "sys/block").iterdir()}
    all_lines = diskstats.parse_diskstats(raw)
    counted = {k for k in all_lines if diskstats.is_counted(k, whole)}
    assert "loop0" in all_lines and "zram0" in all_lines
    assert counted == {"vda"}
    reads, read_bytes, writes, written = all_lines["vda"]
    fields = next(line.split() for line in raw.splitlines() if line.split()[2] == "vda")
    assert read_bytes == int(fields[5]) * 512 and written == int(fields[9]) * 512


def test_without_sys_block_partitions_are_told_by_name() -> None:
    assert diskstats.is_counted("sda", None) and not diskstats.is_counted("sda1", None)
    assert diskstats.is_counted("nvme0n1", None) and not diskstats.is_counted("nvme0n1p2", None)
    assert not diskstats.is_counted("dm-0", None) and not diskstats.is_counted("md127", None)


# -- net/dev -------------------------------------------------------------------------------------

def test_node_network_skips_loopback_and_pod_side_interfaces() -> None:
    interfaces = netdev.parse_netdev(text(T0 / "proc/1/net/dev"))
    assert "lo" in interfaces and "eth0" in interfaces
    assert any(name.startswith("veth") for name in interfaces)  # the pods' host-side ends
    kept = netdev.node_interfaces(interfaces)
    assert "lo" not in kept and not any(n.startswith("veth") for n in kept)
    assert "eth0" in kept


def test_pod_network_counts_every_interface_but_loopback() -> None:
    pids = (T1 / CG / "memory" / WEB).glob("*/cgroup.procs")
    pid = next(p.read_text().split()[0] for p in pids if p.read_text().strip())
    interfaces = netdev.parse_netdev(text(T1 / "proc" / pid / "net/dev"))
    assert set(netdev.pod_interfaces(interfaces)) == {"eth0"}
    rx_bytes, rx_packets, *_ , tx_bytes, tx_packets, _e, _d = interfaces["eth0"]
    assert tx_bytes > 0 and tx_packets > 0


# -- mountinfo -----------------------------------------------------------------------------------

def test_mountinfo_finds_separately_mounted_v1_controllers() -> None:
    mounts = mountinfo.parse_mountinfo(text(T0 / "proc/1/mountinfo"))
    assert mounts.version == 1
    assert mounts.v1["cpu"] == "/sys/fs/cgroup/cpu" and mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    assert mounts.v2 == "/sys/fs/cgroup/unified"


def test_mountinfo_finds_combined_cpu_cpuacct_and_escaped_paths() -> None:
    # The same line format with cpu and cpuacct in one hierarchy, as systemd mounts them.
    raw = ("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - "
           "cgroup cgroup rw,cpu,cpuacct\n"
           "35 31 0:32 / /host\\040root/memory rw,relatime - cgroup cgroup rw,memory\n")
    mounts = mountinfo.parse_mountinfo(raw)
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert mounts.v1["memory"] == "/host root/memory"


def test_mountinfo_of_a_unified_host_is_v2() -> None:
    raw = ("30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
           "rw,nsdelegate,memory_recursiveprot\n")
    mounts = mountinfo.parse_mountinfo(raw)
    assert mounts.version == 2 and mounts.v2 == "/sys/fs/cgroup"


# -- cgroup v1 -----------------------------------------------------------------------------------

def test_v1_cfs_quota_gives_cores_and_minus_one_is_unlimited() -> None:
    quota = text(T0 / CG / "cpu" / APP / "cpu.cfs_quota_us")
    period = text(T0 / CG / "cpu" / APP / "cpu.cfs_period_us")
    assert cgroupv1.parse_cfs_limit(quota, period) == 0.5
    unlimited = text(T0 / CG / "cpu" / BATCH / "cpu.cfs_quota_us")
    assert unlimited.strip() == "-1"
    assert cgroupv1.parse_cfs_limit(unlimited, period) is None


def test_v1_memory_limit_of_page_counter_max_is_unlimited() -> None:
    assert cgroupv1.parse_memory_limit(text(T0 / CG / "memory" / APP / "memory.limit_in_bytes")) == 256 << 20
    raw = text(T0 / CG / "memory" / BATCH / "memory.limit_in_bytes")
    assert int(raw) > 1 << 62
    assert cgroupv1.parse_memory_limit(raw) is None


def test_v1_memory_working_set_is_usage_minus_total_inactive_file() -> None:
    stats = cgroupv1.read_stats({"memory": str(T0 / CG / "memory")}, "/" + APP)
    usage = int(text(T0 / CG / "memory" / APP / "memory.usage_in_bytes"))
    stat = cgroupv1.parse_flat_keyed(text(T0 / CG / "memory" / APP / "memory.stat"))
    assert stats.mem_usage == usage
    assert stats.mem_working_set == max(usage - stat["total_inactive_file"], 0)
    assert stats.mem_rss == stat["total_rss"] and stats.mem_cache == stat["total_cache"]


def test_v1_working_set_clamps_at_zero_when_inactive_file_exceeds_usage() -> None:
    from collector.sources.cgroupstats import working_set

    assert working_set(4096, 8192) == 0
    assert working_set(None, 8192) is None


def test_v1_blkio_reads_read_and_write_lines_never_total() -> None:
    raw = text(T1 / CG / "blkio" / "blkio.throttle.io_service_bytes_recursive")
    lines = {tuple(line.split()[:2]): int(line.split()[-1]) for line in raw.splitlines()
             if len(line.split()) == 3}
    assert lines[("254:0", "Discard")] > 0  # this root really has discards
    assert lines[("254:0", "Total")] > lines[("254:0", "Read")] + lines[("254:0", "Write")]
    assert cgroupv1.parse_blkio(raw) == (lines[("254:0", "Read")], lines[("254:0", "Write")])


def test_v1_blkio_sums_only_the_counted_devices() -> None:
    raw = "8:0 Read 100\n8:0 Write 200\n253:0 Read 100\n253:0 Write 200\n8:0 Total 300\nTotal 600\n"
    assert cgroupv1.parse_blkio(raw, {"8:0"}) == (100, 200)
    assert cgroupv1.parse_blkio(raw) == (200, 400)


def test_v1_throttling_comes_from_cpu_stat_in_nanoseconds() -> None:
    stats = cgroupv1.read_stats({"cpu": str(T1 / CG / "cpu")}, "/" + APP)
    raw = cgroupv1.parse_flat_keyed(text(T1 / CG / "cpu" / APP / "cpu.stat"))
    assert stats.periods == raw["nr_periods"] > 0
    assert stats.throttled_ns == raw["throttled_time"]


def test_v1_oom_kills_come_from_memory_oom_control() -> None:
    raw = text(T0 / CG / "memory" / APP / "memory.oom_control")
    assert "oom_kill " in raw
    assert cgroupv1.parse_flat_keyed(raw)["oom_kill"] == 0


def test_v1_missing_files_are_no_data_not_errors(tmp_path: Path) -> None:
    stats = cgroupv1.read_stats({"cpu": str(tmp_path), "cpuacct": str(tmp_path),
                                 "memory": str(tmp_path), "blkio": str(tmp_path)}, "/gone")
    assert stats.no_data() and stats.disk_read_bytes is None and stats.mem_limit is None


def test_blkio_quirk_needs_kernel_6_10_or_later() -> None:
    assert cgroupv1.kernel_has_blkio_quirk(text(T0 / "proc/sys/kernel/osrelease"))  # 6.18 here
    assert cgroupv1.kernel_has_blkio_quirk("6.10.0-rc1")
    assert not cgroupv1.kernel_has_blkio_quirk("6.9.12-200.fc40.x86_64")
    assert not cgroupv1.kernel_has_blkio_quirk("5.15.0-122-generic")


def test_a_disk_with_io_that_the_root_blkio_totals_miss_is_unaccounted() -> None:
    root = text(T1 / CG / "blkio" / "blkio.throttle.io_service_bytes_recursive")
    assert cgroupv1.unaccounted_disks(root, {"254:0": 10**9}) == []
    # What a root shows while blk-throttle was never set up on the disk: no device lines.
    assert cgroupv1.unaccounted_disks("Total 0\n", {"254:0": 10**9}) == ["254:0"]
    assert cgroupv1.unaccounted_disks("Total 0\n", {"254:0": 0}) == []


# -- cgroup v2 -----------------------------------------------------------------------------------

V2 = FIXTURES / "v2-real"


def test_v2_cpu_stat_is_converted_from_microseconds() -> None:
    stats = cgroupv2.read_stats(str(V2 / CG / "kmcap-v2"))
    usage_usec = cgroupv1.parse_flat_keyed(text(V2 / CG / "kmcap-v2/cpu.stat"))["usage_usec"]
    assert stats.cpu_ns == usage_usec * 1000 > 0
    # This hierarchy has no cpu controller: no throttling keys, which is no data, not zero.
    assert stats.periods is None and stats.throttled_ns is None


def test_v2_pressure_totals_are_microseconds_of_some_and_full() -> None:
    raw = text(V2 / CG / "kmcap-v2/cpu.pressure")
    totals = cgroupv2.parse_pressure(raw)
    assert totals["some"] == int(raw.split("total=")[1].split()[0]) > 0
    assert set(cgroupv2.parse_pressure(text(V2 / "proc/pressure/io"))) == {"some", "full"}


def test_v2_max_means_unlimited() -> None:
    assert cgroupv2.parse_cpu_max("max 100000\n") is None
    assert cgroupv2.parse_cpu_max("150000 100000\n") == 1.5
    assert cgroupv2.parse_memory_max("max\n") is None
    assert cgroupv2.parse_memory_max("268435456\n") == 268435456


def test_v2_io_stat_sums_bytes_and_ios_and_ignores_discards() -> None:
    raw = ("254:0 rbytes=1048576 wbytes=8388608 rios=16 wios=64 dbytes=4096 dios=1\n"
           "7:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
    assert cgroupv2.parse_io_stat(raw, {"254:0"}) == (1048576, 8388608, 16, 64)
    assert cgroupv2.parse_io_stat(raw) == (1052672, 8388608, 17, 64)


def test_v2_root_usage_is_anon_plus_file(tmp_path: Path) -> None:
    (tmp_path / "memory.stat").write_text("anon 1000\nfile 3000\ninactive_file 2500\n")
    stats = cgroupv2.read_stats(str(tmp_path), root=True)
    assert stats.mem_usage == 4000 and stats.mem_working_set == 1500
    assert stats.mem_rss == 1000 and stats.mem_cache == 3000


def test_v2_pressure_files_are_read_into_some_and_full_totals() -> None:
    from collector.sources.cgroupstats import CgroupStats

    stats = CgroupStats()
    cgroupv2.read_pressure(str(V2 / CG / "kmcap-v2"), stats)
    expected = cgroupv2.parse_pressure(text(V2 / CG / "kmcap-v2/cpu.pressure"))
    assert stats.psi_cpu_some_us == expected["some"]
    assert stats.psi_io_some_us == 0 and stats.psi_io_full_us == 0
    node = CgroupStats()
    cgroupv2.read_pressure(str(V2 / "proc/pressure"), node, suffix="")
    assert node.psi_memory_full_us == cgroupv2.parse_pressure(text(V2 / "proc/pressure/memory"))["full"]
