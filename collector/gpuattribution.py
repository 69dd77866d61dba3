"""Who holds each GPU: the batch's `gpus` list from NVML's devices, their processes and the
kubelet's allocations.

Two sources say which pod a GPU belongs to, and each misses cases the other sees:
* the kubelet's pod-resources allocations (collector/sources/podresources.py) name the pod and
  container a device plugin gave the device to, even while it runs nothing on it, and a
  time-sliced GPU allocated to several pods;
* NVML's processes mapped through /proc/<pid>/cgroup (collector/sources/gpu.py) name the pods
  that really use it, even without a device plugin (e.g. NVIDIA_VISIBLE_DEVICES=all).
A holder is every pod either source names. Its memory is its processes' device memory; its
utilisation their per-process SM utilisation where the device gives that, else, where it is the
device's only holder, the device's own utilisation (MIG instances and vGPU guests give no
per-process utilisation: dcgm-exporter #272, #577). A device with more than one holding pod is
`shared` (time-slicing, or a process-level free-for-all): the per-pod figures are then all there is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from collector.sources.podresources import Allocation


@dataclass
class Holder:
    uid: str | None
    namespace: str | None
    pod: str | None
    container: str | None
    memory_bytes: int | None = None
    utilization_percent: float | None = None
    allocated: bool = False

    def contract(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "namespace": self.namespace,
            "pod": self.pod,
            "container": self.container,
            "allocated": self.allocated,
            "memory_bytes": self.memory_bytes,
            "utilization_percent": None if self.utilization_percent is None else round(self.utilization_percent, 3),
        }


@dataclass
class Attribution:
    # The batch's `gpus`, one per device (MIG instances included).
    gpus: list[dict[str, Any]] = field(default_factory=list)
    # Utilisation to add to pods and containers for devices without per-process figures:
    # pod uid -> percent, (pod uid, container name) -> percent.
    pod_utilization: dict[str, float] = field(default_factory=dict)
    container_utilization: dict[tuple[str, str], float] = field(default_factory=dict)


def attribute(
    devices: Iterable[dict[str, Any]],
    allocations: Iterable[Allocation] | None,
    pods: Iterable[dict[str, Any]],
) -> Attribution:
    """`devices` as GpuReading.contract()["devices"]; `pods` the batch's pod rows (uid, name,
    namespace, containers with name and runtime id)."""
    by_name: dict[tuple[str, str], dict[str, Any]] = {}
    by_uid: dict[str, dict[str, Any]] = {}
    container_names: dict[str, str] = {}  # bare runtime id -> container name
    for row in pods:
        by_name[(row["namespace"], row["name"])] = row
        by_uid[row["uid"]] = row
        for c in row.get("containers", ()):
            container_names[c["id"].rsplit("/", 1)[-1]] = c["name"]
    allocated: dict[str, list[Allocation]] = {}
    for allocation in allocations or ():
        allocated.setdefault(allocation.uuid, []).append(allocation)

    out = Attribution()
    for device in devices:
        holders: dict[tuple[str, str | None], Holder] = {}

        def holder(uid: str | None, namespace: str | None, pod: str | None, container: str | None) -> Holder:
            if uid is not None and uid in by_uid:
                namespace, pod = by_uid[uid]["namespace"], by_uid[uid]["name"]
            elif uid is None and (namespace, pod) in by_name:
                uid = by_name[(namespace or "", pod or "")]["uid"]
            key = (_ident(uid, namespace, pod), container)
            found = holders.get(key)
            if found is None:
                found = holders[key] = Holder(uid, namespace, pod, container)
            return found

        for allocation in allocated.get(device["uuid"], ()):
            holder(None, allocation.namespace, allocation.pod, allocation.container).allocated = True
        per_process = device.get("per_process_utilization", True)
        for process in device.get("processes", ()):
            uid = process.get("pod_uid")
            if uid is None:
                continue  # the host's: counted in the device figures only
            cid = process.get("container_id")
            h = holder(uid, None, None, container_names.get(cid) if cid else None)
            if process.get("memory_bytes") is not None:
                h.memory_bytes = (h.memory_bytes or 0) + process["memory_bytes"]
            if per_process and process.get("utilization_percent") is not None:
                h.utilization_percent = (h.utilization_percent or 0.0) + process["utilization_percent"]
        ordered = sorted(holders.values(), key=lambda h: (h.namespace or "", h.pod or "", h.container or ""))
        # A pod seen both by allocation (container name) and by a process in its pod cgroup
        # (no container) is one holder: fold the container-less entry into the named one.
        ordered = _merge_podlevel(ordered)
        shared = len({_ident(h.uid, h.namespace, h.pod) for h in ordered}) > 1
        if not per_process and not shared and ordered and device.get("utilization_percent") is not None:
            only = ordered[0]
            only.utilization_percent = device["utilization_percent"]
            if only.uid is not None:
                out.pod_utilization[only.uid] = out.pod_utilization.get(only.uid, 0.0) + only.utilization_percent
                if only.container is not None:
                    key = (only.uid, only.container)
                    out.container_utilization[key] = out.container_utilization.get(key, 0.0) + only.utilization_percent
        row = {k: v for k, v in device.items() if k not in ("processes", "per_process_utilization")}
        row["shared"] = shared
        row["pods"] = [h.contract() for h in ordered]
        out.gpus.append(row)
    return out


def _ident(uid: str | None, namespace: str | None, pod: str | None) -> str:
    return uid if uid is not None else f"{namespace}/{pod}"


def _merge_podlevel(holders: list[Holder]) -> list[Holder]:
    named: dict[str, Holder] = {}
    for h in holders:
        if h.container is not None:
            named.setdefault(_ident(h.uid, h.namespace, h.pod), h)
    out = []
    for h in holders:
        target = named.get(_ident(h.uid, h.namespace, h.pod))
        if h.container is None and target is not None:
            if h.memory_bytes is not None:
                target.memory_bytes = (target.memory_bytes or 0) + h.memory_bytes
            if h.utilization_percent is not None:
                target.utilization_percent = (target.utilization_percent or 0.0) + h.utilization_percent
            continue
        out.append(h)
    return out
