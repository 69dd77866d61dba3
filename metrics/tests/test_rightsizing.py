"""Right-sizing: percentiles of the 1-minute averages against requests or limits, and the rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from metrics import optional, rightsizing, series
from metrics.models import ApiToken
from metrics.tests.factories import GiB, MiB, make_node, make_node_samples, make_pod, make_pod_samples
from metrics.tokens import create_token

HOURS = 2


@pytest.fixture
def reader(db) -> Client:
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _minute(t: datetime) -> int:
    return int((t - series.EPOCH).total_seconds() // 60)


def percentile(values: list[float], q: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def cpu_of(offset: int):
    # Constant within each minute, so each minute's average is exactly this value.
    return lambda t: 0.1 + 0.01 * ((_minute(t) + offset) % 50)


def memory_of(offset: int):
    return lambda t: (200 + 3 * ((_minute(t) + offset) % 40)) * MiB


@pytest.fixture
def web(db):
    """Deployment shop/web: two pods for two hours, limits 2 cores and 1 GiB, one OOM kill."""
    now = timezone.now()
    end = series.EPOCH + timedelta(seconds=(now - series.EPOCH).total_seconds() // 60 * 60)
    start = end - timedelta(hours=HOURS)
    node = make_node("n1", seen=now)
    make_node_samples(node, start, now, 10)
    pods = []
    for i, offset in enumerate((0, 17)):
        pod = make_pod(node, f"web-{i}", namespace="shop", deployment="web", cpu_limit_cores=2.0,
                       memory_limit_bytes=GiB, seen=now)
        oom = (lambda t: 1 if t == start + timedelta(minutes=30) else 0) if i == 0 else 0
        make_pod_samples(
            pod, start, end, 10, cpu_cores=cpu_of(offset), memory_bytes=memory_of(offset),
            # 10 % throttled both ways the answer may count it (periods, or CPU time).
            cpu_throttled_seconds=lambda t, o=offset: cpu_of(o)(t) * 10 * 0.1,
            cpu_throttled_periods=10, cpu_periods=100, oom_kills=oom,
        )
        pods.append(pod)
    minutes = [start + timedelta(minutes=m) for m in range(HOURS * 60)]
    return {
        "now": now,
        "cpu": [cpu_of(o)(t) for o in (0, 17) for t in minutes],
        "memory": [memory_of(o)(t) for o in (0, 17) for t in minutes],
        "pods": pods,
    }


def test_a_deployment_report_has_percentiles_of_its_replicas_minutes(web, reader):
    body = reader.get("/api/namespaces/shop/deployments/web/rightsizing/", {"window": 3 * 3600}).json()
    assert body["kind"] == "deployment" and body["replicas"] == 2
    assert body["minutes"] == 2 * HOURS * 60
    cpu, memory = body["cpu"], body["memory"]
    assert cpu["p50_millicores"] == pytest.approx(percentile(web["cpu"], 0.5) * 1000)
    assert cpu["p95_millicores"] == pytest.approx(percentile(web["cpu"], 0.95) * 1000)
    assert cpu["max_millicores"] == pytest.approx(max(web["cpu"]) * 1000)
    assert memory["p95_bytes"] == pytest.approx(percentile(web["memory"], 0.95))
    assert memory["max_bytes"] == pytest.approx(max(web["memory"]))
    assert cpu["limit_millicores"] == pytest.approx(2000)
    assert cpu["p95_percent_of_limit"] == pytest.approx(percentile(web["cpu"], 0.95) * 100 / 2)
    assert memory["max_percent_of_limit"] == pytest.approx(max(web["memory"]) * 100 / GiB)
    assert memory["oom_kills"] == 1
    assert cpu["throttled_percent"] == pytest.approx(10.0)


def test_without_requests_the_limits_are_the_basis_and_the_answer_says_so(web, reader):
    body = reader.get("/api/namespaces/shop/deployments/web/rightsizing/").json()
    assert body["requests_recorded"] == optional.has_requests()
    if not optional.has_requests():
        assert body["cpu"]["basis"] == body["memory"]["basis"] == "limit"
        assert body["cpu"]["request_millicores"] is None


def test_the_recommendation_follows_the_stated_rule(web, reader):
    body = reader.get("/api/namespaces/shop/deployments/web/rightsizing/").json()
    assert "p95 x 1.15" in body["rule"] and "max x 1.3" in body["rule"]
    rec = body["recommendation"]
    cpu_request = percentile(web["cpu"], 0.95) * 1000 * 1.15
    assert rec["cpu_request_millicores"] == pytest.approx(cpu_request)
    assert rec["cpu_limit_millicores"] is None
    memory_request = percentile(web["memory"], 0.95) * 1.15
    assert rec["memory_request_bytes"] == pytest.approx(memory_request)
    # An OOM kill in the window: the limit is raised to at least 1.5 x the current one.
    assert rec["memory_limit_bytes"] == pytest.approx(max(max(web["memory"]) * 1.3, 1.5 * GiB))
    if body["cpu"]["basis"] == "limit":
        assert rec["cpu_change_per_replica_millicores"] == pytest.approx(cpu_request - 2000)
        assert rec["cpu_change_millicores"] == pytest.approx((cpu_request - 2000) * 2)
        assert rec["memory_change_bytes"] == pytest.approx((memory_request - GiB) * 2)


def test_a_pod_report_covers_only_that_pod(web, reader):
    body = reader.get("/api/namespaces/shop/pods/web-1/rightsizing/").json()
    assert body["kind"] == "pod" and body["replicas"] == 1 and body["minutes"] == HOURS * 60
    own = web["cpu"][HOURS * 60:]
    assert body["cpu"]["p95_millicores"] == pytest.approx(percentile(own, 0.95) * 1000)
    assert body["memory"]["oom_kills"] == 0


def test_too_little_data_gives_no_recommendation_and_says_why(db):
    now = timezone.now()
    node = make_node("n1", seen=now)
    pod = make_pod(node, "new-1", namespace="shop", deployment="new", seen=now)
    make_pod_samples(pod, now - timedelta(minutes=20), now, 10)
    report = rightsizing.for_pods(pod.__class__.objects.filter(deployment="new"), 3600, now)
    assert report["recommendation"] is None
    assert "at least 60" in report["no_recommendation_reason"]


def test_the_waste_list_puts_the_most_over_provisioned_first(web, reader):
    now = web["now"]
    end = series.EPOCH + timedelta(seconds=(now - series.EPOCH).total_seconds() // 60 * 60)
    node = web["pods"][0].node
    for name, limit, cores in (("idle", 4.0, 0.05), ("tight", 0.2, 0.19)):
        pod = make_pod(node, f"{name}-0", namespace="ops", deployment=name, cpu_limit_cores=limit,
                       memory_limit_bytes=512 * MiB, seen=now)
        make_pod_samples(pod, end - timedelta(hours=HOURS), end, 10, cpu_cores=cores, memory_bytes=100 * MiB)
    body = reader.get("/api/rightsizing/", {"window": 3 * 3600, "sort": "cpu"}).json()
    names = [r["name"] for r in body["results"]]
    # idle frees 4000 - 57.5 m on one replica, web about 2 x (2000 - 850) m on two.
    assert names == ["idle", "web", "tight"]
    assert body["deployments"] == 3
    tight = body["results"][-1]["recommendation"]
    if body["results"][-1]["cpu"]["basis"] == "limit":
        assert tight["cpu_change_millicores"] == pytest.approx(190 * 1.15 - 200)
    assert body["cpu_freed_millicores"] > 0
    assert [r["name"] for r in reader.get("/api/rightsizing/", {"sort": "share"}).json()["results"]][-1] == "tight"


@pytest.mark.parametrize("params,field", [
    ({"window": "59"}, "window"), ({"window": "x"}, "window"), ({"window": str(10**9)}, "window"),
    ({"sort": "size"}, "sort"), ({"limit": "0"}, "limit"),
])
def test_it_rejects_bad_parameters_naming_them(reader, params, field):
    response = reader.get("/api/rightsizing/", params)
    assert response.status_code == 400 and field in response.json()


def test_an_unknown_deployment_or_pod_is_a_404(reader):
    assert reader.get("/api/namespaces/shop/deployments/nope/rightsizing/").status_code == 404
    assert reader.get("/api/namespaces/shop/pods/nope/rightsizing/").status_code == 404


@pytest.mark.skipif(not optional.has_requests(), reason="the inventory records no requests yet")
def test_with_requests_the_request_is_the_basis(web, reader):
    from metrics.models import Pod

    Pod.objects.filter(deployment="web").update(
        **{optional.CPU_REQUEST: 0.5, optional.MEMORY_REQUEST: 256 * MiB}
    )
    body = reader.get("/api/namespaces/shop/deployments/web/rightsizing/").json()
    assert body["cpu"]["basis"] == body["memory"]["basis"] == "request"
    assert body["cpu"]["p95_percent_of_request"] == pytest.approx(percentile(web["cpu"], 0.95) * 100 / 0.5)
    cpu_request = percentile(web["cpu"], 0.95) * 1000 * 1.15
    assert body["recommendation"]["cpu_change_millicores"] == pytest.approx((cpu_request - 500) * 2)
