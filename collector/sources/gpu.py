"""GPU usage from NVML (`pynvml`, shipped by the PyPI package `nvidia-ml-py`), where present.

Every cycle opens NVML, reads each device and the processes running on it, and shuts NVML down
again in a `finally`: a handle held between cycles keeps the driver busy and blocks driver
upgrades, which is why the kubelet dropped its accelerator metrics (KEP-1867, kubernetes PR
#91930).

Processes are mapped to pods and containers through `<proc>/<pid>/cgroup` (the collector runs with
hostPID, so NVML's pids are the host's). A process in no pod cgroup is the host's: it counts
towards the node figures only.

Units, as in the ingest contract (all gauges, observed at the end of the interval):
* node `gpu_utilization_percent`: mean over the devices of NVML's device utilisation (0..100);
  `gpu_memory_bytes`: device memory in use, summed over the devices.
* pod / container `gpu_utilization_percent`: the SM utilisation of its processes summed over the
  devices they run on, in percent of one GPU (like CPU in cores: a pod busy on two whole GPUs
  reports 200); `gpu_memory_bytes`: the device memory its processes hold.
Per-process utilisation comes from nvmlDeviceGetProcessUtilization, which returns the samples
newer than a timestamp we keep per device between cycles. Where the device does not support it
(NOT_SUPPORTED, e.g. vGPU guests or MIG instances), per-pod utilisation is null, memory still counts.

No library, no driver or no device is "no GPU data" (one debug line), never an error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterable

from collector.paths import Roots
from collector.sources.cgroups import container_for_pid

log = logging.getLogger(__name__)

# NVML return codes (nvml.h; the same numbers pynvml exports as NVML_ERROR_*).
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15

# nvmlInit failures that mean "this node has no usable GPU": not worth more than a debug line.
_NO_GPU_CODES = frozenset(
    {NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_NOT_FOUND,
     NVML_ERROR_NO_PERMISSION}
)

@dataclass(frozen=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    utilization_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    device_uuid: str
    memory_bytes: int | None
    # SM utilisation over the interval, in percent of its device; None when the device cannot say.
    utilization_percent: float | None
    pod_uid: str | None
    container_id: str | None


@dataclass
class GpuUsage:
    utilization_percent: float | None = None
    memory_bytes: int | None = None

    def add(self, process: GpuProcess) -> None:
        if process.memory_bytes is not None:
            self.memory_bytes = (self.memory_bytes or 0) + process.memory_bytes
        if process.utilization_percent is not None:
            self.utilization_percent = (self.utilization_percent or 0.0) + process.utilization_percent

    def contract(self) -> dict[str, float | int]:
        """The ingest contract's keys; None values are left out (no data)."""
        out: dict[str, float | int] = {}
        if self.utilization_percent is not None:
            out["gpu_utilization_percent"] = round(self.utilization_percent, 3)
        if self.memory_bytes is not None:
            out["gpu_memory_bytes"] = self.memory_bytes
        return out


@dataclass
class GpuReading:
    devices: list[GpuDevice]
    processes: list[GpuProcess]
    node: GpuUsage
    # pod uid -> usage of all its processes; (pod uid, container id) -> usage of one container's.
    pods: dict[str, GpuUsage] = field(default_factory=dict)
    containers: dict[tuple[str, str], GpuUsage] = field(default_factory=dict)

    def contract(self) -> dict[str, Any]:
        """What delta.gpu_fields() takes: node fields, pod uid -> fields, container id -> fields."""
        return {
            "node": self.node.contract(),
            "pods": {uid: usage.contract() for uid, usage in self.pods.items()},
            "containers": {cid: usage.contract() for (_, cid), usage in self.containers.items()},
        }


# One source per set of roots, so the per-device sample timestamps survive between cycles.
_SOURCES: dict[Roots, GpuSource] = {}


def read_gpus(roots: Roots) -> dict[str, Any] | None:
    """This cycle's GPU figures in contract keys (see GpuReading.contract), or None: no GPU."""
    source = _SOURCES.get(roots)
    if source is None:
        source = _SOURCES[roots] = GpuSource(roots)
    reading = source.read()
    return None if reading is None else reading.contract()


def pod_container_for_pid(roots: Roots, pid: int) -> tuple[str | None, str | None]:
    """(pod uid, container id) of a process from <proc>/<pid>/cgroup; (None, None) for the host's
    processes and for one that exited meanwhile."""
    return container_for_pid(roots, pid) or (None, None)


