"""/proc/<pid>/net/dev: interface counters of the network namespace a process lives in.

For the node we read PID 1's namespace and keep only interfaces that carry traffic in and out of
the node. Skipped: lo; the host side of pod veth pairs (veth*, cali*, lxc*, cilium*, ...), whose
traffic is the pods' own and is either local or already counted on the physical interface; and
bridges and overlays (docker0, cni0, cbr0, flannel.*, vxlan*, tunl*, genev*, weave*, kube-*,
nerdctl*), because encapsulated pod traffic also crosses the physical NIC, so adding them would
count it twice. Inside a pod's namespace every interface but lo is the pod's.
"""

from __future__ import annotations

from collector.paths import Roots, read_text

NODE_SKIP_PREFIXES = (
    "lo", "veth", "cali", "lxc", "cilium", "cni", "cbr", "docker", "br-", "flannel", "vxlan",
    "tunl", "genev", "weave", "vethwe", "kube-", "nerdctl", "virbr", "tun", "tap", "gke",
    "azv", "eni", "vnet", "antrea", "ovn", "ovs", "nodelocaldns", "dummy",
)

# (rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped)
Counters = tuple[int, int, int, int, int, int, int, int]


def parse_netdev(text: str) -> dict[str, Counters]:
    interfaces: dict[str, Counters] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        f = rest.split()
        if len(f) < 16:
            continue
        interfaces[name.strip()] = (
            int(f[0]), int(f[1]), int(f[2]), int(f[3]), int(f[8]), int(f[9]), int(f[10]), int(f[11])
        )
    return interfaces


def node_interfaces(interfaces: dict[str, Counters]) -> dict[str, Counters]:
    return {k: v for k, v in interfaces.items() if not k.startswith(NODE_SKIP_PREFIXES)}


def pod_interfaces(interfaces: dict[str, Counters]) -> dict[str, Counters]:
    return {k: v for k, v in interfaces.items() if k != "lo"}


def read_netdev(roots: Roots, pid: int | str) -> dict[str, Counters] | None:
    text = read_text(roots.proc_path(pid, "net", "dev"))
    return None if text is None else parse_netdev(text)
