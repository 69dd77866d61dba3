"""Derive the other kubelet layouts from the captured cgroup v1 cgroupfs fixture tree.

The files under fixtures/v1-cgroupfs were captured from real cgroups on this machine (see
fixtures/README.md). The systemd driver and the CRI-O / Docker leaf names only rename directories
(the kernel's files are the same), so tests build those trees at run time with `relayout_v1`.
`to_v2` writes a cgroup v2 tree in the v2 file formats (cpu.stat in µs, cpu.max, memory.current,
memory.max, memory.stat, memory.events, io.stat, *.pressure) from the same captured values: this
machine's v2 hierarchy has no memory or io controller to capture from, so those trees are
assembled; fixtures/v2-real holds v2 files captured as they are here for the parser tests.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V1 = FIXTURES / "v1-cgroupfs"
CG = "sys/fs/cgroup"
_POD = re.compile(r"^pod([0-9a-f-]{36})$")
_ID = re.compile(r"^[0-9a-f]{64}$")


def leaf_name(cid: str, driver: str, runtime: str) -> str:
    if driver == "systemd":
        return {"containerd": f"cri-containerd-{cid}.scope", "crio": f"crio-{cid}.scope",
                "docker": f"docker-{cid}.scope"}[runtime]
    return f"crio-{cid}" if runtime == "crio" else cid


def map_rel(rel: str, driver: str, runtime: str) -> str:
    """'kubepods/burstable/pod<uid>/<id>' in the new layout."""
    parts = rel.strip("/").split("/")
    out: list[str] = []
    qos = ""
    for part in parts:
        if part == "kubepods":
            out.append("kubepods.slice" if driver == "systemd" else part)
        elif part in ("burstable", "besteffort"):
            qos = part
            out.append(f"kubepods-{part}.slice" if driver == "systemd" else part)
        elif m := _POD.match(part):
            uid = m.group(1)
            if driver == "systemd":
                prefix = f"kubepods-{qos}-" if qos else "kubepods-"
                out.append(f"{prefix}pod{uid.replace('-', '_')}.slice")
            else:
                out.append(part)
        elif _ID.match(part):
            out.append(leaf_name(part, driver, runtime))
        else:
            out.append(part)
    return "/".join(out)


def _rewrite_proc_cgroup(text: str, driver: str, runtime: str, v2: bool) -> str:
    lines = []
    unified = "/"
    for line in text.splitlines():
        hid, ctl, path = line.split(":", 2)
        if "kubepods" in path:
            path = "/" + map_rel(path, driver, runtime)
        if ctl == "memory":
            unified = path  # on a v2 host the one hierarchy has the path v1's controllers had
        lines.append(f"{hid}:{ctl}:{path}")
    return f"0::{unified}\n" if v2 else "\n".join(lines) + "\n"


def _copy_non_cgroup(src: Path, dst: Path, driver: str, runtime: str, v2: bool) -> None:
    for dirpath, _dirs, files in os.walk(src):
        rel_dir = Path(dirpath).relative_to(src)
        if str(rel_dir).startswith(CG):
            continue
        (dst / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in _dirs if (Path(dirpath) / d).is_symlink()]:
            s, d = Path(dirpath) / name, dst / rel_dir / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
            elif rel_dir.parts[:1] == ("proc",) and name == "cgroup":
                d.write_text(_rewrite_proc_cgroup(s.read_text(), driver, runtime, v2))
            elif str(rel_dir) == "proc/1" and name == "mountinfo" and v2:
                d.write_text(_v2_mountinfo(s.read_text()))
            else:
                shutil.copy2(s, d)
    # Empty directories (sys/block/<disk>) carry meaning too.
    for dirpath, dirs, _files in os.walk(src):
        for name in dirs:
            rel = (Path(dirpath) / name).relative_to(src)
            if not str(rel).startswith(CG) and not (Path(dirpath) / name).is_symlink():
                (dst / rel).mkdir(parents=True, exist_ok=True)


def relayout_v1(src: Path, dst: Path, driver: str, runtime: str, conmon: bool = True) -> Path:
    """A copy of the v1 tree `src` with systemd / cgroupfs names and runtime leaf names."""
    _copy_non_cgroup(src, dst, driver, runtime, v2=False)
    for controller_dir in (src / CG).iterdir():
        for dirpath, _dirs, files in os.walk(controller_dir):
            rel = Path(dirpath).relative_to(controller_dir)
            new_rel = map_rel(str(rel), driver, runtime) if str(rel) != "." else ""
            target = dst / CG / controller_dir.name / new_rel
            target.mkdir(parents=True, exist_ok=True)
            for name in files:
                shutil.copy2(Path(dirpath) / name, target / name)
            if conmon and runtime == "crio" and _ID.match(rel.name):
                # CRI-O's monitor gets its own scope beside each container; it is not a container.
                (target.parent / f"crio-conmon-{rel.name}{'.scope' if driver == 'systemd' else ''}"
                 ).mkdir(exist_ok=True)
    return dst


def _v2_mountinfo(text: str) -> str:
    lines = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype == "cgroup" or (fstype == "tmpfs" and " /sys/fs/cgroup " in left):
            continue
        if fstype == "cgroup2":
            line = line.replace(" /sys/fs/cgroup/unified ", " /sys/fs/cgroup ")
        lines.append(line)
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _v2_files(v1: Path, rel: str, root: bool) -> dict[str, str]:
    """The v2 files of one cgroup, from the captured v1 values of the same cgroup."""
    cpuacct = _read(v1 / CG / "cpuacct" / rel / "cpuacct.usage")
    cpu = _kv(_read(v1 / CG / "cpu" / rel / "cpu.stat"))
    mem = _kv(_read(v1 / CG / "memory" / rel / "memory.stat"))
    usage_usec = int(cpuacct) // 1000 if cpuacct else 0
    throttled_usec = cpu.get("throttled_time", 0) // 1000
    files = {
        "cpu.stat": (f"usage_usec {usage_usec}\nuser_usec {usage_usec * 4 // 5}\n"
                     f"system_usec {usage_usec - usage_usec * 4 // 5}\n"
                     "core_sched.force_idle_usec 0\n"
                     f"nr_periods {cpu.get('nr_periods', 0)}\nnr_throttled {cpu.get('nr_throttled', 0)}\n"
                     f"throttled_usec {throttled_usec}\nnr_bursts 0\nburst_usec 0\n"),
        "memory.stat": "".join(f"{k} {v}\n" for k, v in (
            ("anon", mem.get("total_rss", 0)), ("file", mem.get("total_cache", 0)),
            ("kernel", 0), ("kernel_stack", 0), ("pagetables", 0), ("sec_pagetables", 0),
            ("percpu", 0), ("sock", 0), ("vmalloc", 0), ("shmem", mem.get("total_shmem", 0)),
            ("file_mapped", mem.get("total_mapped_file", 0)), ("file_dirty", mem.get("total_dirty", 0)),
            ("file_writeback", mem.get("total_writeback", 0)), ("swapcached", 0), ("anon_thp", 0),
            ("inactive_anon", mem.get("total_inactive_anon", 0)),
            ("active_anon", mem.get("total_active_anon", 0)),
            ("inactive_file", mem.get("total_inactive_file", 0)),
            ("active_file", mem.get("total_active_file", 0)),
            ("unevictable", mem.get("total_unevictable", 0)), ("slab_reclaimable", 0),
            ("slab_unreclaimable", 0), ("slab", 0), ("pgfault", mem.get("total_pgfault", 0)),
            ("pgmajfault", mem.get("total_pgmajfault", 0)))),
        "cpu.pressure": (f"some avg10=0.00 avg60=0.00 avg300=0.00 total={throttled_usec}\n"
                         "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        "memory.pressure": ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        "io.pressure": ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
    }
    if root:
        files["cpuset.cpus.effective"] = _read(v1 / CG / "cpuset" / "cpuset.effective_cpus") or "0\n"
        return files
    usage = _read(v1 / CG / "memory" / rel / "memory.usage_in_bytes") or "0\n"
    limit = int(_read(v1 / CG / "memory" / rel / "memory.limit_in_bytes") or 1 << 62)
    quota = int(_read(v1 / CG / "cpu" / rel / "cpu.cfs_quota_us") or -1)
    period = int(_read(v1 / CG / "cpu" / rel / "cpu.cfs_period_us") or 100000)
    oom = _kv(_read(v1 / CG / "memory" / rel / "memory.oom_control")).get("oom_kill", 0)
    io: dict[str, dict[str, int]] = {}
    for fname, key in (("blkio.throttle.io_service_bytes_recursive", "bytes"),
                       ("blkio.throttle.io_serviced_recursive", "ios")):
        for line in (_read(v1 / CG / "blkio" / rel / fname) or "").splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in ("Read", "Write"):
                io.setdefault(f[0], {})[("r" if f[1] == "Read" else "w") + key] = int(f[2])
    files.update({
        "memory.current": usage,
        "memory.max": "max\n" if limit >= 1 << 60 else f"{limit}\n",
        "cpu.max": f"max {period}\n" if quota <= 0 else f"{quota} {period}\n",
        "memory.events": f"low 0\nhigh 0\nmax 0\noom {oom}\noom_kill {oom}\noom_group_kill 0\n",
        "io.stat": "".join(
            f"{dev} rbytes={v.get('rbytes', 0)} wbytes={v.get('wbytes', 0)} rios={v.get('rios', 0)} "
            f"wios={v.get('wios', 0)} dbytes=0 dios=0\n" for dev, v in io.items()),
        "cgroup.procs": _read(v1 / CG / "memory" / rel / "cgroup.procs") or "",
    })
    return files


def to_v2(src: Path, dst: Path, driver: str = "systemd", runtime: str = "containerd") -> Path:
    """A cgroup v2 (unified) tree with the same pods, containers and counters as the v1 `src`."""
    _copy_non_cgroup(src, dst, driver, runtime, v2=True)
    memory_root = src / CG / "memory"
    for dirpath, _dirs, _files in os.walk(memory_root):
        rel = str(Path(dirpath).relative_to(memory_root))
        rel = "" if rel == "." else rel
        target = dst / CG / (map_rel(rel, driver, runtime) if rel else "")
        target.mkdir(parents=True, exist_ok=True)
        for name, content in _v2_files(src, rel, root=not rel).items():
            (target / name).write_text(content)
    return dst
