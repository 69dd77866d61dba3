"""/api/summary/ and /api/statistics/: counts from the inventory, use from the rollups."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from metrics import optional, series, statistics, summary
from metrics.models import ApiToken, Cluster
from metrics.tests.factories import GiB, MiB, make_node, make_node_samples, make_pod, make_pod_samples
from metrics.tokens import create_token


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _tick(now: datetime, step: int = 10) -> datetime:
    return series.EPOCH + timedelta(seconds=(now - series.EPOCH).total_seconds() // step * step)


def _node(name: str, first: datetime, last: datetime, **kwargs):
    node = make_node(name, seen=last, **kwargs)
    node.first_seen = first
    node.save()
    return node


def _node_until(name: str, end: datetime, interval: float, **kwargs):
    """A node whose newest interval ends at `end`, with ten minutes of samples before it."""
    node = _node(name, end - timedelta(minutes=10), end)
    make_node_samples(node, end - timedelta(minutes=10), end, interval, **kwargs)
    return node


# --- summary --------------------------------------------------------------------------------------


def test_a_node_is_not_reporting_after_three_missed_intervals_of_its_own_collector(db):
    now = timezone.now()
    _node_until("fresh", now - timedelta(seconds=5), 10)
    _node_until("missed-two", now - timedelta(seconds=25), 10)
    _node_until("missed-three", now - timedelta(seconds=35), 10)
    # A 60 s collector may be quiet for 150 s and still be reporting.
    _node_until("slow", now - timedelta(seconds=150), 60)
    _node_until("gone", now - timedelta(hours=1), 10)
    nodes = summary.summary(now)["clusters"][0]["nodes"]
    assert nodes["total"] == 5
    assert nodes["not_reporting_names"] == ["gone", "missed-three"]
    assert nodes["reporting"] == 3 and nodes["not_reporting"] == 2


def test_the_summary_sets_the_newest_minute_against_capacity_limits_and_requests(db):
    now = timezone.now()
    end = _tick(now)
    start = end - timedelta(minutes=10)
    a = _node("a", start, end, cpu_capacity_cores=8, memory_total_bytes=32 * GiB)
    b = _node("b", start, end, cpu_capacity_cores=8, memory_total_bytes=32 * GiB)
    make_node_samples(a, start, end, 10, cpu_cores=2.0, memory_bytes=4 * GiB)
    make_node_samples(b, start, end, 10, cpu_cores=3.0, memory_bytes=6 * GiB)
    limited = make_pod(a, "web-1", namespace="shop", deployment="web", cpu_limit_cores=2.0,
                       memory_limit_bytes=200 * MiB, seen=end)
    free = make_pod(b, "job-1", namespace="ops", seen=end)
    make_pod_samples(limited, start, end, 10, cpu_cores=0.5, memory_bytes=100 * MiB)
    make_pod_samples(free, start, end, 10, cpu_cores=0.25, memory_bytes=50 * MiB)
    block = summary.summary(now)["clusters"][0]
    assert block["name"] == "default"
    assert block["pods"]["total"] == 2
    assert ("phases" in block["pods"]) == optional.pod_has("phase")
    assert ("model_servers" in block) == optional.pod_has("model_server")
    usage = block["usage"]
    assert usage["coverage"] == pytest.approx(1.0)
    cpu, memory = usage["cpu"], usage["memory"]
    assert cpu["used_millicores"] == pytest.approx(5000)
    assert cpu["capacity_millicores"] == pytest.approx(16000)
    assert cpu["percent_of_capacity"] == pytest.approx(31.25)
    assert cpu["pods_used_millicores"] == pytest.approx(750)
    assert cpu["limits_millicores"] == pytest.approx(2000)
    assert cpu["pods_percent_of_limits"] == pytest.approx(25.0)
    assert memory["used_bytes"] == pytest.approx(10 * GiB)
    assert memory["percent_of_capacity"] == pytest.approx(100 * 10 / 64)
    assert memory["pods_used_bytes"] == pytest.approx(150 * MiB)
    assert memory["pods_percent_of_limits"] == pytest.approx(50.0)
    assert ("requests_millicores" in cpu) == optional.has_requests()
    assert "gpu" not in usage


def test_the_summary_shows_gpus_only_where_a_node_reports_one(db):
    now = timezone.now()
    end = _tick(now)
    _node_until("gpu-node", end, 10, gpu_utilization_percent=150.0, gpu_memory_bytes=20 * GiB)
    _node_until("cpu-node", end, 10)
    gpu = summary.summary(now)["clusters"][0]["usage"]["gpu"]
    assert gpu["nodes_with_gpu"] == 1
    assert gpu["utilization_percent_sum"] == pytest.approx(150.0)
    assert gpu["memory_used_bytes"] == 20 * GiB


def test_the_summary_answers_per_cluster_where_there_are_several(db):
    now = timezone.now()
    end = _tick(now)
    prod, dev = Cluster.objects.create(name="prod"), Cluster.objects.create(name="dev")
    for name, cluster, cores in (("p-1", prod, 2.0), ("p-2", prod, 2.0), ("d-1", dev, 1.0)):
        node = _node(name, end - timedelta(minutes=10), end)
        node.cluster = cluster
        node.save()
        make_node_samples(node, end - timedelta(minutes=10), end, 10, cpu_cores=cores)
        pod = make_pod(node, f"{name}-pod", seen=end)
        make_pod_samples(pod, end - timedelta(minutes=10), end, 10, cpu_cores=0.1)
    # The nodes were made in the default cluster (the model's default) and moved.
    Cluster.objects.filter(name="default").delete()
    blocks = {b["name"]: b for b in summary.summary(now)["clusters"]}
    assert set(blocks) == {"dev", "prod"}
    assert blocks["prod"]["nodes"]["total"] == 2 and blocks["dev"]["nodes"]["total"] == 1
    assert blocks["prod"]["pods"]["total"] == 2 and blocks["dev"]["pods"]["total"] == 1
    assert blocks["prod"]["usage"]["cpu"]["used_millicores"] == pytest.approx(4000)
    assert blocks["dev"]["usage"]["cpu"]["used_millicores"] == pytest.approx(1000)
    assert blocks["prod"]["usage"]["cpu"]["pods_used_millicores"] == pytest.approx(200)
    assert blocks["dev"]["usage"]["cpu"]["capacity_millicores"] == pytest.approx(8000)


def test_an_empty_installation_has_a_summary_with_nothing_in_it(reader):
    body = reader.get("/api/summary/").json()
    assert body["newest_sample"] is None
    (block,) = body["clusters"]
    assert block["nodes"]["total"] == 0 and block["pods"]["total"] == 0
    assert block["usage"]["cpu"]["used_millicores"] is None


def test_the_summary_needs_a_reader(db):
    assert Client().get("/api/summary/").status_code == 401


# --- statistics -----------------------------------------------------------------------------------


@pytest.fixture
def three_hours(db):
    """One 8-core node at 2 cores for three hours and the current one, with one minute at 6 cores
    in the middle hour; pods web-1 (shop/web, 1 core) and job-1 (ops, 0.5 core)."""
    now = timezone.now()
    hour = series.EPOCH + timedelta(hours=(now - series.EPOCH).total_seconds() // 3600)
    start, end = hour - timedelta(hours=3), _tick(now)
    spike = hour - timedelta(hours=2) + timedelta(minutes=30)

    def node_cpu(t: datetime) -> float:
        return 6.0 if spike <= t < spike + timedelta(minutes=1) else 2.0

    node = make_node("n1", cpu_capacity_cores=8, seen=end)
    node.first_seen = start
    node.save()
    make_node_samples(node, start, end, 10, cpu_cores=node_cpu, memory_bytes=4 * GiB)
    web = make_pod(node, "web-1", namespace="shop", deployment="web", seen=end)
    job = make_pod(node, "job-1", namespace="ops", seen=end)
    for pod in (web, job):
        pod.first_seen = start
        pod.save()
    make_pod_samples(web, start, end, 10, cpu_cores=1.0, memory_bytes=300 * MiB)
    make_pod_samples(job, start, end, 10, cpu_cores=0.5, memory_bytes=100 * MiB)
    return {"now": now, "hour": hour, "start": start}


def test_statistics_give_each_hours_average_and_peak_minute(three_hours):
    result = statistics.statistics(4, now=three_hours["now"])
    hours = result["cluster_hourly"]
    assert [h["time"] for h in hours] == [three_hours["start"] + timedelta(hours=i) for i in range(4)]
    full = hours[:3]
    assert all(h["coverage"] == pytest.approx(1.0) for h in full)
    assert full[0]["cpu_millicores"] == pytest.approx(2000)
    assert full[1]["cpu_millicores"] == pytest.approx((2 * 3540 + 6 * 60) / 3.6)
    assert full[1]["cpu_millicores_peak"] == pytest.approx(6000)
    assert full[0]["cpu_millicores_peak"] == pytest.approx(2000)
    assert full[2]["memory_working_set_bytes"] == pytest.approx(4 * GiB)
    # The current hour is still filling and says so.
    assert hours[3]["coverage"] is None or hours[3]["coverage"] < 1
    assert result["totals"]["cpu_millicores_peak"] == pytest.approx(6000)


def test_statistics_give_each_namespace_by_the_hour(three_hours):
    result = statistics.statistics(3, now=three_hours["now"])
    by_name = {n["name"]: n for n in result["namespaces"]}
    assert set(by_name) == {"ops", "shop"}
    full = [p for p in by_name["shop"]["hourly"] if p["coverage"] == pytest.approx(1.0)]
    assert len(full) == 2
    assert all(p["cpu_millicores"] == pytest.approx(1000) for p in full)
    assert by_name["ops"]["memory_working_set_bytes"] == pytest.approx(100 * MiB)


def test_statistics_rank_the_top_pods_and_deployments(three_hours):
    now = three_hours["now"]
    top = statistics.statistics(3, now=now)["top"]
    assert [p["name"] for p in top["pods_by_cpu"]] == ["web-1", "job-1"]
    assert [p["name"] for p in top["pods_by_memory"]] == ["web-1", "job-1"]
    assert [(d["namespace"], d["name"]) for d in top["deployments_by_cpu"]] == [("shop", "web")]
    window = statistics.window_for(3, now)
    # web-1 ran at 1 core for all of the window's elapsed time.
    assert top["pods_by_cpu"][0]["cpu_core_hours"] == pytest.approx(
        (timezone.now() - window.start).total_seconds() / 3600, rel=0.02
    )
    assert top["pods_by_cpu"][0]["cpu_millicores"] == pytest.approx(1000, rel=0.02)
    assert top["deployments_by_cpu"][0]["pods"] == 1


@pytest.mark.parametrize("hours", ["0", "8761", "-1", "ten", "1.5"])
def test_it_rejects_hours_outside_one_to_8760(reader, hours):
    response = reader.get("/api/statistics/", {"hours": hours})
    assert response.status_code == 400
    assert "hours" in response.json()


def test_it_rejects_an_unknown_cluster_for_statistics(reader):
    response = reader.get("/api/statistics/", {"cluster": "nope"})
    assert response.status_code == 400 and "cluster" in response.json()


def test_statistics_over_http_default_to_24_hours(reader, three_hours):
    body = reader.get("/api/statistics/").json()
    assert body["hours"] == 24 and len(body["cluster_hourly"]) == 24
    assert body["top"]["pods_by_cpu"][0]["name"] == "web-1"
    assert ("model_servers" in body) == optional.pod_has("model_server")
    # The view answers plain JSON; the shape is the one its serializer documents.
    from metrics.api.summary import ClusterHourSerializer, StatisticsSerializer, TopItemSerializer

    documented = set(StatisticsSerializer().fields) - ({"model_servers"} - set(body))
    assert set(body) == documented
    assert set(body["cluster_hourly"][0]) == set(ClusterHourSerializer().fields)
    assert set(body["top"]["pods_by_cpu"][0]) <= set(TopItemSerializer().fields)
    assert body["cluster_hourly"][0]["time"].endswith("Z")


# --- what other parts add to the inventory (run once they are installed) --------------------------


def _two_pods_now(now: datetime):
    end = _tick(now)
    start = end - timedelta(minutes=10)
    node = _node("a", start, end, cpu_capacity_cores=8, memory_total_bytes=32 * GiB)
    make_node_samples(node, start, end, 10, cpu_cores=2.0)
    pods = []
    for name, cores in (("web-1", 0.5), ("web-2", 0.25)):
        pod = make_pod(node, name, namespace="shop", deployment="web", seen=end)
        make_pod_samples(pod, start, end, 10, cpu_cores=cores, memory_bytes=100 * MiB)
        pods.append(pod)
    return pods


@pytest.mark.skipif(not optional.has_requests(), reason="the inventory records no requests yet")
def test_the_summary_sets_pods_against_their_requests(db):
    from metrics.models import Pod

    now = timezone.now()
    with_request, without = _two_pods_now(now)
    Pod.objects.filter(pk=with_request.pk).update(
        **{optional.CPU_REQUEST: 1.0, optional.MEMORY_REQUEST: 400 * MiB}
    )
    usage = summary.summary(now)["clusters"][0]["usage"]
    assert usage["cpu"]["requests_millicores"] == pytest.approx(1000)
    assert usage["cpu"]["requests_percent_of_capacity"] == pytest.approx(12.5)
    # Only the pod with a request counts against it: 500 m of 1000 m.
    assert usage["cpu"]["pods_percent_of_requests"] == pytest.approx(50.0)
    assert usage["memory"]["pods_percent_of_requests"] == pytest.approx(25.0)


@pytest.mark.skipif(not (optional.pod_has("phase") and optional.pod_has("ready")), reason="no pod phase yet")
def test_the_summary_counts_pods_by_phase_and_readiness(db):
    from metrics.models import Pod

    now = timezone.now()
    running, pending = _two_pods_now(now)
    Pod.objects.filter(pk=running.pk).update(**{"phase": "Running", "ready": True})
    Pod.objects.filter(pk=pending.pk).update(**{"phase": "Pending", "ready": False})
    pods = summary.summary(now)["clusters"][0]["pods"]
    assert pods["phases"] == {"Running": 1, "Pending": 1}
    assert pods["ready"] == 1 and pods["not_ready"] == 1


@pytest.mark.skipif(optional.alert_model() is None, reason="alerting is not installed")
def test_the_summary_counts_firing_alerts_by_severity(db):
    model = optional.alert_model()
    assert model is not None
    rule_field = model._meta.get_field("rule")
    rule = rule_field.related_model._default_manager.first()  # type: ignore[union-attr]
    if rule is None:
        pytest.skip("no alert rule installed to hang instances on")
    now = timezone.now()
    for i, (state, severity) in enumerate((("firing", "critical"), ("firing", "warning"),
                                           ("firing", "warning"), ("resolved", "critical"))):
        model._default_manager.create(
            rule=rule, fingerprint=f"{i:016x}", labels={}, annotations={}, state=state,
            severity=severity, started_at=now, last_true_at=now,
        )
    alerts = summary.summary(now)["alerts"]
    assert alerts == {"critical": 1, "warning": 2, "info": 0, "total": 3}


def test_statistics_of_one_cluster_count_only_its_nodes_and_pods(db):
    now = timezone.now()
    hour = series.EPOCH + timedelta(hours=(now - series.EPOCH).total_seconds() // 3600)
    start, end = hour - timedelta(hours=2), _tick(now)
    prod, dev = Cluster.objects.create(name="prod"), Cluster.objects.create(name="dev")
    for name, cluster, cores in (("p-1", prod, 1.0), ("d-1", dev, 0.25)):
        node = _node(name, start, end)
        node.cluster = cluster
        node.save()
        make_node_samples(node, start, end, 10, cpu_cores=2 * cores)
        # The same namespace in both clusters.
        pod = make_pod(node, f"{name}-web", namespace="shop", seen=end)
        pod.first_seen = start
        pod.save()
        make_pod_samples(pod, start, end, 10, cpu_cores=cores)
    result = statistics.statistics(2, now=now, cluster=prod)
    assert result["cluster"] == "prod"
    full = [h for h in result["cluster_hourly"] if h["coverage"] == pytest.approx(1.0)]
    assert full and all(h["cpu_millicores"] == pytest.approx(2000) for h in full)
    (shop,) = result["namespaces"]
    assert [p["cpu_millicores"] for p in shop["hourly"] if p["coverage"] == pytest.approx(1.0)] == [
        pytest.approx(1000)
    ]
    assert [p["name"] for p in result["top"]["pods_by_cpu"]] == ["p-1-web"]
    both = statistics.statistics(2, now=now)
    (shop_all,) = both["namespaces"]
    assert shop_all["hourly"][0]["cpu_millicores"] == pytest.approx(1250)
