"""A simulated Kubernetes node made of real kernel objects, for end-to-end collector tests.

It builds what the kubelet (cgroupfs driver, cgroup v1) and a container runtime leave on a node:
* pod cgroups `kubepods/burstable/pod<uid>/<64-hex id>` (Guaranteed pods directly under
  `kubepods`), with a pause (sandbox) container per pod, in every v1 hierarchy the collector reads
  (cpu, cpuacct, memory, blkio, pids), found from /proc/self/mountinfo because controllers may be
  mounted apart or together;
* CPU and memory limits written where the kubelet writes them (pod and container cgroups);
* a network namespace per pod that is not hostNetwork, with a veth pair whose pod side is `eth0`
  (link-local 169.254.x.y/30 addresses, so nothing leaves this machine);
* `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log` and the `/var/log/containers/
  <pod>_<ns>_<container>-<id>.log` symlinks the kubelet writes (none for the pause container),
  under a temporary directory;
* real processes placed in their container cgroup before they exec (so every page they touch is
  charged there), in the pod's netns via `ip netns exec`.

Everything is named with a per-run id and torn down in reverse order by `close()`, even after a
failure; tests call it from a fixture finalizer.
"""

from __future__ import annotations

import errno
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The hierarchies the collector reads on a v1 node; pids too, as the kubelet creates it.
CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")
CFS_PERIOD_US = 100_000
# pid -> the stdout lines of a started process (filled by a reader thread).
_LINES: dict[int, "queue.Queue[str | None]"] = {}


def v1_mounts(mountinfo: str) -> dict[str, str]:
    """controller -> mount point of each cgroup v1 hierarchy in a mountinfo text."""
    mounts: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, fs = left.split(), right.split()
        if len(fields) < 5 or len(fs) < 3 or fs[0] != "cgroup":
            continue
        for option in fs[2].split(","):
            if option not in ("rw", "ro"):  # super options list the controllers among flags
                mounts.setdefault(option, fields[4])
    return mounts


def why_unsupported(scratch: Path) -> str | None:
    """The reason this machine cannot host a simulated node, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (cgroups, network namespaces)"
    mounts = v1_mounts(Path("/proc/self/mountinfo").read_text())
    missing = [c for c in CONTROLLERS if c not in mounts]
    if missing:
        return f"no cgroup v1 hierarchy for {', '.join(missing)} (a cgroup v2-only kernel?)"
    probe = f"kmsim-probe-{secrets.token_hex(3)}"
    for controller in CONTROLLERS:
        path = Path(mounts[controller]) / probe
        try:
            path.mkdir()
            path.rmdir()
        except OSError as error:
            return f"cgroup v1 {controller} hierarchy is not writable: {error.strerror}"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot create network namespaces: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if block_device_of(scratch) is None:
        return f"{scratch} is not on a block device (tmpfs?): no direct I/O to account"
    try:
        fd = os.open(scratch / probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
        os.close(fd)
    except OSError as error:
        return f"O_DIRECT is not supported on {scratch}: {error.strerror}"
    finally:
        (scratch / probe).unlink(missing_ok=True)
    return None


def block_device_of(path: Path) -> str | None:
    """'major:minor' of the whole disk holding `path` (blkio rules apply to disks, not partitions)."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sysdev = Path(f"/sys/dev/block/{major}:{minor}")
    if not sysdev.exists():
        return None  # tmpfs, overlay, ... (device 0:NN)
    if (sysdev / "partition").exists():
        return (sysdev.resolve().parent / "dev").read_text().strip()
    return f"{major}:{minor}"


@dataclass
class SimContainer:
    name: str
    id: str
    # Relative cgroup path, e.g. "kubepods/burstable/pod<uid>/<id>".
    cgroup: str
    pause: bool = False


@dataclass
class SimPod:
    name: str
    namespace: str
    uid: str
    qos: str
    cgroup: str
    host_network: bool
    netns: str | None
    containers: list[SimContainer] = field(default_factory=list)
    veth_host: str | None = None
    address_host: str | None = None
    address_pod: str | None = None

    def container(self, name: str) -> SimContainer:
        return next(c for c in self.containers if c.name == name)

    @property
    def pause(self) -> SimContainer:
        return next(c for c in self.containers if c.pause)