def load_nvml() -> ModuleType | None:
    """Import pynvml, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    return pynvml


class GpuSource:
    """Reads NVML once per cycle. Holds no NVML state between cycles, only the per-device
    timestamp of the newest process-utilisation sample already seen."""

    def __init__(
        self,
        roots: Roots | None = None,
        nvml: ModuleType | Any | None = None,
        pid_mapper: Callable[[int], tuple[str | None, str | None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._nvml = nvml
        self._nvml_loaded = nvml is not None
        roots = roots or Roots()
        self._pid_mapper = pid_mapper or (lambda pid: pod_container_for_pid(roots, pid))
        self._clock = clock
        self._last_seen_us: dict[str, int] = {}
        # Said once per reason at debug level, so a GPU-less node logs nothing at info.
        self._said: set[str] = set()

    def _debug_once(self, reason: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.debug("gpu: no GPU data (%s)", reason)

    def read(self) -> GpuReading | None:
        if not self._nvml_loaded:
            self._nvml = load_nvml()
            self._nvml_loaded = True
        nvml = self._nvml
        if nvml is None:
            self._debug_once("pynvml not installed")
            return None
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            self._debug_once(f"nvmlInit: {error}")
            if _code(error) not in _NO_GPU_CODES:
                log.warning("gpu: nvmlInit failed: %s", error)
            return None
        try:
            return self._read_initialised(nvml)
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError as error:
                log.warning("gpu: nvmlShutdown failed: %s", error)

    def _read_initialised(self, nvml: Any) -> GpuReading | None:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            self._debug_once("no devices")
            return None
        devices: list[GpuDevice] = []
        processes: list[GpuProcess] = []
        for index in range(count):
            try:
                device, device_processes = self._read_device(nvml, index)
            except nvml.NVMLError as error:
                # A lost or resetting GPU must not hide the others.
                log.warning("gpu: device %d skipped: %s", index, error)
                continue
            devices.append(device)
            processes.extend(device_processes)
        if not devices:
            return None
        return aggregate(devices, processes)

    def _read_device(self, nvml: Any, index: int) -> tuple[GpuDevice, list[GpuProcess]]:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        name = _text(nvml.nvmlDeviceGetName(handle))
        rates = _optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = _optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        device = GpuDevice(
            index=index,
            uuid=uuid,
            name=name,
            utilization_percent=float(rates.gpu) if rates is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
        )
        # A process doing compute and graphics (nvidia-smi's "C+G") is listed twice with the same
        # memory: keep it once.
        memory_by_pid: dict[int, int | None] = {}
        for lister in (nvml.nvmlDeviceGetComputeRunningProcesses,
                       nvml.nvmlDeviceGetGraphicsRunningProcesses):
            for info in _optional(nvml, lister, handle) or ():
                # usedGpuMemory is None where the driver cannot tell (WDDM, some MIG setups).
                used = int(info.usedGpuMemory) if info.usedGpuMemory is not None else None
                pid = int(info.pid)
                if pid not in memory_by_pid:
                    memory_by_pid[pid] = used
                elif used is not None and (memory_by_pid[pid] or 0) < used:
                    memory_by_pid[pid] = used
        utilization = self._process_utilization(nvml, handle, uuid)
        processes = []
        for pid, used in sorted(memory_by_pid.items()):
            pod_uid, container_id = self._pid_mapper(pid)
            if utilization is None:
                percent = None
            else:
                # Running but absent from the samples: it did not use the SMs in the interval.
                percent = utilization.get(pid, 0.0)
            processes.append(GpuProcess(pid, uuid, used, percent, pod_uid, container_id))
        return device, processes

    def _process_utilization(self, nvml: Any, handle: Any, uuid: str) -> dict[int, float] | None:
        """pid -> mean SM utilisation of the samples newer than the last cycle's; None when the
        device does not support per-process utilisation."""
        since = self._last_seen_us.get(uuid, 0)
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(handle, since)
        except nvml.NVMLError as error:
            if _code(error) == NVML_ERROR_NOT_FOUND:
                # No sample newer than `since`: nothing ran on the SMs.
                self._last_seen_us[uuid] = max(since, int(self._clock() * 1e6))
                return {}
            if _code(error) not in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
                log.warning("gpu: process utilisation of %s unavailable: %s", uuid, error)
            return None
        sums: dict[int, list[float]] = {}
        newest = since
        for sample in samples:
            if sample.timeStamp <= since:
                continue
            newest = max(newest, int(sample.timeStamp))
            acc = sums.setdefault(int(sample.pid), [0.0, 0])
            acc[0] += float(sample.smUtil)
            acc[1] += 1
        self._last_seen_us[uuid] = newest
        return {pid: total / n for pid, (total, n) in sums.items()}


def aggregate(devices: Iterable[GpuDevice], processes: Iterable[GpuProcess]) -> GpuReading:
    """Node, pod and container figures from per-device and per-process readings."""
    devices = list(devices)
    processes = list(processes)
    rates = [d.utilization_percent for d in devices if d.utilization_percent is not None]
    used = [d.memory_used_bytes for d in devices if d.memory_used_bytes is not None]
    node = GpuUsage(
        utilization_percent=sum(rates) / len(rates) if rates else None,
        memory_bytes=sum(used) if used else None,
    )
    reading = GpuReading(devices=devices, processes=processes, node=node)
    for process in processes:
        if process.pod_uid is None:
            continue
        reading.pods.setdefault(process.pod_uid, GpuUsage()).add(process)
        if process.container_id is not None:
            key = (process.pod_uid, process.container_id)
            reading.containers.setdefault(key, GpuUsage()).add(process)
    return reading


def _optional(nvml: Any, function: Callable[..., Any], *args: Any) -> Any:
    """Call an NVML query; None where the device does not support it."""
    try:
        return function(*args)
    except nvml.NVMLError as error:
        if _code(error) in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
            return None
        raise


def _code(error: BaseException) -> int | None:
    return getattr(error, "value", None)


def _text(value: str | bytes) -> str:
    # pynvml decodes strings since 11.x; older releases return bytes.
    return value.decode() if isinstance(value, bytes) else value
