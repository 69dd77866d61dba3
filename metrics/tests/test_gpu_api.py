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
    assert (usage["utilization_percent"], usage["memory_used_bytes"], usage["power_watts"],
            usage["temperature_celsius"], usage["interval_seconds"]) == (91.5, 70 * GIB, 512.3, 61.0, 10.0)
    assert usage["memory_used_percent"] == pytest.approx(100 * 70 * GIB / (81559 * 2**20))
    shared = devices[H100_SHARED]
    assert shared["shared"] is True and shared["pod"] is None
    assert [p["pod"] for p in shared["pods"]] == [batch["pods"][1]["name"], batch["pods"][2]["name"]]
    assert devices[MIG]["mig_instance"] is True and devices[MIG]["parent_uuid"] == A100
    assert devices[A100]["usage"]["utilization_percent"] is None


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
     ({"window": str(30 * 86400)}, "start")],
)
def test_a_bad_series_parameter_is_400_naming_it(reader, params, field):
    Node.objects.create(name="gpu-1", first_seen=timezone.now(), last_seen=timezone.now())
    response = reader.get("/api/nodes/gpu-1/gpus/", params)
    assert response.status_code == 400, response.content
    assert field in response.json()


def _samples(device: GpuDevice, start: datetime, intervals: list[float]) -> list[GpuSample]:
    """Back-to-back samples with varying figures (some unknown), from `start`."""
    rows = []
    t = start
    for i, interval in enumerate(intervals):
        k = (i * 7) % 11
        rows.append(GpuSample(
            device=device, node_id=device.node_id, time=t, interval_seconds=interval,
            utilization_percent=None if k == 3 else 10.0 + 8 * k,
            memory_used_bytes=(20 + k) * GIB, power_watts=100.0 + 37 * k,
            temperature_celsius=None if k == 5 else 40.0 + k,
        ))
        t += timedelta(seconds=interval)
    return GpuSample.objects.bulk_create(rows)


def _expected(samples: list[GpuSample], bucket: datetime, step: int, memory_total: int) -> dict[str, Any]:
    """The point computed here from the samples' overlaps with the bucket."""
    end = bucket + timedelta(seconds=step)
    sums: dict[str, float] = {}
    cov: dict[str, float] = {}
    covered = 0.0
    n = 0
    peak = None
    for s in samples:
        s_end = s.time + timedelta(seconds=s.interval_seconds)
        overlap = (min(s_end, end) - max(s.time, bucket)).total_seconds()
        if overlap <= 0:
            continue
        n += 1
        covered += overlap
        peak = max(peak or 0, s.memory_used_bytes)
        for name in ("utilization_percent", "memory_used_bytes", "power_watts", "temperature_celsius"):
            value = getattr(s, name)
            if value is not None:
                sums[name] = sums.get(name, 0.0) + value * overlap
                cov[name] = cov.get(name, 0.0) + overlap
    point: dict[str, Any] = {"samples": n, "coverage": round(min(covered / step, 1.0), 6)}
    for name in ("utilization_percent", "memory_used_bytes", "power_watts", "temperature_celsius"):
        point[name] = sums[name] / cov[name] if cov.get(name) else None
    point["memory_used_max_bytes"] = peak
    point["memory_used_percent"] = (
        100 * point["memory_used_bytes"] / memory_total if point["memory_used_bytes"] is not None else None
    )
    if point["memory_used_bytes"] is not None:
        point["memory_used_bytes"] = round(point["memory_used_bytes"])
    return point


@pytest.mark.parametrize("step", [15, 60, 70])
def test_node_gpu_series_are_exact_time_weighted_means_with_coverage(reader, step):
    now = timezone.now()
    node = Node.objects.create(name="gpu-1", first_seen=now - timedelta(days=1), last_seen=now)
    device = GpuDevice.objects.create(
        node=node, uuid=H100, index=0, name="NVIDIA H100 80GB HBM3", memory_total_bytes=80 * GIB,
        first_seen=now - timedelta(days=1), last_seen=now,
    )
    idle = GpuDevice.objects.create(
        node=node, uuid=A100, index=1, name="NVIDIA A100-SXM4-40GB", memory_total_bytes=40 * GIB,
        first_seen=now - timedelta(days=1), last_seen=now,
    )
    # 20 minutes ago: 10 s samples, a 40 s gap, then 30 s samples (the collector's interval changed).
    start = (now - timedelta(minutes=20)).replace(second=3, microsecond=0)
    first = _samples(device, start, [10.0] * 30)
    later_start = start + timedelta(seconds=300 + 40)
    second = _samples(device, later_start, [30.0] * 12)
    samples = first + second
    window_start = start - timedelta(seconds=60)

    body = reader.get("/api/nodes/gpu-1/gpus/", {
        "start": window_start.isoformat().replace("+00:00", "Z"),
        "end": (later_start + timedelta(seconds=400)).isoformat().replace("+00:00", "Z"),
        "step": step,
    }).json()

    by_uuid = {d["uuid"]: d for d in body["results"]}
    series = by_uuid[H100]["series"]
    assert series["step"] == step and series["source"] == "raw"
    points = series["points"]
    expected_start = datetime.fromtimestamp(math.floor(window_start.timestamp() / step) * step, dt_timezone.utc)
    assert points[0]["time"] == expected_start.isoformat().replace("+00:00", "Z")
    checked = 0
    for point in points:
        bucket = datetime.fromisoformat(point["time"].replace("Z", "+00:00"))
        want = _expected(samples, bucket, step, 80 * GIB)
        for name, value in want.items():
            if value is None or isinstance(value, int):
                assert point[name] == value, (point["time"], name)
            else:
                assert point[name] == pytest.approx(value, rel=1e-9), (point["time"], name)
        checked += want["samples"] > 0
    assert checked > 5
    # The 40 s gap shows as partial coverage, not as zero utilisation.
    assert any(0 < p["coverage"] < 1 for p in points)
    # A device without samples gets the same buckets, all empty.
    idle_points = by_uuid[A100]["series"]["points"]
    assert len(idle_points) == len(points)
    assert all(p["samples"] == 0 and p["coverage"] == 0 and p["utilization_percent"] is None for p in idle_points)
    assert idle.pk != device.pk
