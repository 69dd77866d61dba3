"""Which pod and container each GPU is allocated to, from the kubelet's pod-resources API.

The kubelet serves `PodResourcesLister.List` (gRPC, v1, GA since Kubernetes 1.28) on the unix
socket /var/lib/kubelet/pod-resources/kubelet.sock; the DaemonSet mounts that directory read-only.
The answer lists, per pod and container, the device ids each device plugin allocated. NVIDIA's
plugin names whole GPUs `nvidia.com/gpu` (ids `GPU-<uuid>`, or `GPU-<uuid>::<n>` for the n-th
time-slice replica of a shared GPU) and MIG instances `nvidia.com/mig-<profile>` (ids
`MIG-<uuid>`); the `nvidia.com/gpu.shared` name of renamed time-sliced resources is kept too
(dcgm-exporter issue #151 is about missing it).

grpcio is imported only where the socket exists, so a node without the kubelet socket (or a
collector image without grpcio) reads no allocations and logs nothing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Iterable

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
# The whole cycle must not wait on a stuck kubelet.
TIMEOUT_SECONDS = 2.0
# The kubelet answers a node's pods in well under this (dcgm-exporter uses the same limit: 16 MiB).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Allocation:
    namespace: str
    pod: str
    container: str
    resource: str
    # The device's NVML UUID (GPU-… or MIG-…), with any time-slice suffix removed.
    uuid: str
    # The plugin's own id as the kubelet reported it (e.g. GPU-…::3 for a time-slice replica).
    device_id: str


def is_gpu_resource(name: str) -> bool:
    return name in ("nvidia.com/gpu", "nvidia.com/gpu.shared") or name.startswith("nvidia.com/mig-")


def device_uuid(device_id: str) -> str:
    """`GPU-<uuid>::<n>` (a time-slice replica) -> `GPU-<uuid>`; other ids unchanged."""
    return device_id.split("::", 1)[0]


def allocations(response: Any) -> list[Allocation]:
    """GPU allocations from a ListPodResourcesResponse (any object with its fields)."""
    out: list[Allocation] = []
    for pod in response.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                if not is_gpu_resource(devices.resource_name):
                    continue
                for device_id in devices.device_ids:
                    out.append(Allocation(pod.namespace, pod.name, container.name,
                                          devices.resource_name, device_uuid(device_id), device_id))
    return out


def by_uuid(found: Iterable[Allocation]) -> dict[str, list[Allocation]]:
    grouped: dict[str, list[Allocation]] = {}
    for allocation in found:
        grouped.setdefault(allocation.uuid, []).append(allocation)
    return grouped


def socket_exists(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def read_allocations(path: str = DEFAULT_SOCKET, timeout: float = TIMEOUT_SECONDS) -> list[Allocation] | None:
    """GPU allocations on this node, or None where the socket does not exist (no kubelet API).

    Raises on gRPC failures (the source registry reports them once in the log and in
    collector.sources) and ImportError where the socket exists but grpcio is not installed.
    """
    if not socket_exists(path):
        return None
    import grpc  # type: ignore[import-untyped]

    from collector.podresources import api_pb2, api_pb2_grpc

    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(f"unix://{os.path.abspath(path)}", options=options) as channel:
        stub = api_pb2_grpc.PodResourcesListerStub(channel)
        response = stub.List(api_pb2.ListPodResourcesRequest(), timeout=timeout)
    return allocations(response)
