"""The metric catalogue is consistent, the newest rollup snapshot equals it, and what it serves
(PSI, GPU, throttled periods) reads the truth in points, rollups and lists at any step."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from metrics import catalogue, rollup_schema, rollups, series
from metrics.models import NodeSample, PodSample
from metrics.series import Entity
from metrics.tests.factories import GiB, make_node, make_pod, reset_rollups


def test_the_catalogue_is_consistent():
    catalogue.check()


def test_the_newest_rollup_snapshot_equals_the_live_catalogue():
    # A catalogue change without a new snapshot and migration would make the refresh write
    # columns the relations do not have.
    snapshots = Path(rollup_schema.__file__).parent / "migrations" / "snapshots"
    newest = max(p.stem for p in snapshots.glob("rollups_*.py"))
    frozen = importlib.import_module(f"metrics.migrations.snapshots.{newest}")
    assert set(frozen.ENTITY) == set(rollup_schema.ENTITY)
    for name, live in rollup_schema.ENTITY.items():
        old = frozen.ENTITY[name]
        assert (old.source, old.keys, old.where) == (live.source, live.keys, live.where), name
        assert [(c.name, c.type, c.raw, c.finer) for c in old.columns] == [
            (c.name, c.type, c.raw, c.finer) for c in live.columns
        ], name


def test_every_point_field_is_a_catalogue_metric_then_coverage():
    resources = [m.name for m in catalogue.METRICS if m.entities <= catalogue.RESOURCES]
    assert [f.name for f in series.POINTS] == resources + ["coverage"]
    serving = [m.name for m in catalogue.METRICS if m.entities <= catalogue.SERVING]
    assert [f.name for f in series.SERVING_POINTS] == serving + ["coverage"]
    assert len(resources) + len(serving) == len(catalogue.METRICS)


def test_an_entity_has_the_sums_its_metrics_read_and_nothing_node_only_on_pods():
    pod = {c.name for c in catalogue.columns_of("pod")}
    node = {c.name for c in catalogue.columns_of("node")}
    assert {"psi_cpu_some_seconds", "gpu_seconds", "cpu_periods", "cpu_limit_core_seconds"} <= pod
    assert "cpu_capacity_core_seconds" not in pod
    assert {"cpu_capacity_core_seconds", "fs_used_byte_seconds", "gpu_memory_byte_seconds"} <= node
    assert "cpu_limit_core_seconds" not in node
    assert "net_rx_bytes" not in {c.name for c in catalogue.columns_of("container")}


# Constant per-second fractions and values, per pod and node. p3 runs on a kernel without PSI
# and reports no CFS periods: it must not dilute the others' percentages.
POD_VALUES = {
    "p1": dict(psi=(0.10, 0.05, 0.02, 0.20, 0.10), gpu=80.0, gpu_mem=2 * GiB, throttled=(3, 10)),
    "p2": dict(psi=(0.30, 0.15, 0.04, 0.10, 0.00), gpu=40.0, gpu_mem=1 * GiB, throttled=(1, 10)),
    "p3": dict(psi=None, gpu=20.0, gpu_mem=4 * GiB, throttled=None),
}
NODE_VALUES = {
    "node-10s": dict(psi=(0.05, 0.01, 0.0, 0.02, 0.01), gpu=60.0, gpu_mem=3 * GiB),
    "node-15s": dict(psi=None, gpu=20.0, gpu_mem=4 * GiB),
}
PSI = ("psi_cpu_some", "psi_memory_some", "psi_memory_full", "psi_io_some", "psi_io_full")


def _extra(values, interval):
    extra = {
        "gpu_utilization_percent": values["gpu"],
        "gpu_memory_bytes": values["gpu_mem"],
    }
    for name, fraction in zip(PSI, values["psi"] or (None,) * 5):
        extra[f"{name}_seconds"] = None if fraction is None else fraction * interval
    throttled = values.get("throttled")
    extra["cpu_throttled_periods"] = throttled and throttled[0] * interval
    extra["cpu_periods"] = throttled and throttled[1] * interval
    return extra


def _times(start, end, step):
    t = start
    while t < end:
        yield t
        t += timedelta(seconds=step)


@pytest.fixture
def gpu_cluster(db):
    now = timezone.now()
    first = series._floor(now - timedelta(minutes=40), 60) + timedelta(seconds=30)
    last = series._floor(now, 60)
    a = make_node("node-10s")
    b = make_node("node-15s")
    pods = {
        "p1": make_pod(a, "p1", namespace="ml", deployment="train"),
        "p2": make_pod(a, "p2", namespace="ml", deployment="train"),
        "p3": make_pod(b, "p3", namespace="ml"),
    }
    interval = {a.pk: 10, b.pk: 15}
    PodSample.objects.bulk_create(
        PodSample(
            time=t, interval_seconds=interval[pod.node_id], pod=pod, node_id=pod.node_id,
            namespace=pod.namespace, deployment=pod.deployment, cpu_seconds=0.1 * interval[pod.node_id],
            memory_working_set_bytes=GiB, **_extra(POD_VALUES[name], interval[pod.node_id]),
        )
        for name, pod in pods.items()
        for t in _times(first, last, interval[pod.node_id])
    )
    NodeSample.objects.bulk_create(
        NodeSample(
            time=t, interval_seconds=interval[node.pk], node=node, cpu_seconds=interval[node.pk],
            memory_working_set_bytes=4 * GiB, cpu_capacity_cores=8.0, memory_total_bytes=32 * GiB,
            **_extra(NODE_VALUES[node.name], interval[node.pk]),
        )
        for node in (a, b)
        for t in _times(first, last, interval[node.pk])
    )
    return {"first": first, "last": last, "a": a, "b": b, "pods": pods, "now": now}


def _mean(values):
    return sum(values) / len(values)


def _truths(c):
    """Per entity label: (entity, expected point values in whole buckets)."""
    pods = c["pods"]
    p1, p2, p3 = (POD_VALUES[n] for n in ("p1", "p2", "p3"))
    na, nb = NODE_VALUES["node-10s"], NODE_VALUES["node-15s"]

    def psi(*members):
        return {f"{n}_percent": 100 * _mean([m["psi"][i] for m in members]) for i, n in enumerate(PSI)}

    def throttled(*members):
        return 100 * sum(m["throttled"][0] for m in members) / sum(m["throttled"][1] for m in members)

    return {
        "pod p1": (Entity("pod", (pods["p1"].pk,)), psi(p1) | {
            "gpu_utilization_percent": 80.0, "gpu_memory_bytes": 2 * GiB,
            "cpu_throttled_percent_of_periods": 30.0}),
        "pod p3": (Entity("pod", (pods["p3"].pk,)), {
            "psi_cpu_some_percent": None, "cpu_throttled_percent_of_periods": None,
            "gpu_utilization_percent": 20.0, "gpu_memory_bytes": 4 * GiB}),
        "namespace ml": (Entity("namespace", ("ml",)), psi(p1, p2) | {
            "gpu_utilization_percent": _mean([80.0, 40.0, 20.0]), "gpu_memory_bytes": 7 * GiB,
            "cpu_throttled_percent_of_periods": throttled(p1, p2)}),
        "deployment train": (Entity("deployment", ("ml", "train")), psi(p1, p2) | {
            "gpu_utilization_percent": 60.0, "gpu_memory_bytes": 3 * GiB,
            "cpu_throttled_percent_of_periods": 20.0}),
        "node node-10s": (Entity("node", (c["a"].pk,)), psi(na) | {
            "gpu_utilization_percent": 60.0, "gpu_memory_bytes": 3 * GiB}),
        "cluster": (series.CLUSTER, psi(na) | {
            "gpu_utilization_percent": _mean([na["gpu"], nb["gpu"]]), "gpu_memory_bytes": 7 * GiB}),
    }


def _check(c, points, expected, step, label):
    whole = 0
    for point in points:
        start, end = point["time"], point["time"] + timedelta(seconds=step)
        if not (c["first"] <= start and end <= c["last"]):
            continue
        whole += 1
        for name, value in expected.items():
            if value is None:
                assert point[name] is None, (label, step, name, start)
            else:
                assert point[name] == pytest.approx(value, rel=0.01, abs=1e-9), (label, step, name, start)
    assert whole > 0, (label, step)


@pytest.mark.parametrize("step", [15, 45, 60, 120])
def test_psi_gpu_and_throttled_periods_read_the_truth_at_any_step(gpu_cluster, step):
    window = series.resolve_window(start=gpu_cluster["first"], end=gpu_cluster["last"], step=step, now=gpu_cluster["now"])
    for label, (entity, expected) in _truths(gpu_cluster).items():
        _check(gpu_cluster, series.series(entity, window, now=gpu_cluster["now"]), expected, step, label)


def test_many_series_in_one_request_carry_the_new_metrics_too(gpu_cluster):
    window = series.resolve_window(start=gpu_cluster["first"], end=gpu_cluster["last"], step=60, now=gpu_cluster["now"])
    truths = _truths(gpu_cluster)
    entity, expected = truths["deployment train"]
    (points,) = series.series_many([entity], window, now=gpu_cluster["now"])
    _check(gpu_cluster, points, expected, 60, "deployment train (many)")


def test_lists_show_the_new_metrics_of_the_newest_sample_or_complete_minute(gpu_cluster):
    now = gpu_cluster["now"]
    p1 = gpu_cluster["pods"]["p1"]
    usage = series.latest_pods([p1], now=now)[p1.pk]
    assert usage["psi_cpu_some_percent"] == pytest.approx(10.0)
    assert usage["gpu_utilization_percent"] == pytest.approx(80.0)
    assert usage["cpu_throttled_percent_of_periods"] == pytest.approx(30.0)
    group = series.latest_groups("namespace", [("ml",)], now=now)[("ml",)]
    assert group["coverage"] == pytest.approx(1.0)
    assert group["psi_io_some_percent"] == pytest.approx(15.0)
    assert group["gpu_memory_bytes"] == pytest.approx(7 * GiB)
    node = series.latest_nodes([gpu_cluster["a"].pk], now=now)[gpu_cluster["a"].pk]
    assert node["gpu_utilization_percent"] == pytest.approx(60.0)
    assert node["memory_available_bytes"] is None  # not collected in this test


def test_the_api_serves_the_new_fields_in_points_and_usage(gpu_cluster, admin_client):
    response = admin_client.get("/api/namespaces/ml/", {"window": 1800, "step": 60})
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["usage"]["gpu_memory_bytes"] == pytest.approx(7 * GiB)
    whole = [p for p in body["series"]["points"] if p["coverage"] == 1]
    assert whole and all(p["psi_cpu_some_percent"] == pytest.approx(20.0) for p in whole)


@pytest.mark.django_db(transaction=True)
def test_refreshed_rollups_hold_the_new_sums():
    reset_rollups()
    now = timezone.now()
    start = rollups.floor_to(now, timedelta(hours=1)) - timedelta(hours=2)
    node = make_node("gpu-node")
    pod = make_pod(node, "trainer", namespace="ml", deployment="train")
    PodSample.objects.bulk_create(
        PodSample(
            time=t, interval_seconds=10, pod=pod, node_id=node.pk, namespace="ml", deployment="train",
            cpu_seconds=1.0, **_extra(POD_VALUES["p1"], 10),
        )
        for t in _times(start, start + timedelta(hours=1), 10)
    )
    rollups.refresh(now=now)
    window = series.Window(start=start, end=start + timedelta(hours=1), step=3600, source="1h")
    (point,) = series.series(Entity("deployment", ("ml", "train")), window, now=now)
    assert point["psi_io_some_percent"] == pytest.approx(20.0)
    assert point["gpu_utilization_percent"] == pytest.approx(80.0)
    assert point["cpu_throttled_percent_of_periods"] == pytest.approx(30.0)
    reset_rollups()