class SimNode:
    def __init__(self, scratch: Path) -> None:
        self.run_id = secrets.token_hex(3)
        self.scratch = scratch
        self.mounts = v1_mounts(Path("/proc/self/mountinfo").read_text())
        self.pod_log_dir = scratch / "var" / "log" / "pods"
        self.containers_log_dir = scratch / "var" / "log" / "containers"
        self.pod_log_dir.mkdir(parents=True)
        self.containers_log_dir.mkdir(parents=True)
        self.pods: list[SimPod] = []
        self.processes: list[subprocess.Popen] = []
        # Undo actions, run last-in first-out by close().
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._pause_binary = scratch / "pause"
        # A stand-in for the sandbox's /pause: a process whose comm is "pause" that does nothing.
        shutil.copy("/bin/sleep", self._pause_binary)
        self._next_subnet = 0

    # -- cgroups ---------------------------------------------------------------------------------

    def cgroup_path(self, controller: str, relative: str) -> Path:
        return Path(self.mounts[controller]) / relative

    def _mkdir_cgroup(self, relative: str, shared: bool = False) -> bool:
        """Create the cgroup in every hierarchy; True when it was created here (not there yet)."""
        created = False
        for controller in CONTROLLERS:
            path = self.cgroup_path(controller, relative)
            try:
                path.mkdir()
            except FileExistsError:
                # kubepods and the QoS parents may exist already (another run); never remove them
                # unless we made them.
                continue
            created = True
            self._undo.append((f"rmdir {path}", _rmdir_cgroup(path, shared)))
        return created

    def write(self, controller: str, relative: str, filename: str, value: str) -> None:
        (self.cgroup_path(controller, relative) / filename).write_text(value)

    def read(self, controller: str, relative: str, filename: str) -> str:
        return (self.cgroup_path(controller, relative) / filename).read_text()

    def add_pod(self, name: str, containers: list[str], qos: str = "Burstable",
                namespace: str = "sim", host_network: bool = False, veth: bool = False) -> SimPod:
        uid = str(uuid.uuid4())
        for parent in ("kubepods", "kubepods/burstable", "kubepods/besteffort"):
            if self._mkdir_cgroup(parent, shared=True) and parent == "kubepods":
                # As the kubelet does: kubepods weighs the node's allocatable CPUs, so pods are
                # not starved by a busy host (1024 shares per CPU).
                self.write("cpu", parent, "cpu.shares", str(1024 * (os.cpu_count() or 1)))
        parent = {"Guaranteed": "kubepods", "Burstable": "kubepods/burstable",
                  "BestEffort": "kubepods/besteffort"}[qos]
        pod_cgroup = f"{parent}/pod{uid}"
        self._mkdir_cgroup(pod_cgroup)
        netns = None
        if not host_network:
            netns = f"kmsim-{self.run_id}-{len(self.pods)}"
            _run(["ip", "netns", "add", netns])
            self._undo.append((f"ip netns del {netns}", lambda n=netns: _quiet(["ip", "netns", "del", n])))
            _run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        pod = SimPod(name=f"{name}-{self.run_id}", namespace=namespace, uid=uid, qos=qos,
                     cgroup=pod_cgroup, host_network=host_network, netns=netns)
        if veth:
            self._add_veth(pod)
        log_dir = self.pod_log_dir / f"{namespace}_{pod.name}_{uid}"
        log_dir.mkdir()
        for container_name in ["POD", *containers]:
            cid = secrets.token_hex(32)
            container = SimContainer(name=container_name, id=cid, cgroup=f"{pod_cgroup}/{cid}",
                                     pause=container_name == "POD")
            self._mkdir_cgroup(container.cgroup)
            pod.containers.append(container)
            if container.pause:
                continue  # the kubelet keeps no log for the sandbox
            (log_dir / container_name).mkdir()
            (log_dir / container_name / "0.log").write_text("")
            link = self.containers_log_dir / f"{pod.name}_{namespace}_{container_name}-{cid}.log"
            link.symlink_to(log_dir / container_name / "0.log")
        self.pods.append(pod)
        # The sandbox: holds the pod's network namespace, as the real pause container does.
        self.start(pod, pod.pause, [str(self._pause_binary), "infinity"])
        return pod

    def _add_veth(self, pod: SimPod) -> None:
        assert pod.netns is not None
        subnet = self._next_subnet
        self._next_subnet += 1
        base = 4 * subnet
        # Host side named like a CNI's ("veth..."), so the node's own figures skip it.
        host_side = f"veth{self.run_id}{subnet}"
        pod.veth_host = host_side
        pod.address_host = f"169.254.123.{base + 1}"
        pod.address_pod = f"169.254.123.{base + 2}"
        _run(["ip", "link", "add", host_side, "type", "veth", "peer", "name", "eth0",
              "netns", pod.netns])
        self._undo.append((f"ip link del {host_side}", lambda: _quiet(["ip", "link", "del", host_side])))
        _run(["sysctl", "-qw", f"net.ipv6.conf.{host_side}.disable_ipv6=1"])
        _run(["ip", "addr", "add", f"{pod.address_host}/30", "dev", host_side])
        _run(["ip", "link", "set", host_side, "up"])
        _run(["ip", "-n", pod.netns, "addr", "add", f"{pod.address_pod}/30", "dev", "eth0"])
        _run(["ip", "-n", pod.netns, "link", "set", "eth0", "up"])

    def set_cpu_limit(self, pod: SimPod, container: SimContainer, cores: float) -> None:
        """A limit (CFS quota) with an equal request (shares), on the pod and the container."""
        quota = str(int(cores * CFS_PERIOD_US))
        shares = str(max(int(cores * 1024), 2))
        for relative in (pod.cgroup, container.cgroup):
            self.write("cpu", relative, "cpu.cfs_period_us", str(CFS_PERIOD_US))
            self.write("cpu", relative, "cpu.cfs_quota_us", quota)
            self.write("cpu", relative, "cpu.shares", shares)

    def set_memory_limit(self, pod: SimPod, container: SimContainer, limit: int) -> None:
        for relative in (pod.cgroup, container.cgroup):
            self.write("memory", relative, "memory.limit_in_bytes", str(limit))

    def set_blkio_rule(self, pod: SimPod, device: str) -> None:
        """A throttle rule too high to ever throttle: on kernels >= 6.10 v1 blkio throttle
        statistics only count on a disk once some cgroup has a rule for it."""
        limit = str(10**15)
        for filename in ("blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"):
            self.write("blkio", pod.cgroup, filename, f"{device} {limit}")

    # -- processes -------------------------------------------------------------------------------

    def start(self, pod: SimPod, container: SimContainer, argv: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start argv in the container's cgroups (before exec) and the pod's netns."""
        procs_files = [str(self.cgroup_path(c, container.cgroup) / "cgroup.procs")
                       for c in CONTROLLERS]

        def join_cgroups() -> None:
            pid = str(os.getpid()).encode()
            for procs in procs_files:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)

        if pod.netns is not None:
            argv = ["ip", "netns", "exec", pod.netns, *argv]
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, preexec_fn=join_cgroups, env=env, close_fds=True,
        )
        self.processes.append(process)
        self._undo.append((f"kill {process.pid}", lambda p=process: _kill(p)))
        # Its stdout lines go to a queue, so waiting for one can time out (see wait_for).
        lines: queue.Queue[str | None] = queue.Queue()
        _LINES[process.pid] = lines
        threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
        return process

    def start_python(self, pod: SimPod, container: SimContainer, code: str) -> subprocess.Popen:
        return self.start(pod, container, [sys.executable, "-u", "-c", code])

    # -- teardown --------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Undo everything, newest first; returns what could not be undone (for the test log)."""
        problems: list[str] = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as error:  # keep cleaning up the rest
                problems.append(f"{what}: {error}")
        return problems


def _rmdir_cgroup(path: Path, shared: bool) -> Callable[[], None]:
    def undo() -> None:
        # A cgroup can be removed once its last task is released, which may lag a moment behind
        # the kill. A shared parent (kubepods, a QoS class) may hold another run's pods, which
        # v1 reports as EBUSY: leave it then, it is what a kubelet would leave anyway.
        # Children just removed can keep a v1 memory/blkio/pids parent busy for a moment (they are
        # still being taken offline), so EBUSY on a parent without child directories is retried.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as error:
                if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                if shared and any(child.is_dir() for child in path.iterdir()):
                    return  # another run's pods live here
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    return undo


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True)


