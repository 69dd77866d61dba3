"""/api/gpus/ and /api/nodes/{node}/gpus/: devices with their pod and newest usage, exact series."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from metrics.models import ApiToken, GpuDevice, GpuSample, Node
from metrics.tests.factories import tick
from metrics.tests.ingest_helpers import post
from metrics.tests.test_gpu_ingest import A100, H100, H100_SHARED, MIG, gpu_batch
from metrics.tokens import create_token

pytestmark = pytest.mark.django_db

GIB = 2**30


@pytest.fixture
def reader(db) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {create_token('reader', ApiToken.Scope.READ)[1]}")


def _all(reader: Client, path: str, **params: Any) -> list[dict[str, Any]]:
    body = reader.get(path, params).json()
    results = list(body["results"])
    while body["next"]:
        body = reader.get(body["next"]).json()
        results += body["results"]
    return results


def test_it_lists_every_gpu_with_its_node_model_memory_pod_and_newest_usage(client, ingest_token, reader):
    batch = gpu_batch(tick(20))
    assert post(client, ingest_token, batch).status_code == 201

    devices = {d["uuid"]: d for d in _all(reader, "/api/gpus/", limit=2)}

    assert set(devices) == {H100, H100_SHARED, A100, MIG}
    h100 = devices[H100]
    p0 = batch["pods"][0]
    assert (h100["node"], h100["index"], h100["model"], h100["memory_total_bytes"], h100["mig_mode"],
            h100["mig_instance"], h100["driver_version"]) == (
        "gpu-1", 0, "NVIDIA H100 80GB HBM3", 81559 * 2**20, "disabled", False, "550.54.15")
    assert h100["pod"]["namespace"] == p0["namespace"] and h100["pod"]["name"] == p0["name"]
    assert h100["pod"]["url"].endswith(f"/api/namespaces/{p0['namespace']}/pods/{p0['name']}/")
    assert h100["shared"] is False and h100["series"] is None
    usage = h100["usage"]
    assert (usage["gpu_utilization_percent"], usage["gpu_memory_bytes"], usage["gpu_power_watts"],
            usage["gpu_temperature_celsius"], usage["interval_seconds"], usage["coverage"]) == (
        91.5, 70 * GIB, 512.3, 61.0, 10.0, 1.0)
    assert usage["gpu_memory_percent_of_device"] == pytest.approx(100 * 70 * GIB / (81559 * 2**20))
    assert "cpu_millicores" not in usage  # a device point has the GPU device metrics only
    shared = devices[H100_SHARED]
    assert shared["shared"] is True and shared["pod"] is None
    assert [p["pod"] for p in shared["pods"]] == [batch["pods"][1]["name"], batch["pods"][2]["name"]]
    assert devices[MIG]["mig_instance"] is True and devices[MIG]["parent_uuid"] == A100
    assert devices[A100]["usage"]["gpu_utilization_percent"] is None


def test_filters_narrow_the_list(client, ingest_token, reader):
    assert post(client, ingest_token, gpu_batch(tick(20))).status_code == 201
    assert post(client, ingest_token, gpu_batch(tick(20), node="other") | {"gpus": []}).status_code == 201

    def uuids(**params: Any) -> set[str]:
        return {d["uuid"] for d in _all(reader, "/api/gpus/", **params)}

    assert uuids(mig_instance="true") == {MIG}
    assert uuids(mig_instance="false") == {H100, H100_SHARED, A100}
    assert uuids(model="NVIDIA H100 80GB HBM3") == {H100, H100_SHARED}
    assert uuids(mig_mode="enabled") == {A100}
    assert uuids(node="other") == set()
    assert reader.get("/api/gpus/", {"mig_mode": "on"}).status_code == 400


def test_a_device_silent_for_longer_than_the_lookback_shows_no_usage(client, ingest_token, reader):
    assert post(client, ingest_token, gpu_batch(tick(20 * 60))).status_code == 201
    device = reader.get(f"/api/gpus/{H100}/").json()
    assert device["usage"] is None and device["pod"] is None and device["pods"] == []


def test_reading_needs_a_read_token(client, ingest_token):
    assert Client().get("/api/gpus/").status_code == 401
    ingest_reader = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert ingest_reader.get("/api/gpus/").status_code == 403


def test_unknown_node_or_device_is_404(reader):
    assert reader.get("/api/nodes/nope/gpus/").status_code == 404
    assert reader.get("/api/gpus/GPU-nope/").status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [({"window": "0"}, "window"), ({"window": "abc"}, "window"), ({"step": "60"}, "step"),
     ({"window": str(400 * 86400)}, "window"), ({"window": "86400", "step": "1"}, "step")],
)
def test_a_bad_series_parameter_is_400_naming_it(reader, params, field):
    Node.objects.create(name="gpu-1", first_seen=timezone.now(), last_seen=timezone.now())
    response = reader.get("/api/nodes/gpu-1/gpus/", params)
    assert response.status_code == 400, response.content
    assert field in response.json()


def _samples(device: GpuDevice, start: datetime, intervals: list[float], memory_total: int) -> list[GpuSample]:
    """Back-to-back samples with varying figures (some unknown), from `start`."""
    rows = []
    t = start
    for i, interval in enumerate(intervals):
        k = (i * 7) % 11
        rows.append(GpuSample(
            device=device, node_id=device.node_id, time=t, interval_seconds=interval,
            gpu_utilization_percent=None if k == 3 else 10.0 + 8 * k,
            gpu_memory_bytes=(20 + k) * GIB, gpu_memory_total_bytes=memory_total,
            gpu_power_watts=None if k == 7 else 100.0 + 37 * k,
            gpu_temperature_celsius=None if k == 5 else 40.0 + k,
        ))
        t += timedelta(seconds=interval)
    return GpuSample.objects.bulk_create(rows)


# Each figure's time-weighted mean over the seconds of samples that carry it.
_MEANS = {"gpu_utilization_percent": "gpu_utilization_percent", "gpu_power_watts": "gpu_power_watts",
          "gpu_temperature_celsius": "gpu_temperature_celsius"}


def _expected(samples: list[GpuSample], bucket: datetime, step: int, whole: bool) -> dict[str, Any]:
    """The point computed here from the samples: each counted for its overlap with the bucket, or
    (`whole`, the rollups) wholly in the bucket its interval starts in."""
    end = bucket + timedelta(seconds=step)
    sums: dict[str, float] = {}
    cov: dict[str, float] = {}
    covered = memory = total = 0.0
    n = 0
    peak = None
    for s in samples:
        s_end = s.time + timedelta(seconds=s.interval_seconds)
        if whole:
            overlap = s.interval_seconds if bucket <= s.time < end else 0.0
        else:
            overlap = (min(s_end, end) - max(s.time, bucket)).total_seconds()
        if overlap <= 0:
            continue
        n += 1
        covered += overlap
        memory += s.gpu_memory_bytes * overlap
        total += s.gpu_memory_total_bytes * overlap
        peak = max(peak or 0, s.gpu_memory_bytes)
        for name, field in _MEANS.items():
            value = getattr(s, field)
            if value is not None:
                sums[name] = sums.get(name, 0.0) + value * overlap
                cov[name] = cov.get(name, 0.0) + overlap
    point: dict[str, Any] = {"coverage": min(covered / step, 1.0) if n else None}
    if not n:
        return point | dict.fromkeys([*_MEANS, "gpu_memory_bytes", "gpu_memory_max_bytes", "gpu_memory_percent_of_device"])
    for name in _MEANS:
        point[name] = sums[name] / cov[name] if cov.get(name) else None
    point["gpu_memory_bytes"] = memory / covered
    point["gpu_memory_max_bytes"] = float(peak) if peak is not None else None
    point["gpu_memory_percent_of_device"] = 100 * memory / total
    return point


def _check(points: list[dict[str, Any]], samples: list[GpuSample], step: int, whole: bool) -> int:
    checked = 0
    for point in points:
        bucket = datetime.fromisoformat(point["time"].replace("Z", "+00:00"))
        want = _expected(samples, bucket, step, whole)
        for name, value in want.items():
            if value is None:
                assert point[name] is None, (point["time"], name)
            else:
                assert point[name] == pytest.approx(value, rel=1e-9), (point["time"], name)
        checked += want["coverage"] is not None
    return checked


@pytest.fixture
def device_with_samples(db):
    now = timezone.now()
    node = Node.objects.create(name="gpu-1", first_seen=now - timedelta(days=1), last_seen=now)
    device = GpuDevice.objects.create(
        node=node, uuid=H100, index=0, name="NVIDIA H100 80GB HBM3", memory_total_bytes=80 * GIB,
        first_seen=now - timedelta(days=1), last_seen=now,
    )
    GpuDevice.objects.create(
        node=node, uuid=A100, index=1, name="NVIDIA A100-SXM4-40GB", memory_total_bytes=40 * GIB,
        first_seen=now - timedelta(days=1), last_seen=now,
    )
    # 40 minutes ago, on whole minutes: 10 s samples, a 40 s gap, then 30 s samples (the
    # collector's interval changed), as collectors align their ticks.
    start = (now - timedelta(minutes=40)).replace(second=0, microsecond=0)
    samples = _samples(device, start, [10.0] * 30, 80 * GIB)
    samples += _samples(device, start + timedelta(seconds=340), [30.0] * 40, 80 * GIB)
    return start - timedelta(seconds=120), start + timedelta(minutes=30), samples


def _series(reader: Client, start: datetime, end: datetime, step: int) -> dict[str, Any]:
    body = reader.get("/api/nodes/gpu-1/gpus/", {
        "start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat().replace("+00:00", "Z"),
        "step": step,
    }).json()
    return {d["uuid"]: d["series"] for d in body["results"]}


@pytest.mark.parametrize("step", [15, 70])
def test_node_gpu_series_from_raw_samples_are_exact_time_weighted_means_with_coverage(
    reader, device_with_samples, step
):
    start, end, samples = device_with_samples
    by_uuid = _series(reader, start, end, step)

    series = by_uuid[H100]
    assert series["step"] == step and series["source"] == "raw"
    points = series["points"]
    expected_start = datetime.fromtimestamp(math.floor(start.timestamp() / step) * step, dt_timezone.utc)
    assert points[0]["time"] == expected_start.isoformat().replace("+00:00", "Z")
    assert _check(points, samples, step, whole=False) > 5
    # The 40 s gap shows as partial coverage, not as zero utilisation.
    assert any(p["coverage"] is not None and 0 < p["coverage"] < 1 for p in points)
    assert set(points[0]) == {"time", "coverage", "gpu_utilization_percent", "gpu_memory_bytes",
                              "gpu_memory_max_bytes", "gpu_memory_percent_of_device", "gpu_power_watts",
                              "gpu_temperature_celsius"}
    # A device without samples gets the same buckets, all empty.
    idle_points = by_uuid[A100]["points"]
    assert len(idle_points) == len(points)
    assert all(p["gpu_utilization_percent"] is None for p in idle_points)


@pytest.fixture
def fresh_rollups(transactional_db):
    from metrics.tests.factories import reset_rollups

    reset_rollups()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", [60, 300, 3600])
def test_node_gpu_series_from_the_device_rollups_are_the_raw_sums(fresh_rollups, reader, device_with_samples, step):
    from metrics import rollups

    from metrics import backend

    start, end, samples = device_with_samples
    before = _series(reader, start, end, step)[H100]  # real-time: nothing materialized yet
    rollups.refresh()
    after = _series(reader, start, end, step)[H100]

    assert before["source"] == after["source"] == ("1h" if step == 3600 else "1m")
    assert _check(after["points"], samples, step, whole=True) > 0
    # Tiers apache / plain: the views add what the refresh has not materialized yet, so the
    # answer does not change. (In tier tsl, samples written below an aggregate's watermark, as
    # these old ones are, show once refreshed: TimescaleDB's real-time aggregation.)
    if backend.storage_tier() != "tsl":
        assert before["points"] == after["points"]
