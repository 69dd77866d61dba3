"""Host roots and the one way every source reads a file.

The collector runs in a pod with the host's /proc, /sys and /var/log/pods mounted somewhere else,
so no module may spell "/proc" or "/sys": every path goes through `Roots`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from collector import heldfiles

# cgroup and most /proc files are far smaller than this; one os.read returns them whole.
_CHUNK = 65536


@dataclass(frozen=True)
class Roots:
    proc: str = "/proc"
    sys: str = "/sys"
    pod_log_dir: str = "/var/log/pods"
    # The kubelet's pod-resources gRPC socket (GPU allocations), mounted read-only.
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"

    def proc_path(self, *parts: str | int) -> str:
        return os.path.join(self.proc, *map(str, parts))

    def sys_path(self, *parts: str) -> str:
        return os.path.join(self.sys, *parts)

    def host_path(self, path: str) -> str:
        """A path as the host's PID 1 sees it (e.g. a mount point from its mountinfo) -> here.

        Paths under /sys and /proc map onto the configured roots; anything else is reached through
        PID 1's root directory, which hostPID makes visible at <proc>/1/root.
        """
        for prefix, root in (("/sys", self.sys), ("/proc", self.proc)):
            if path == prefix or path.startswith(prefix + "/"):
                return root + path[len(prefix):]
        return self.proc_path("1", "root") + path

    @property
    def containers_log_dir(self) -> str:
        # /var/log/containers sits next to /var/log/pods and maps container ids to names.
        return os.path.join(os.path.dirname(self.pod_log_dir.rstrip("/")), "containers")


def read_bytes(path: str) -> bytes | None:
    """The whole file, or None when it is missing or unreadable.

    A missing file is "no data", never an error: cgroups vanish between listing and reading
    (ENOENT, or ENODEV from kernfs for a removed cgroup), and controllers differ between kernels.
    Files on the cgroup filesystems are read through held descriptors (collector/heldfiles.py).
    """
    held = heldfiles.ACTIVE
    if held is not None and path.startswith(held.prefixes):
        return held.read(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _CHUNK)
        if len(data) == _CHUNK:  # only big files (mountinfo on a busy node, diskstats) loop
            parts = [data]
            while chunk := os.read(fd, _CHUNK):
                parts.append(chunk)
            data = b"".join(parts)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str) -> str | None:
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8", "replace")


def read_int(path: str) -> int | None:
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return int(data)
    except ValueError:
        return None


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
