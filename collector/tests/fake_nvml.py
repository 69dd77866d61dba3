"""A stand-in for the `pynvml` module (PyPI `nvidia-ml-py` 13.x) for machines without a GPU.

It returns what the real bindings return, shaped the same way:
* nvmlDeviceGetMemoryInfo -> a ctypes structure with the fields of `c_nvmlMemory_t`
  (total, free, used: c_ulonglong);
* nvmlDeviceGetUtilizationRates -> `c_nvmlUtilization_t` (gpu, memory: c_uint);
* nvmlDeviceGet{Compute,Graphics}RunningProcesses -> a list of "friendly objects" with the fields
  of `c_nvmlProcessInfo_v2_t` (pid, usedGpuMemory, gpuInstanceId, computeInstanceId), where the
  real module turns NVML_VALUE_NOT_AVAILABLE into None;
* nvmlDeviceGetProcessUtilization -> a slice of `c_nvmlProcessUtilizationSample_t` structures
  (pid, timeStamp in microseconds, smUtil, memUtil, encUtil, decUtil), raising NOT_FOUND when no
  sample is newer than the timestamp passed in, as NVML does;
* nvmlDeviceGetSamples(handle, NVML_GPU_UTILIZATION_SAMPLES, since) -> (value type, a slice of
  `c_nvmlSample_t` (timeStamp µs, sampleValue: the `c_nvmlValue_t` union, uiVal set)), NOT_FOUND
  when none is newer, NOT_SUPPORTED on MIG instances;
* nvmlDeviceGetMigMode -> [current, pending] (NOT_SUPPORTED on GPUs without MIG),
  nvmlDeviceGetMaxMigDeviceCount / nvmlDeviceGetMigDeviceHandleByIndex (NOT_FOUND for an empty
  slot); a MIG instance handle answers memory and processes, and NOT_SUPPORTED for utilisation,
  as the driver does; a GPU in MIG mode has no utilisation of its own either;
* nvmlDeviceGetTemperature (°C), nvmlDeviceGetPowerUsage (mW), nvmlDeviceGetTotalEnergyConsumption
  (mJ since the driver loaded), nvmlSystemGetDriverVersion (str);
* failures -> `NVMLError(code)`, which like the real class turns into the per-code subclass
  (`NVMLError_NotSupported`, ...) and carries `.value`; the codes are nvml.h's.
It also counts nvmlInit / nvmlShutdown calls so tests can check NVML is never left open.
"""

from __future__ import annotations

from ctypes import (
    Structure, Union, c_double, c_int, c_longlong, c_uint, c_ulong, c_ulonglong, c_ushort,
)
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_GPU_UTILIZATION_SAMPLES = 1
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1

_NAMES = {
    NVML_ERROR_UNINITIALIZED: ("Uninitialized", "Uninitialized"),
    NVML_ERROR_INVALID_ARGUMENT: ("InvalidArgument", "Invalid Argument"),
    NVML_ERROR_NOT_SUPPORTED: ("NotSupported", "Not Supported"),
    NVML_ERROR_NO_PERMISSION: ("NoPermission", "Insufficient Permissions"),
    NVML_ERROR_NOT_FOUND: ("NotFound", "Not Found"),
    NVML_ERROR_INSUFFICIENT_SIZE: ("InsufficientSize", "Insufficient Size"),
    NVML_ERROR_DRIVER_NOT_LOADED: ("DriverNotLoaded", "Driver Not Loaded"),
    NVML_ERROR_LIBRARY_NOT_FOUND: ("LibraryNotFound", "NVML Shared Library Not Found"),
    NVML_ERROR_FUNCTION_NOT_FOUND: ("FunctionNotFound", "Function Not Found"),
    NVML_ERROR_GPU_IS_LOST: ("GpuIsLost", "GPU is lost"),
    NVML_ERROR_UNKNOWN: ("Unknown", "Unknown Error"),
}


class NVMLError(Exception):
    """Mirrors pynvml.NVMLError: NVMLError(code) returns the subclass for that code."""

    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value: int):  # noqa: D102 - same contract as pynvml
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _NAMES.get(self.value, ("", f"NVML Error with code {self.value}"))[1]


