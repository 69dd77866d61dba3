"""Store a batch's `gpus`: the device inventory (changes only) and one GpuSample per device.

Runs inside the batch's transaction (metrics/ingest/writer.py), on its psycopg cursor, after the
pods are written so a sample can point at the pod it is attributed to: all or nothing with the
rest of the batch. Two round trips: one statement that upserts the devices and returns every id,
one binary COPY of the samples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from metrics.ingest.gpu_schema import IngestGpu, IngestGpuHolder


class GpuSampleConflict(Exception):
    """A device sample overlaps one already stored (its start time is taken)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


# Columns a device row is compared on; a row is rewritten only when one of them changed or its
# last_seen is a minute old (GpuDevice promises last_seen to within a minute, like Pod).
_DEVICE_VALUES = ("node_id", "index", "name", "memory_total_bytes", "mig_mode", "driver_version", "parent_uuid")
_DEVICE_TYPES = ("int8", "int4", "text", "int8", "text", "text", "text")


def _newer(column: str) -> str:
    # A late batch must not undo what a newer one wrote.
    return (f"{column} = CASE WHEN EXCLUDED.last_seen >= metrics_gpudevice.last_seen "
            f"THEN EXCLUDED.{column} ELSE metrics_gpudevice.{column} END")


_QUOTED = {c: f'"{c}"' if c == "index" else c for c in _DEVICE_VALUES}
DEVICE_SQL = f"""
WITH written AS (
    INSERT INTO metrics_gpudevice (uuid, {", ".join(_QUOTED.values())}, first_seen, last_seen)
    SELECT u.*, %b::timestamptz, %b::timestamptz
    FROM unnest(%b::text[], {", ".join(f"%b::{t}[]" for t in _DEVICE_TYPES)})
        AS u(uuid, {", ".join(_QUOTED.values())})
    ON CONFLICT (uuid) DO UPDATE SET
        {", ".join(_newer(_QUOTED[c]) for c in _DEVICE_VALUES)},
        first_seen = LEAST(metrics_gpudevice.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(metrics_gpudevice.last_seen, EXCLUDED.last_seen)
    WHERE ({", ".join(f"metrics_gpudevice.{_QUOTED[c]}" for c in _DEVICE_VALUES)})
            IS DISTINCT FROM ({", ".join(f"EXCLUDED.{_QUOTED[c]}" for c in _DEVICE_VALUES)})
        AND EXCLUDED.last_seen >= metrics_gpudevice.last_seen
        OR metrics_gpudevice.last_seen < EXCLUDED.last_seen - interval '1 minute'
        OR metrics_gpudevice.first_seen > EXCLUDED.first_seen
    RETURNING id, uuid
)
SELECT id, uuid FROM written
UNION ALL
SELECT id, uuid FROM metrics_gpudevice
WHERE uuid = ANY(%b::text[]) AND uuid NOT IN (SELECT uuid FROM written)
"""

SAMPLE_COLUMNS = (
    "device_id", "node_id", "time", "interval_seconds", "gpu_utilization_percent", "gpu_memory_bytes",
    "gpu_memory_total_bytes", "gpu_power_watts", "gpu_temperature_celsius", "pod_id", "namespace", "pod_name",
    "container", "shared", "pods",
)
SAMPLE_TYPES = (
    "int8", "int8", "timestamptz", "float8", "float8", "int8", "int8", "float8", "float8", "int8", "text",
    "text", "text", "bool", "jsonb",
)
SAMPLE_COPY = f"COPY metrics_gpusample ({', '.join(SAMPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def attributed_to(gpu: IngestGpu) -> tuple[IngestGpuHolder | None, bool]:
    """(the one holder the device is attributed to, or None; shared).

    Several containers of one pod are that pod; the allocated container (else the one holding the
    most memory) names it. Several pods: shared, and no single pod.
    """
    pods = {(h.uid or "", h.namespace or "", h.pod or "") for h in gpu.pods}
    shared = gpu.shared or len(pods) > 1
    if shared or not gpu.pods:
        return None, shared
    return max(gpu.pods, key=lambda h: (h.allocated, h.memory_bytes or 0)), False


def store_gpus(
    cursor: Any, gpus: list[IngestGpu], node_id: int, pod_ids: dict[str, int],
    start: datetime, end: datetime, interval: float,
) -> None:
    """Upsert the devices and COPY their samples. `pod_ids`: pod uid -> id of this batch's pods."""
    devices = sorted(gpus, key=lambda g: g.uuid)  # one lock order for concurrent batches
    uuids = [g.uuid for g in devices]
    columns: list[list[Any]] = [
        [node_id] * len(devices),
        [g.index for g in devices],
        [g.name for g in devices],
        [g.memory_total_bytes for g in devices],
        [g.mig_mode or "" for g in devices],
        [g.driver_version or "" for g in devices],
        [g.parent_uuid or "" for g in devices],
    ]
    ids = dict((uuid, id_) for id_, uuid in cursor.execute(DEVICE_SQL, [start, end, uuids, *columns, uuids]).fetchall())
    try:
        with cursor.copy(SAMPLE_COPY) as copy:
            copy.set_types(list(SAMPLE_TYPES))
            for gpu in gpus:
                holder, shared = attributed_to(gpu)
                pod_id = pod_ids.get(holder.uid) if holder is not None and holder.uid else None
                copy.write_row((
                    ids[gpu.uuid], node_id, start, interval, gpu.utilization_percent, gpu.memory_used_bytes,
                    gpu.memory_total_bytes, gpu.power_watts, gpu.temperature_celsius, pod_id,
                    (holder.namespace or "") if holder else "", (holder.pod or "") if holder else "",
                    (holder.container or "") if holder else "", shared,
                    Jsonb([h.model_dump() for h in gpu.pods]),
                ))
    except psycopg.errors.UniqueViolation:
        raise GpuSampleConflict({"gpus": [
            f"A sample of one of these devices starting at {start.isoformat()} is already stored "
            "(overlapping intervals)."
        ]}) from None
