"""Series read the truth at any step: constant-rate pods on a 10 s node and a 15 s node, with data
starting and ending mid-minute, are read within 1 % in every whole bucket, and every partial bucket
either reads the true rate or says so with coverage < 1."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from metrics import series
from metrics.models import NodeSample, PodSample
from metrics.series import Entity, resolve_window
from metrics.tests.read_helpers import GiB, make_node, make_pod

STEPS = [10, 15, 20, 30, 45, 60, 120, 300]

# CPU in cores and memory in bytes, constant for each pod and node.
RATES = {
    "web-1": (0.25, 300 * 1024**2),
    "web-2": (0.40, 500 * 1024**2),
    "db-0": (0.70, 2 * GiB),
    "mon-1": (0.10, 100 * 1024**2),
}
NODE_RATES = {"node-10s": (2.5, 8 * GiB), "node-15s": (1.5, 6 * GiB)}


def _samples(start: datetime, end: datetime, interval: int):
    t = start
    while t < end:
        yield t
        t += timedelta(seconds=interval)


@pytest.fixture
def cluster(db):
    now = timezone.now()
    # Both collectors start at :30 past a minute and stop at :30 past another: the first and last
    # minute buckets are half covered.
    first = series._floor(now - timedelta(minutes=80), 60) + timedelta(seconds=30)
    last = first + timedelta(minutes=55)
    a = make_node("node-10s", cpu_cores=8)
    b = make_node("node-15s", cpu_cores=4)
    pods = {
        "web-1": make_pod("web-1", "shop", a, deployment="web", cpu_limit=1.0),
        "web-2": make_pod("web-2", "shop", b, deployment="web"),
        "db-0": make_pod("db-0", "shop", a),
        "mon-1": make_pod("mon-1", "ops", b, deployment="mon"),
    }
    interval = {a.pk: 10, b.pk: 15}
    rows = []
    for name, pod in pods.items():
        cpu, mem = RATES[name]
        step = interval[pod.node_id]
        rows += [
            PodSample(
                time=t, interval_seconds=step, pod=pod, node_id=pod.node_id, namespace=pod.namespace,
                deployment=pod.deployment, cpu_seconds=cpu * step, memory_working_set_bytes=mem,
                disk_read_bytes=1000 * step, disk_write_bytes=0, net_rx_bytes=0, net_tx_bytes=0,
                cpu_limit_cores=pod.cpu_limit_cores,
            )
            for t in _samples(first, last, step)
        ]
    PodSample.objects.bulk_create(rows)
    node_rows = []
    for node in (a, b):
        cpu, mem = NODE_RATES[node.name]
        step = interval[node.pk]
        node_rows += [
            NodeSample(
                time=t, interval_seconds=step, node=node, cpu_seconds=cpu * step,
                memory_working_set_bytes=mem, cpu_capacity_cores=node.cpu_capacity_cores,
                memory_total_bytes=node.memory_total_bytes,
            )
            for t in _samples(first, last, step)
        ]
    NodeSample.objects.bulk_create(node_rows)
    return {"first": first, "last": last, "a": a, "b": b, "pods": pods, "now": now}


def _entities(cluster):
    pods = cluster["pods"]
    return {
        "namespace shop": (Entity("namespace", ("shop",)), ["web-1", "web-2", "db-0"], None),
        "deployment web": (Entity("deployment", ("shop", "web")), ["web-1", "web-2"], None),
        "pod db-0": (Entity("pod", (pods["db-0"].pk,)), ["db-0"], None),
        "node node-15s": (Entity("node", (cluster["b"].pk,)), [], "node-15s"),
        "node node-10s": (Entity("node", (cluster["a"].pk,)), [], "node-10s"),
    }


def _truth(pods, node):
    if node:
        return NODE_RATES[node][0] * 1000, NODE_RATES[node][1]
    return sum(RATES[p][0] for p in pods) * 1000, sum(RATES[p][1] for p in pods)


def _check_series(cluster, window):
    checked_whole = 0
    for label, (entity, pods, node) in _entities(cluster).items():
        cpu, mem = _truth(pods, node)
        for point in series.series(entity, window, now=cluster["now"]):
            start, end = point["time"], point["time"] + timedelta(seconds=window.step)
            whole = cluster["first"] <= start and end <= cluster["last"]
            if whole:
                checked_whole += 1
                assert point["cpu_millicores"] == pytest.approx(cpu, rel=0.01), (label, start)
                assert point["memory_working_set_bytes"] == pytest.approx(mem, rel=0.01), (label, start)
                assert point["coverage"] == pytest.approx(1.0), (label, start)
            elif point["cpu_millicores"] is not None:
                right = point["cpu_millicores"] == pytest.approx(cpu, rel=0.01)
                assert right or point["coverage"] < 0.999, (label, start, point)
            elif end > cluster["first"] and start < cluster["last"]:
                raise AssertionError(f"{label}: no data in a bucket the data overlaps ({start})")
    assert checked_whole > 0


@pytest.mark.parametrize("step", STEPS)
def test_every_whole_bucket_reads_the_true_rate_at_any_step(cluster, step):
    window = resolve_window(
        start=cluster["first"] - timedelta(minutes=5), end=cluster["last"] + timedelta(minutes=5),
        step=step, now=cluster["now"],
    )
    _check_series(cluster, window)


def test_the_auto_step_of_a_one_hour_window_reads_the_true_rate(cluster):
    window = resolve_window(start=cluster["last"] - timedelta(hours=1), end=cluster["last"], now=cluster["now"])
    assert window.step == 15 and window.source == "raw"
    _check_series(cluster, window)


def test_a_bucket_its_data_starts_in_says_it_is_partly_covered(cluster):
    window = resolve_window(
        start=cluster["first"] - timedelta(seconds=30), end=cluster["first"] + timedelta(seconds=90),
        step=60, now=cluster["now"],
    )
    first = series.series(Entity("namespace", ("shop",)), window, now=cluster["now"])[0]
    assert first["coverage"] == pytest.approx(0.5)
    # The half it covers reads the pods' true rate.
    assert first["cpu_millicores"] == pytest.approx(_truth(["web-1", "web-2", "db-0"], None)[0], rel=0.01)


def test_a_collector_gap_lowers_coverage_and_not_the_rate(cluster):
    gap_start = series._floor(cluster["first"] + timedelta(minutes=20), 60)
    gap = (gap_start, gap_start + timedelta(seconds=60))
    # The 15 s node is silent for a whole minute: its pods' samples and its own are missing.
    NodeSample.objects.filter(node=cluster["b"], time__gte=gap[0], time__lt=gap[1]).delete()
    PodSample.objects.filter(node_id=cluster["b"].pk, time__gte=gap[0], time__lt=gap[1]).delete()
    window = resolve_window(start=gap[0], end=gap[1], step=60, now=cluster["now"])
    point = series.series(Entity("namespace", ("shop",)), window, now=cluster["now"])[0]
    assert point["coverage"] == pytest.approx(0.5)
    assert point["cpu_millicores"] == pytest.approx(_truth(["web-1", "db-0"], None)[0], rel=0.01)


def test_a_namespace_list_never_shows_a_partly_covered_minute(cluster):
    # Just after the data stops at :30, the newest minute is half covered; the list reads the one
    # before it, at the true rate.
    now = cluster["last"] + timedelta(seconds=5)
    latest = series.latest_groups("namespace", [("shop",)], now=now)[("shop",)]
    assert latest["time"] == cluster["last"] - timedelta(seconds=90)
    assert latest["coverage"] == pytest.approx(1.0)
    assert latest["cpu_millicores"] == pytest.approx(_truth(["web-1", "web-2", "db-0"], None)[0], rel=0.01)


def test_the_cluster_series_is_the_sum_of_its_nodes_at_any_step(cluster):
    truth = (NODE_RATES["node-10s"][0] + NODE_RATES["node-15s"][0]) * 1000
    for step in (15, 45, 60, 300):
        window = resolve_window(
            start=cluster["first"], end=cluster["last"], step=step, now=cluster["now"]
        )
        for point in series.series(series.CLUSTER, window, now=cluster["now"]):
            end = point["time"] + timedelta(seconds=step)
            if cluster["first"] <= point["time"] and end <= cluster["last"]:
                assert point["cpu_millicores"] == pytest.approx(truth, rel=0.01), (step, point["time"])
                assert point["cpu_capacity_millicores"] == pytest.approx(12_000)
                assert point["coverage"] == pytest.approx(1.0)


def test_the_cluster_endpoint_gives_capacity_latest_minute_and_a_series(cluster, client, settings):
    settings.ALLOW_ANONYMOUS_READS = True
    # Make both nodes current: the fixture's data ended up to 25 minutes ago.
    shift = timezone.now() - cluster["last"]
    for model in (NodeSample, PodSample):
        for row in model.objects.all():
            row.time += shift
            row.save(update_fields=["time"])
    response = client.get("/api/cluster/", {"window": 1800, "step": 60})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "default"
    assert body["nodes"] == body["nodes_reporting"] == 2
    assert body["pods"] == 4
    assert body["cpu_capacity_millicores"] == pytest.approx(12_000)
    truth = (NODE_RATES["node-10s"][0] + NODE_RATES["node-15s"][0]) * 1000
    assert body["usage"]["cpu_millicores"] == pytest.approx(truth, rel=0.01)
    assert body["usage"]["coverage"] == pytest.approx(1.0)
    points = body["series"]["points"]
    assert body["series"]["source"] == "1m"
    assert any(p["coverage"] == pytest.approx(1.0) for p in points)
    assert all(p["coverage"] is not None and 0 <= p["coverage"] <= 1 for p in points)


@pytest.mark.parametrize("step", [15, 45, 60, 300])
def test_many_entities_in_one_call_equal_their_series_one_by_one(cluster, step):
    window = resolve_window(
        start=cluster["first"] - timedelta(minutes=2), end=cluster["last"] + timedelta(minutes=2),
        step=step, now=cluster["now"],
    )
    pods = cluster["pods"]
    groups = [
        [Entity("namespace", ("shop",)), Entity("namespace", ("ops",)), Entity("namespace", ("none",))],
        [Entity("deployment", ("shop", "web")), Entity("deployment", ("ops", "mon"))],
        [Entity("pod", (pods["db-0"].pk,)), Entity("pod", (pods["web-2"].pk,))],
        [Entity("node", (cluster["a"].pk,)), Entity("node", (cluster["b"].pk,))],
    ]
    for entities in groups:
        together = series.series_many(entities, window, now=cluster["now"])
        for entity, points in zip(entities, together):
            alone = series.series(entity, window, now=cluster["now"])
            assert len(points) == len(alone)
            for p, q in zip(points, alone):
                for name in ("cpu_millicores", "memory_working_set_bytes", "coverage", "oom_kills"):
                    assert p[name] == pytest.approx(q[name]), (entity, p["time"], name)


def test_one_request_returns_the_series_of_every_deployment_of_a_namespace(cluster, client, settings):
    settings.ALLOW_ANONYMOUS_READS = True
    start = (cluster["first"] + timedelta(minutes=5)).isoformat()
    end = (cluster["first"] + timedelta(minutes=35)).isoformat()
    response = client.get("/api/series/", {"kind": "deployment", "namespace": "shop", "start": start, "end": end, "step": 45})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [s["name"] for s in body["series"]] == ["web"]
    truth = _truth(["web-1", "web-2"], None)[0]
    whole = [p for p in body["series"][0]["points"] if p["coverage"] == pytest.approx(1.0)]
    assert whole and all(p["cpu_millicores"] == pytest.approx(truth, rel=0.01) for p in whole)
    named = client.get("/api/series/", {"kind": "namespace", "name": ["ops", "shop"], "window": 7200, "step": 300})
    assert [s["name"] for s in named.json()["series"]] == ["ops", "shop"]


def test_fields_limit_the_points_to_those_fields_with_the_same_values(cluster, client, settings):
    settings.ALLOW_ANONYMOUS_READS = True
    start = (cluster["first"] + timedelta(minutes=5)).isoformat()
    end = (cluster["first"] + timedelta(minutes=35)).isoformat()
    for step in (45, 60):
        params = {"kind": "deployment", "namespace": "shop", "start": start, "end": end, "step": step}
        full = client.get("/api/series/", params).json()["series"][0]["points"]
        few = client.get("/api/series/", params | {"fields": "memory_working_set_bytes,cpu_millicores"}).json()
        points = few["series"][0]["points"]
        assert set(points[0]) == {"time", "coverage", "cpu_millicores", "memory_working_set_bytes"}
        assert points == [{k: p[k] for k in points[0]} for p in full]
        assert any(p["cpu_millicores"] for p in points)


def test_one_request_without_a_namespace_returns_every_namespaces_deployments(cluster, client, settings):
    settings.ALLOW_ANONYMOUS_READS = True
    start = (cluster["first"] + timedelta(minutes=5)).isoformat()
    end = (cluster["first"] + timedelta(minutes=35)).isoformat()
    params = {"kind": "deployment", "start": start, "end": end, "step": 60}
    body = client.get("/api/series/", params).json()
    assert [(s["namespace"], s["name"]) for s in body["series"]] == [("ops", "mon"), ("shop", "web")]
    one = client.get("/api/series/", params | {"namespace": "shop"}).json()["series"][0]
    assert body["series"][1]["points"] == one["points"]


@pytest.mark.parametrize("params, field", [
    ({"window": 600}, "kind"),
    ({"kind": "cow", "window": 600}, "kind"),
    ({"kind": "pod"}, "window"),
    ({"kind": "pod", "window": 600}, "namespace"),
    ({"kind": "namespace", "window": -5}, "window"),
    ({"kind": "namespace", "window": 600, "fields": "cpu_millicores,cpu_bogus"}, "fields"),
])
def test_a_bad_many_series_request_is_a_400_naming_the_parameter(db, client, settings, params, field):
    settings.ALLOW_ANONYMOUS_READS = True
    response = client.get("/api/series/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_a_pods_containers_are_served_with_latest_usage_and_exact_series(db, client, settings):
    from metrics.models import Container, ContainerSample

    settings.ALLOW_ANONYMOUS_READS = True
    now = timezone.now()
    node = make_node("node-c")
    pod = make_pod("api-0", "shop", node)
    app = Container.objects.create(pod=pod, name="app", container_id="c1", image="shop/api:1", first_seen=now, last_seen=now)
    side = Container.objects.create(pod=pod, name="sidecar", container_id="c2", image="envoy:1", first_seen=now, last_seen=now)
    first = series._floor(now - timedelta(minutes=30), 60)
    rows = []
    for container, cores in ((app, 0.5), (side, 0.05)):
        rows += [
            ContainerSample(
                time=t, interval_seconds=15, container=container, pod=pod, cpu_seconds=cores * 15,
                memory_working_set_bytes=64 * 1024**2, disk_read_bytes=0, disk_write_bytes=0,
            )
            for t in _samples(first, series._floor(now, 15) - timedelta(seconds=15), 15)
        ]
    ContainerSample.objects.bulk_create(rows)
    response = client.get("/api/namespaces/shop/pods/api-0/containers/", {"window": 1200, "step": 45})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [c["name"] for c in body] == ["app", "sidecar"]
    assert body[0]["usage"]["cpu_millicores"] == pytest.approx(500)
    assert body[0]["series"]["source"] == "raw"
    whole = [p for p in body[0]["series"]["points"] if p["coverage"] == pytest.approx(1.0)]
    assert len(whole) > 10 and all(p["cpu_millicores"] == pytest.approx(500) for p in whole)
    assert client.get("/api/namespaces/shop/pods/nope/containers/").status_code == 404
