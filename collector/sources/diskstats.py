"""/proc/diskstats: bytes and operations of the node's whole disks.

Partitions are skipped (their I/O is already in the disk's line): a name is a whole disk when
/sys/block/<name> exists. Of the whole disks, stacked and memory-backed devices are skipped too:
dm-* (LVM, dm-crypt) and md* (software RAID) pass their I/O on to the disks below them, so
counting them would count the same bytes twice; loop*, ram* and zram* are files or memory, not
disk I/O. Sectors in diskstats are always 512 bytes, whatever the device's block size.
"""

from __future__ import annotations

import os
import re

from collector.paths import Roots, read_text

SECTOR = 512
SKIP_PREFIXES = ("loop", "ram", "zram", "dm-", "md")


def parse_diskstats(text: str) -> dict[str, tuple[int, int, int, int]]:
    """name -> (reads completed, bytes read, writes completed, bytes written), every line."""
    disks: dict[str, tuple[int, int, int, int]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        disks[f[2]] = (int(f[3]), int(f[5]) * SECTOR, int(f[7]), int(f[9]) * SECTOR)
    return disks


_PARTITION = re.compile(r"^(?:(?:sd|vd|xvd|hd)[a-z]+\d+|(?:nvme\d+n\d+|mmcblk\d+)p\d+)$")


def is_counted(name: str, whole_disks: set[str] | None) -> bool:
    if name.startswith(SKIP_PREFIXES):
        return False
    if whole_disks is None:  # no /sys/block to ask: recognise the common partition names
        return not _PARTITION.match(name)
    return name.replace("/", "!") in whole_disks


def whole_disks(roots: Roots) -> set[str] | None:
    try:
        return set(os.listdir(roots.sys_path("block")))
    except OSError:
        return None


def read_diskstats(roots: Roots, disks: set[str] | None = None) -> dict[str, tuple[int, int, int, int]]:
    text = read_text(roots.proc_path("diskstats"))
    if text is None:
        raise FileNotFoundError(roots.proc_path("diskstats"))
    if disks is None:
        disks = whole_disks(roots)
    return {k: v for k, v in parse_diskstats(text).items() if is_counted(k, disks)}
