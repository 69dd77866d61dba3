"""The ingest batch's optional `gpus` list (docs/api.md "GPUs"): one entry per GPU or MIG instance.

Strict like the rest of the batch (metrics/ingest/schema.py): unknown keys are refused and every
figure has bounds a real device cannot leave, so a collector bug is a 400 naming the field rather
than a chart scaled by a nonsense value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

BIGINT_MAX = 2**63 - 1
MAX_GPUS = 256  # 8 GPUs x 7 MIG instances is 64; leave room for large boxes
MAX_HOLDERS = 64
# No accelerator draws more (a GB200 superchip: about 2.7 kW) or runs hotter (they throttle near
# 90 °C and shut down by about 120 °C); negative readings are sensor faults.
MAX_POWER_WATTS = 5000.0
MIN_TEMPERATURE_CELSIUS = -40.0
MAX_TEMPERATURE_CELSIUS = 150.0

Bytes = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Uuid = Annotated[str, Field(min_length=1, max_length=96)]
OptName = Annotated[str, Field(min_length=1, max_length=253)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IngestGpuHolder(_Strict):
    """A pod holding the device: allocated to it by the kubelet and/or running processes on it."""

    uid: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    namespace: OptName | None = None
    pod: OptName | None = None
    container: OptName | None = None
    allocated: bool = False
    memory_bytes: Bytes | None = None
    utilization_percent: Percent | None = None


class IngestGpu(_Strict):
    uuid: Uuid
    index: Annotated[int, Field(ge=0, le=1023)]
    name: Annotated[str, Field(max_length=253)]
    memory_total_bytes: Bytes | None = None
    mig_mode: Literal["enabled", "disabled"] | None = None
    driver_version: Annotated[str, Field(max_length=64)] | None = None
    parent_uuid: Uuid | None = None
    # Means over the interval.
    utilization_percent: Percent | None = None
    memory_used_bytes: Bytes | None = None
    power_watts: Annotated[float, Field(ge=0, le=MAX_POWER_WATTS, allow_inf_nan=False)] | None = None
    temperature_celsius: Annotated[
        float, Field(ge=MIN_TEMPERATURE_CELSIUS, le=MAX_TEMPERATURE_CELSIUS, allow_inf_nan=False)
    ] | None = None
    shared: bool = False
    pods: Annotated[list[IngestGpuHolder], Field(max_length=MAX_HOLDERS)] = []

    @field_validator("memory_used_bytes")
    @classmethod
    def _within_total(cls, value: int | None, info: ValidationInfo) -> int | None:
        total = info.data.get("memory_total_bytes")
        if value is not None and total is not None and value > total:
            raise ValueError(f"More than the device's memory_total_bytes ({total})")
        return value

    @field_validator("pods")
    @classmethod
    def _holders_within_total(cls, value: list[IngestGpuHolder], info: ValidationInfo) -> list[IngestGpuHolder]:
        total = info.data.get("memory_total_bytes")
        for i, holder in enumerate(value):
            if total is not None and holder.memory_bytes is not None and holder.memory_bytes > total:
                raise ValueError(f"pods[{i}].memory_bytes is more than the device's memory_total_bytes ({total})")
        return value


def check_gpus(gpus: list[IngestGpu] | None) -> dict[str, list[str]]:
    """Rules across entries: one entry per device."""
    errors: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for i, gpu in enumerate(gpus or ()):
        first = seen.setdefault(gpu.uuid, i)
        if first != i:
            errors[f"gpus[{i}].uuid"] = [f"Duplicate device uuid; gpus[{first}] has the same uuid."]
    return errors