def _make_error_classes(namespace: dict[str, Any]) -> None:
    for code, (suffix, _text) in _NAMES.items():
        def new(cls, *args, _code=code):
            return NVMLError.__new__(cls, _code)

        error_class = type(f"NVMLError_{suffix}", (NVMLError,), {"__new__": new})
        NVMLError._valClassMapping[code] = error_class
        namespace[error_class.__name__] = error_class


_make_error_classes(globals())


class c_nvmlMemory_t(Structure):
    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class c_nvmlUtilization_t(Structure):
    _fields_ = [("gpu", c_uint), ("memory", c_uint)]


class c_nvmlProcessInfo_v2_t(Structure):
    _fields_ = [
        ("pid", c_uint),
        ("usedGpuMemory", c_ulonglong),
        ("gpuInstanceId", c_uint),
        ("computeInstanceId", c_uint),
    ]


class c_nvmlProcessUtilizationSample_t(Structure):
    _fields_ = [
        ("pid", c_uint),
        ("timeStamp", c_ulonglong),
        ("smUtil", c_uint),
        ("memUtil", c_uint),
        ("encUtil", c_uint),
        ("decUtil", c_uint),
    ]


class c_nvmlValue_t(Union):
    _fields_ = [
        ("dVal", c_double),
        ("uiVal", c_uint),
        ("ulVal", c_ulong),
        ("ullVal", c_ulonglong),
        ("sllVal", c_longlong),
        ("siVal", c_int),
        ("usVal", c_ushort),
    ]


class c_nvmlSample_t(Structure):
    _fields_ = [("timeStamp", c_ulonglong), ("sampleValue", c_nvmlValue_t)]


NVML_VALUE_NOT_AVAILABLE_ulonglong = c_ulonglong(-1)
# Process infos outside MIG report these "invalid" instance ids (0xFFFFFFFF).
_NO_INSTANCE = 0xFFFFFFFF


class nvmlFriendlyObject:
    """What pynvml returns for process infos (nvmlStructToFriendlyObject)."""

    def __init__(self, dictionary: dict[str, Any]) -> None:
        for key, value in dictionary.items():
            setattr(self, key, value)


def _friendly(struct: Structure) -> nvmlFriendlyObject:
    obj = nvmlFriendlyObject({name: getattr(struct, name) for name, _ in struct._fields_})
    if obj.usedGpuMemory == NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
        obj.usedGpuMemory = None
    return obj


@dataclass
class FakeDevice:
    uuid: str
    name: str
    memory_total: int
    memory_used: int
    gpu_util: int
    memory_util: int
    # (pid, usedGpuMemory or None)
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    # (pid, timeStamp µs, smUtil, memUtil)
    samples: list[tuple[int, int, int, int]] = field(default_factory=list)
    # Function name -> NVML error code that call returns on this device.
    errors: dict[str, int] = field(default_factory=dict)
    # The device's own utilisation samples: (timeStamp µs, percent).
    util_samples: list[tuple[int, int]] = field(default_factory=list)
    temperature: int | None = None  # °C; None: NOT_SUPPORTED
    power_mw: int | None = None
    energy_mj: int | None = None  # None: NOT_SUPPORTED (pre-Volta)
    # None: the GPU cannot do MIG (NOT_SUPPORTED); else the current mode.
    mig_mode: int | None = None
    # MIG instances by slot (None: empty slot); only answered while mig_mode is enabled.
    mig: list[FakeDevice | None] = field(default_factory=list)
    # Set on MIG instances.
    is_mig_instance: bool = False


