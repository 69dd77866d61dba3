"""Held cgroup file descriptors: fresh values on every pread, removed and re-created cgroups,
closing what a cycle did not read, and never holding ordinary files."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Iterator

import pytest

from collector import heldfiles, paths
from collector.heldfiles import HeldFiles

MOUNTINFO = """\
23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_it_finds_the_devices_of_cgroup_mounts_only() -> None:
    assert heldfiles.cgroup_filesystems(MOUNTINFO) == {
        os.makedev(0, 29), os.makedev(0, 32), os.makedev(0, 38)}


def test_ordinary_files_are_never_held(tmp_path: Path) -> None:
    # A fixture tree is replaced file by file between cycles; a held descriptor would keep
    # reading the deleted file's old content.
    assert heldfiles.on_cgroup_filesystem([str(tmp_path)]) == ()
    assert heldfiles.activate([str(tmp_path)]) is None
    assert heldfiles.ACTIVE is None


def test_past_the_descriptor_limit_files_are_read_the_plain_way(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1\n")
    held = HeldFiles((str(tmp_path) + "/",), max_fds=0)
    assert held.read(str(tmp_path / "a")) == b"1\n"
    assert len(held) == 0
    assert held.read(str(tmp_path / "missing")) is None


@pytest.fixture
def cgroup_dir() -> Iterator[Path]:
    """A scratch cgroup in the v1 cpuacct or the v2 hierarchy, where this machine lets us."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fs = right.split()
        if fs and fs[0] in ("cgroup", "cgroup2"):
            options = fs[2].split(",") if fs[0] == "cgroup" else ["unified"]
            for option in options:
                mounts.setdefault(option, left.split()[4])
    root = mounts.get("cpuacct") or mounts.get("unified")
    if root is None:
        pytest.skip("no cgroup filesystem mounted")
    path = Path(root) / f"km-held-{secrets.token_hex(3)}"
    try:
        path.mkdir()
    except OSError as error:
        pytest.skip(f"cannot create a cgroup here: {error.strerror}")
    try:
        yield path
    finally:
        if path.exists():
            path.rmdir()


def _usage_file(cgroup: Path) -> Path:
    # cpuacct.usage on a v1 cpuacct hierarchy, cpu.stat (usage_usec) on v2.
    v1 = cgroup / "cpuacct.usage"
    return v1 if v1.exists() else cgroup / "cpu.stat"


def test_a_held_cgroup_file_shows_fresh_values_and_follows_a_recreated_cgroup(
    cgroup_dir: Path,
) -> None:
    root = str(cgroup_dir.parent)
    assert heldfiles.on_cgroup_filesystem([root]) == (root + "/",)
    held = HeldFiles((root + "/",), max_fds=100)
    usage = str(_usage_file(cgroup_dir))
    procs = str(cgroup_dir / "cgroup.procs")

    before = held.read(usage)
    assert before is not None and len(held) == 1
    assert held.read(procs) == b""
    assert len(held) == 1  # task lists are read afresh, never held
    pid = os.fork()
    if pid == 0:  # the child joins the cgroup and burns CPU until killed
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
            while True:
                pass
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while held.read(procs) != f"{pid}\n".encode() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert held.read(procs) == f"{pid}\n".encode()
        time.sleep(0.2)
        after = held.read(usage)
        assert after != before  # the same descriptor, the kernel's new figures
        assert len(held) == 1
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    # Removed: no data. Re-created under the same path: the new cgroup's file, not ENODEV.
    cgroup_dir.rmdir()
    assert held.read(usage) is None
    cgroup_dir.mkdir()
    assert held.read(usage) is not None
    assert len(held) == 1
    held.close()


def test_files_not_read_in_a_cycle_are_closed_at_its_end(cgroup_dir: Path) -> None:
    root = str(cgroup_dir.parent)
    held = HeldFiles((root + "/",), max_fds=100)
    held.read(str(_usage_file(cgroup_dir)))
    held.read(str(_usage_file(cgroup_dir.parent)))
    held.end_cycle()
    assert len(held) == 2
    held.read(str(_usage_file(cgroup_dir.parent)))
    held.end_cycle()
    assert len(held) == 1  # the scratch cgroup's file was not read this cycle
    held.close()
    assert len(held) == 0


def test_read_bytes_goes_through_the_held_files_under_their_prefixes(
    cgroup_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = str(cgroup_dir.parent)
    held = HeldFiles((root + "/",), max_fds=100)
    monkeypatch.setattr(heldfiles, "ACTIVE", held)
    (tmp_path / "plain").write_text("x")

    assert paths.read_bytes(str(_usage_file(cgroup_dir))) is not None
    assert paths.read_bytes(str(tmp_path / "plain")) == b"x"
    assert len(held) == 1
    held.close()
