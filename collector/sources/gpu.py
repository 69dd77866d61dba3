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

Per device (the batch's `gpus` list, see collector/gpuattribution.py for who holds it): index,
UUID, model name, memory total, MIG mode and driver version; per interval its utilisation
(time-weighted over NVML's own samples newer than the last cycle's, where nvmlDeviceGetSamples
gives them, else the current nvmlDeviceGetUtilizationRates figure), memory used, power (mean over
the interval from the energy counter where the device has one, else the current draw) and
temperature. With MIG enabled each MIG instance is a device of its own (`parent_uuid` set): the
kubelet allocates instances, not the GPU, and NVML lists an instance's processes on its handle.

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
# nvml.h constants used below.
NVML_GPU_UTILIZATION_SAMPLES = 1
NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_ENABLE = 1
# A device's own utilisation samples older than this are not "this interval" (NVML keeps about
# 2 minutes of them); the first cycle after start takes the ones of the last interval only.
_FIRST_WINDOW_US = 10_000_000

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
    # "enabled" / "disabled"; None where the GPU cannot do MIG.
    mig_mode: str | None = None
    driver_version: str | None = None
    # For a MIG instance: the UUID of its GPU.
    parent_uuid: str | None = None
    power_watts: float | None = None
    temperature_celsius: float | None = None
    # False where NVML gives no per-process utilisation (MIG instances, vGPU guests): then the
    # device's own utilisation is attributed to the one pod it is allocated to.
    per_process_utilization: bool = True

    def contract(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "name": self.name,
            "memory_total_bytes": self.memory_total_bytes,
            "mig_mode": self.mig_mode,
            "driver_version": self.driver_version,
            "parent_uuid": self.parent_uuid,
            "utilization_percent": _round(self.utilization_percent),
            "memory_used_bytes": self.memory_used_bytes,
            "power_watts": _round(self.power_watts),
            "temperature_celsius": self.temperature_celsius,
        }


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
        """What delta.gpu_fields() takes: node fields, pod uid -> fields, container id -> fields,
        and per device its figures and processes (collector/gpuattribution.py turns them into
        the batch's `gpus`)."""
        processes: dict[str, list[dict[str, Any]]] = {}
        for p in self.processes:
            processes.setdefault(p.device_uuid, []).append({
                "pid": p.pid, "pod_uid": p.pod_uid, "container_id": p.container_id,
                "memory_bytes": p.memory_bytes, "utilization_percent": p.utilization_percent,
            })
        return {
            "node": self.node.contract(),
            "pods": {uid: usage.contract() for uid, usage in self.pods.items()},
            "containers": {cid: usage.contract() for (_, cid), usage in self.containers.items()},
            "devices": [
                d.contract() | {"per_process_utilization": d.per_process_utilization,
                                "processes": processes.get(d.uuid, [])}
                for d in self.devices
            ],
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
        # Per device: newest own-utilisation sample seen (µs), and the energy counter (mJ) with
        # the clock when it was read, for the mean power over the interval.
        self._device_seen_us: dict[str, int] = {}
        self._energy: dict[str, tuple[int, float]] = {}
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
        driver = _optional(nvml, nvml.nvmlSystemGetDriverVersion)
        driver = _text(driver) if driver is not None else None
        devices: list[GpuDevice] = []
        processes: list[GpuProcess] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                device, device_processes = self._read_device(nvml, handle, index, driver)
                found = [(device, device_processes)]
                if device.mig_mode == "enabled":
                    found += self._read_mig_instances(nvml, handle, device)
            except nvml.NVMLError as error:
                # A lost or resetting GPU must not hide the others.
                log.warning("gpu: device %d skipped: %s", index, error)
                continue
            for d, ps in found:
                devices.append(d)
                processes.extend(ps)
        if not devices:
            return None
        return aggregate(devices, processes)

    def _read_mig_instances(
        self, nvml: Any, handle: Any, parent: GpuDevice
    ) -> list[tuple[GpuDevice, list[GpuProcess]]]:
        """The MIG instances of a GPU in MIG mode, each with its own processes."""
        found = []
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError as error:
                if _code(error) == NVML_ERROR_NOT_FOUND:
                    continue  # no instance in this slot
                raise
            found.append(self._read_device(nvml, mig, slot, parent.driver_version, parent.uuid))
        return found

    def _read_device(
        self, nvml: Any, handle: Any, index: int, driver: str | None, parent_uuid: str | None = None
    ) -> tuple[GpuDevice, list[GpuProcess]]:
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        name = _text(nvml.nvmlDeviceGetName(handle))
        memory = _optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        mig_mode = None
        if parent_uuid is None:
            modes = _optional(nvml, nvml.nvmlDeviceGetMigMode, handle)
            if modes is not None:
                mig_mode = "enabled" if modes[0] == NVML_DEVICE_MIG_ENABLE else "disabled"
        temperature = None
        if parent_uuid is None:  # a MIG instance has no sensor of its own
            reading = _optional(nvml, nvml.nvmlDeviceGetTemperature, handle, NVML_TEMPERATURE_GPU)
            temperature = float(reading) if reading is not None else None
        utilization = self._process_utilization(nvml, handle, uuid)
        device = GpuDevice(
            index=index,
            uuid=uuid,
            name=name,
            utilization_percent=self._device_utilization(nvml, handle, uuid),
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            mig_mode=mig_mode,
            driver_version=driver,
            parent_uuid=parent_uuid,
            power_watts=self._power(nvml, handle, uuid) if parent_uuid is None else None,
            temperature_celsius=temperature,
            per_process_utilization=utilization is not None,
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

    def _device_utilization(self, nvml: Any, handle: Any, uuid: str) -> float | None:
        """The device's utilisation over the interval: NVML's own samples (about 6 a second)
        newer than the last cycle's, each weighted by the time since the one before, where the
        device keeps them; else the current figure (NVML's mean over its last sample period)."""
        since = self._device_seen_us.get(uuid)
        now_us = int(self._clock() * 1e6)
        ask = since if since is not None else max(now_us - _FIRST_WINDOW_US, 0)
        try:
            _kind, samples = nvml.nvmlDeviceGetSamples(handle, NVML_GPU_UTILIZATION_SAMPLES, ask)
        except nvml.NVMLError as error:
            if _code(error) not in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND,
                                    NVML_ERROR_NOT_FOUND):
                raise
            samples = []
        points = sorted((int(s.timeStamp), float(s.sampleValue.uiVal)) for s in samples
                        if int(s.timeStamp) > ask)
        if points:
            self._device_seen_us[uuid] = points[-1][0]
            return time_weighted(points, since)
        rates = _optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        return float(rates.gpu) if rates is not None else None

    def _power(self, nvml: Any, handle: Any, uuid: str) -> float | None:
        """Mean power over the interval from the energy counter (mJ since the driver loaded,
        Volta and newer), else the current draw (mW)."""
        energy = _optional(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        now = self._clock()
        if energy is not None:
            previous = self._energy.get(uuid)
            self._energy[uuid] = (int(energy), now)
            if previous is not None and now > previous[1] and int(energy) >= previous[0]:
                return (int(energy) - previous[0]) / 1000.0 / (now - previous[1])
        milliwatts = _optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        return milliwatts / 1000.0 if milliwatts is not None else None

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
    # MIG instances are parts of a GPU already counted whole.
    whole = [d for d in devices if d.parent_uuid is None]
    rates = [d.utilization_percent for d in whole if d.utilization_percent is not None]
    used = [d.memory_used_bytes for d in whole if d.memory_used_bytes is not None]
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


def time_weighted(points: list[tuple[int, float]], since: int | None) -> float:
    """Mean of (µs timestamp, value) samples, each standing for the time since the sample before
    it (the first: since `since`, or the typical gap when there is no earlier cycle)."""
    if len(points) == 1:
        return points[0][1]
    gaps = [b[0] - a[0] for a, b in zip(points, points[1:])]
    first = points[0][0] - since if since is not None and points[0][0] > since else sorted(gaps)[len(gaps) // 2]
    weights = [first, *gaps]
    total = sum(weights)
    if total <= 0:
        return sum(v for _, v in points) / len(points)
    return sum(w * v for w, (_, v) in zip(weights, points)) / total


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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
