"""POST /api/ingest/ with `gpus`: inventory written on change only, one sample per device, bounds."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from metrics.models import GpuDevice, GpuSample, NodeSample, PodSample
from metrics.tests.factories import NodeBatches, tick
from metrics.tests.ingest_helpers import post

pytestmark = pytest.mark.django_db

GIB = 2**30
H100 = "GPU-8a6a3c1e-4f2b-9d7e-1c5a-3b9e7f2d6a40"
H100_SHARED = "GPU-2f9c1b7d-6e3a-4c8b-a1d5-9e7f3b2c4d61"
A100 = "GPU-1d2c3b4a-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
MIG = "MIG-4f3a2b1c-9d8e-5f7a-b6c4-1e2d3f4a5b6c"


def gpus_for(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """What the collector sends for an H100 held by the batch's first pod, an H100 time-sliced by
    the second and third, and an A100 in MIG mode with one instance given to the first pod."""
    p0, p1, p2 = batch["pods"][:3]

    def holder(pod: dict[str, Any], memory: int | None, util: float | None) -> dict[str, Any]:
        return {"uid": pod["uid"], "namespace": pod["namespace"], "pod": pod["name"],
                "container": pod["containers"][0]["name"], "allocated": True,
                "memory_bytes": memory, "utilization_percent": util}

    common = {"driver_version": "550.54.15", "parent_uuid": None}
    return [
        {**common, "uuid": H100, "index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 81559 * 2**20,
         "mig_mode": "disabled", "utilization_percent": 91.5, "memory_used_bytes": 70 * GIB,
         "power_watts": 512.3, "temperature_celsius": 61.0, "shared": False,
         "pods": [holder(p0, 69 * GIB, 90.0)]},
        {**common, "uuid": H100_SHARED, "index": 1, "name": "NVIDIA H100 80GB HBM3",
         "memory_total_bytes": 81559 * 2**20, "mig_mode": "disabled", "utilization_percent": 40.0,
         "memory_used_bytes": 2 * GIB, "power_watts": 180.0, "temperature_celsius": 44.0, "shared": True,
         "pods": [holder(p1, GIB, 30.0), holder(p2, GIB, 9.0)]},
        {**common, "uuid": A100, "index": 2, "name": "NVIDIA A100-SXM4-40GB", "memory_total_bytes": 40 * GIB,
         "mig_mode": "enabled", "utilization_percent": None, "memory_used_bytes": 3 * GIB,
         "power_watts": 71.9, "temperature_celsius": 38.0, "shared": False, "pods": []},
        {"uuid": MIG, "index": 1, "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "memory_total_bytes": 4864 * 2**20,
         "mig_mode": None, "driver_version": "550.54.15", "parent_uuid": A100, "utilization_percent": None,
         "memory_used_bytes": 3 * GIB, "power_watts": None, "temperature_celsius": None, "shared": False,
         "pods": [holder(p0, 3 * GIB, None)]},
    ]


def gpu_batch(end=None, node="gpu-1") -> dict[str, Any]:
    batch = NodeBatches(node, pods=4, seed=3).batch(end or tick(60))
    batch["gpus"] = gpus_for(batch)
    return batch


def test_it_stores_each_device_and_a_sample_attributed_to_its_pod(client, ingest_token):
    end = tick(60)
    batch = gpu_batch(end)

    response = post(client, ingest_token, batch)

    assert response.status_code == 201, response.content
    start = end - timedelta(seconds=10)
    devices = {d.uuid: d for d in GpuDevice.objects.select_related("node")}
    assert set(devices) == {H100, H100_SHARED, A100, MIG}
    h100 = devices[H100]
    assert (h100.node.name, h100.index, h100.name, h100.memory_total_bytes, h100.mig_mode, h100.driver_version) == (
        "gpu-1", 0, "NVIDIA H100 80GB HBM3", 81559 * 2**20, "disabled", "550.54.15")
    assert h100.first_seen == start and h100.last_seen == end
    assert devices[MIG].parent_uuid == A100 and devices[A100].mig_mode == "enabled"

    samples = {s.device_id: s for s in GpuSample.objects.all()}
    s = samples[h100.pk]
    p0 = batch["pods"][0]
    pod_sample = PodSample.objects.get(pod__uid=p0["uid"])
    assert (s.time, s.interval_seconds, s.gpu_utilization_percent, s.gpu_memory_bytes, s.gpu_memory_total_bytes,
            s.gpu_power_watts, s.gpu_temperature_celsius) == (start, 10.0, 91.5, 70 * GIB, 81559 * 2**20, 512.3, 61.0)
    assert (s.pod_id, s.namespace, s.pod_name, s.container, s.shared) == (
        pod_sample.pod_id, p0["namespace"], p0["name"], p0["containers"][0]["name"], False)
    assert s.pods == batch["gpus"][0]["pods"]
    shared = samples[devices[H100_SHARED].pk]
    assert shared.shared is True and shared.pod_id is None and shared.pod_name == ""
    assert [p["pod"] for p in shared.pods] == [batch["pods"][1]["name"], batch["pods"][2]["name"]]
    assert samples[devices[A100].pk].gpu_utilization_percent is None
    assert samples[devices[MIG].pk].pod_name == p0["name"]


def test_a_retried_batch_stores_no_gpu_sample_twice(client, ingest_token):
    batch = gpu_batch()
    assert post(client, ingest_token, batch).status_code == 201
    response = post(client, ingest_token, batch)
    assert response.status_code == 200 and response.json()["duplicate"] is True
    assert GpuSample.objects.count() == 4


def _device_row_versions() -> dict[str, int]:
    # xmin changes whenever PostgreSQL rewrites a row: it says whether ingest wrote it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT uuid, xmin::text::bigint FROM metrics_gpudevice")
        return dict(cursor.fetchall())


def test_device_rows_are_written_only_when_they_change_or_a_minute_passed(client, ingest_token):
    end = tick(300)
    batches = NodeBatches("gpu-1", pods=4, seed=3)

    def send(at):
        batch = batches.batch(at)
        batch["gpus"] = gpus_for(batch)
        return batch

    assert post(client, ingest_token, send(end)).status_code == 201
    first = _device_row_versions()
    assert post(client, ingest_token, send(end + timedelta(seconds=10))).status_code == 201
    assert _device_row_versions() == first  # nothing changed, last_seen is fresh enough

    changed = send(end + timedelta(seconds=20))
    changed["gpus"][0]["driver_version"] = "550.90.07"
    assert post(client, ingest_token, changed).status_code == 201
    after = _device_row_versions()
    assert after[H100] != first[H100] and after[H100_SHARED] == first[H100_SHARED]
    assert GpuDevice.objects.get(uuid=H100).driver_version == "550.90.07"

    assert post(client, ingest_token, send(end + timedelta(seconds=80))).status_code == 201
    device = GpuDevice.objects.get(uuid=H100_SHARED)
    assert device.last_seen == end + timedelta(seconds=80)
    assert GpuSample.objects.count() == 16


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ((0, "utilization_percent"), 100.5, "gpus[0].utilization_percent", "less than or equal to 100"),
        ((0, "memory_used_bytes"), 81559 * 2**20 + 1, "gpus[0].memory_used_bytes", "memory_total_bytes"),
        ((0, "power_watts"), 9000.0, "gpus[0].power_watts", "less than or equal to 5000"),
        ((0, "power_watts"), -1.0, "gpus[0].power_watts", "greater than or equal to 0"),
        ((0, "temperature_celsius"), 400.0, "gpus[0].temperature_celsius", "less than or equal to 150"),
        ((0, "mig_mode"), "on", "gpus[0].mig_mode", "'enabled' or 'disabled'"),
        ((0, "utilization_percent"), "91", "gpus[0].utilization_percent", "Expected a number"),
        ((0, "pods", 0, "utilization_percent"), 101.0, "gpus[0].pods[0].utilization_percent",
         "less than or equal to 100"),
        ((0, "pods", 0, "memory_bytes"), 81559 * 2**20 + 1, "gpus[0].pods", "memory_total_bytes"),
        ((0, "colour"), "green", "gpus[0].colour", "Unknown field"),
        ((0, "pods", 0, "colour"), "green", "gpus[0].pods[0].colour", "Unknown field"),
        ((1, "uuid"), H100, "gpus[1].uuid", "Duplicate device uuid"),
    ],
)
def test_it_refuses_impossible_gpu_figures_naming_the_field(client, ingest_token, path, value, field, message):
    batch = gpu_batch()
    target: Any = batch["gpus"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    response = post(client, ingest_token, batch)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert any(message in m for m in errors[field]), errors
    assert GpuSample.objects.count() == 0 and NodeSample.objects.count() == 0


def test_an_overlapping_gpu_sample_stores_nothing_of_the_batch(client, ingest_token):
    end = tick(120)
    batch = gpu_batch(end)
    assert post(client, ingest_token, batch).status_code == 201
    # The same devices on a "new" node name (the device moved) with an interval starting at the
    # same time: the node sample is new, the device samples overlap.
    other = gpu_batch(end, node="gpu-2")
    other["gpus"] = copy.deepcopy(batch["gpus"])
    for g in other["gpus"]:
        g["pods"] = []

    response = post(client, ingest_token, other)

    assert response.status_code == 400, response.content
    assert "gpus" in response.json()["errors"]
    assert not NodeSample.objects.filter(node__name="gpu-2").exists()
    assert GpuSample.objects.count() == 4


def test_a_batch_without_gpus_is_still_accepted(client, ingest_token):
    batch = NodeBatches("cpu-1", pods=2, seed=1).batch(tick(60))
    assert post(client, ingest_token, batch).status_code == 201
    assert GpuDevice.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_gpu_samples_are_keyed_on_id_and_time_and_a_hypertable_exactly_in_the_timescale_tiers():
    from metrics import backend, storage_schema

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "ON true JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = 'metrics_gpusample'::regclass AND i.indisprimary ORDER BY k.n"
        )
        assert [r[0] for r in cursor.fetchall()] == ["id", "time"]
        hypertable = storage_schema.is_hypertable(cursor, "metrics_gpusample")
    assert hypertable == (backend.storage_tier() != "plain")


def test_retention_removes_gpu_samples_older_than_the_raw_retention(client, ingest_token, settings):
    from metrics import backend, retention

    if backend.storage_tier() == "tsl":
        pytest.skip("tier tsl: a TimescaleDB policy job drops the chunks")
    assert post(client, ingest_token, gpu_batch(tick(2 * 86400))).status_code == 201
    assert post(client, ingest_token, gpu_batch(tick(60))).status_code == 201
    with connection.cursor() as cursor:
        # Retention never drops raw samples the 1-minute rollups have not materialized.
        cursor.execute("UPDATE metrics_rollup_state SET materialized_1m = now() WHERE id = 1")
    settings.RETENTION_RAW_DAYS = 1

    retention.apply()

    assert GpuSample.objects.count() == 4
    assert GpuSample.objects.filter(time__lt=tick(86400)).count() == 0