# -- workloads (run with `python -c`; each waits for a line on stdin and answers on stdout) -------

BURN_CPU = """
import sys
print("ready", flush=True)
while True:
    pass
"""

HOLD_MEMORY = """
import mmap, sys
size = int(sys.argv[1]) if len(sys.argv) > 1 else {size}
block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # anonymous RSS
for offset in range(0, size, mmap.PAGESIZE):
    block[offset] = 1  # touch every page: anonymous memory is charged when first written
print("ready", flush=True)
sys.stdin.readline()
"""

WRITE_DIRECT = """
import mmap, os, sys
path, size = {path!r}, {size}
chunk = 1 << 20
buffer = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT requires
buffer.write(b"k" * chunk)
print("ready", flush=True)
sys.stdin.readline()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
written = 0
while written < size:
    written += os.write(fd, buffer)
os.close(fd)
print("done", written, flush=True)
sys.stdin.readline()
"""

SEND_TCP = """
import socket, sys
host, port, size = {host!r}, {port}, {size}
print("ready", flush=True)
sys.stdin.readline()
payload = b"k" * (1 << 16)
with socket.create_connection((host, port), timeout=10) as connection:
    sent = 0
    while sent < size:
        n = min(len(payload), size - sent)
        connection.sendall(payload[:n])
        sent += n
    connection.shutdown(socket.SHUT_WR)
    connection.recv(1)  # wait for the receiver to close: every byte has left the pod
print("done", sent, flush=True)
sys.stdin.readline()
"""


def _pump(process: subprocess.Popen, lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    try:
        for line in process.stdout:
            lines.put(line)
    except ValueError:  # closed by _kill while reading
        pass
    lines.put(None)


def wait_for(process: subprocess.Popen, word: str, timeout: float = 10.0) -> str:
    """Wait for a line starting with `word` on the process's stdout."""
    lines = _LINES[process.pid]
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"workload {process.args!r} did not say {word!r} in {timeout} s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            process.wait(timeout=5)
            err = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"workload {process.args!r} exited: {err.strip()}")
        if line.startswith(word):
            return line.strip()