class FakeNvml:
    """Module-like: pass an instance where the collector expects the `pynvml` module."""

    NVMLError = NVMLError

    def __init__(
        self, devices: list[FakeDevice], init_error: int | None = None,
        driver_version: str = "550.54.15",
    ) -> None:
        self.devices = devices
        self.driver_version = driver_version
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.open = 0
        self.process_utilization_calls: list[tuple[str, int]] = []
        for name, value in globals().items():
            if name.startswith(("NVMLError_", "NVML_")):
                setattr(self, name, value)

    def _check_open(self) -> None:
        if self.open <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _device(self, handle: FakeDevice, function: str) -> FakeDevice:
        """Handles are the FakeDevice objects themselves (NVML's are opaque pointers)."""
        self._check_open()
        device = handle
        if function in device.errors:
            raise NVMLError(device.errors[function])
        return device

    def _whole_gpu(self, handle: FakeDevice, function: str) -> FakeDevice:
        """Utilisation queries: NOT_SUPPORTED on a MIG instance and on a GPU in MIG mode."""
        d = self._device(handle, function)
        if d.is_mig_instance or d.mig_mode == NVML_DEVICE_MIG_ENABLE:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return d

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_open()
        return self.driver_version

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.open += 1

    def nvmlShutdown(self) -> None:
        self._check_open()
        self.shutdown_calls += 1
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._check_open()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        self._check_open()
        if not 0 <= index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._device(self.devices[index], "nvmlDeviceGetHandleByIndex")

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> str:
        return self._device(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str:
        return self._device(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> c_nvmlMemory_t:
        d = self._device(handle, "nvmlDeviceGetMemoryInfo")
        return c_nvmlMemory_t(d.memory_total, d.memory_total - d.memory_used, d.memory_used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> c_nvmlUtilization_t:
        d = self._whole_gpu(handle, "nvmlDeviceGetUtilizationRates")
        return c_nvmlUtilization_t(d.gpu_util, d.memory_util)

    def nvmlDeviceGetSamples(
        self, handle: FakeDevice, sampling_type: int, timeStamp: int
    ) -> tuple[int, list[c_nvmlSample_t]]:
        d = self._whole_gpu(handle, "nvmlDeviceGetSamples")
        if sampling_type != NVML_GPU_UTILIZATION_SAMPLES:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        newer = [(ts, v) for ts, v in d.util_samples if ts > timeStamp]
        if not newer:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        array = (c_nvmlSample_t * len(newer))()
        for slot, (ts, value) in zip(array, newer):
            slot.timeStamp = ts
            slot.sampleValue.uiVal = value
        return NVML_VALUE_TYPE_UNSIGNED_INT, array[0 : len(newer)]

    def nvmlDeviceGetTemperature(self, handle: FakeDevice, sensor: int) -> int:
        d = self._device(handle, "nvmlDeviceGetTemperature")
        if d.temperature is None or d.is_mig_instance or sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return d.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeDevice) -> int:
        d = self._device(handle, "nvmlDeviceGetPowerUsage")
        if d.power_mw is None or d.is_mig_instance:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return d.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeDevice) -> int:
        d = self._device(handle, "nvmlDeviceGetTotalEnergyConsumption")
        if d.energy_mj is None or d.is_mig_instance:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return d.energy_mj

    def nvmlDeviceGetMigMode(self, handle: FakeDevice) -> list[int]:
        d = self._device(handle, "nvmlDeviceGetMigMode")
        if d.mig_mode is None or d.is_mig_instance:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [d.mig_mode, d.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeDevice) -> int:
        d = self._device(handle, "nvmlDeviceGetMaxMigDeviceCount")
        if d.mig_mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return 7  # A100 / H100: up to seven instances

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeDevice, index: int) -> FakeDevice:
        d = self._device(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
        if d.mig_mode != NVML_DEVICE_MIG_ENABLE:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index >= len(d.mig) or d.mig[index] is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        instance = d.mig[index]
        assert instance is not None
        return instance

    def _processes(self, entries: list[tuple[int, int | None]]) -> list[nvmlFriendlyObject]:
        out = []
        for pid, used in entries:
            raw = NVML_VALUE_NOT_AVAILABLE_ulonglong.value if used is None else used
            out.append(_friendly(c_nvmlProcessInfo_v2_t(pid, raw, _NO_INSTANCE, _NO_INSTANCE)))
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[nvmlFriendlyObject]:
        return self._processes(self._device(handle, "nvmlDeviceGetComputeRunningProcesses").compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeDevice) -> list[nvmlFriendlyObject]:
        return self._processes(
            self._device(handle, "nvmlDeviceGetGraphicsRunningProcesses").graphics
        )

    def nvmlDeviceGetProcessUtilization(
        self, handle: FakeDevice, timeStamp: int
    ) -> list[c_nvmlProcessUtilizationSample_t]:
        d = self._whole_gpu(handle, "nvmlDeviceGetProcessUtilization")
        self.process_utilization_calls.append((d.uuid, timeStamp))
        newer = [s for s in d.samples if s[1] > timeStamp]
        if not newer:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        array = (c_nvmlProcessUtilizationSample_t * len(newer))(
            *[c_nvmlProcessUtilizationSample_t(pid, ts, sm, mem, 0, 0) for pid, ts, sm, mem in newer]
        )
        return array[0 : len(newer)]
