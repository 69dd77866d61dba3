"""statvfs of the host's root filesystem (through <proc>/1/root, which hostPID makes the host's /)."""

from __future__ import annotations

import os

from collector.paths import Roots


def usage_from_statvfs(st: os.statvfs_result) -> tuple[int, int]:
    """(used bytes, capacity bytes); used counts reserved blocks as used, like df."""
    capacity = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return max(used, 0), capacity


def read_filesystem(roots: Roots) -> tuple[int, int]:
    try:
        st = os.statvfs(roots.proc_path("1", "root"))
    except OSError:  # no hostPID or no permission: our own / is the next best answer
        st = os.statvfs("/")
    return usage_from_statvfs(st)
