"""Model-server series are the catalogue's: two vLLM replicas of one Deployment on a 10 s and a
15 s node, and a standalone SGLang pod, with data starting and ending mid-minute, read their known
rates exactly at raw steps (spread by overlap) and at rollup steps (1m / 1h), before and after a
refresh, and late serving samples invalidate the rollups they fall in."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from metrics import backend, rollups, series
from metrics.models import ApiToken, NodeSample, Pod, ServingSample
from metrics.rollup_schema import ENTITY
from metrics.tests.factories import NodeBatches, reset_rollups
from metrics.tests.ingest_helpers import post
from metrics.tests.read_helpers import GiB, make_node, make_pod
from metrics.tokens import create_token

STEPS = [10, 45, 60, 300, 3600]
SOURCE = {10: "raw", 45: "raw", 60: "1m", 300: "1m", 3600: "1h"}

# Per replica, per second: prompt tokens, generation tokens, requests; gauges running, waiting,
# KV cache %; TTFT mean and p95. Whole numbers per 10 s and per 15 s interval.
RATES: dict[str, dict[str, float]] = {
    "llama-1": dict(prompt=50, generation=20, requests=0.6, running=3, waiting=1, kv=40, ttft=0.2, p95=0.5),
    "llama-2": dict(prompt=40, generation=12, requests=0.4, running=2, waiting=0, kv=70, ttft=0.5, p95=0.9),
    "sg-0": dict(prompt=10, generation=30, requests=0.2, running=1, waiting=2, kv=25, ttft=0.1, p95=0.3),
}


def _truth(pods: list[str]) -> dict[str, float]:
    r = [RATES[p] for p in pods]
    requests = sum(x["requests"] for x in r)
    return {
        "prompt_tokens_per_second": sum(x["prompt"] for x in r),
        "generation_tokens_per_second": sum(x["generation"] for x in r),
        "requests_per_second": requests,
        "requests_running": sum(x["running"] for x in r),
        "requests_waiting": sum(x["waiting"] for x in r),
        "kv_cache_usage_percent": sum(x["kv"] for x in r) / len(r),
        "ttft_mean_seconds": sum(x["ttft"] * x["requests"] for x in r) / requests,
        "ttft_p95_seconds": max(x["p95"] for x in r),
        "replicas": float(len(r)),
    }


def _times(start: datetime, end: datetime, step: int):
    t = start
    while t < end:
        yield t
        t += timedelta(seconds=step)


def _serving_rows(pod: Pod, start: datetime, end: datetime, step: int) -> list[ServingSample]:
    r = RATES[pod.name]
    requests = round(r["requests"] * step)
    return [
        ServingSample(
            time=t, interval_seconds=step, pod=pod, node_id=pod.node_id, namespace=pod.namespace,
            deployment=pod.deployment, model_server=pod.model_server, model_name=pod.model_name,
            requests_running=r["running"], requests_waiting=r["waiting"], kv_cache_usage_percent=r["kv"],
            prompt_tokens=round(r["prompt"] * step), generation_tokens=round(r["generation"] * step),
            requests_succeeded=requests, preemptions=0,
            ttft_seconds_sum=r["ttft"] * requests, ttft_count=requests, ttft_p95_seconds=r["p95"],
        )
        for t in _times(start, end, step)
    ]


@pytest.fixture
def servers(db) -> dict[str, Any]:
    now = timezone.now()
    # Both collectors start at :30 past an hour's first minute and stop three hours later: whole
    # hours in between, half-covered first and last minutes.
    first = series._floor(now - timedelta(hours=4), 3600) + timedelta(seconds=30)
    last = first + timedelta(hours=3)
    a = make_node("gpu-10s", cpu_cores=8)
    b = make_node("gpu-15s", cpu_cores=8)
    interval = {a.pk: 10, b.pk: 15}
    pods = {
        "llama-1": make_pod("llama-1", "ai", a, deployment="llama"),
        "llama-2": make_pod("llama-2", "ai", b, deployment="llama"),
        "sg-0": make_pod("sg-0", "ai", b),
    }
    make_pod("web-0", "ai", a, deployment="web")  # not a server: no serving samples
    for name, pod in pods.items():
        pod.model_server = "sglang" if name == "sg-0" else "vllm"
        pod.model_name = "m"
        pod.save(update_fields=["model_server", "model_name"])
    rows: list[ServingSample] = []
    for pod in pods.values():
        rows += _serving_rows(pod, first, last, interval[pod.node_id])
    ServingSample.objects.bulk_create(rows, batch_size=2000)
    NodeSample.objects.bulk_create(
        NodeSample(
            time=t, interval_seconds=interval[node.pk], node=node, cpu_seconds=1.0 * interval[node.pk],
            memory_working_set_bytes=GiB, cpu_capacity_cores=8, memory_total_bytes=node.memory_total_bytes,
        )
        for node in (a, b)
        for t in _times(first, last, interval[node.pk])
    )
    token = create_token("reader", ApiToken.Scope.READ)[1]
    return {"first": first, "last": last, "pods": pods, "now": now,
            "client": Client(HTTP_AUTHORIZATION=f"Bearer {token}")}


def _series(servers: dict[str, Any], path: str, step: int) -> dict[str, Any]:
    params = {
        "start": (servers["first"] - timedelta(hours=1)).isoformat(),
        "end": (servers["last"] + timedelta(hours=1)).isoformat(), "step": step,
    }
    response = servers["client"].get(path, params)
    assert response.status_code == 200, response.content
    return response.json()["series"]


def _check(servers: dict[str, Any], body: dict[str, Any], pods: list[str], step: int) -> int:
    truth = _truth(pods)
    whole = 0
    for point in body["points"]:
        start = datetime.fromisoformat(point["time"].replace("Z", "+00:00"))
        end = start + timedelta(seconds=step)
        if servers["first"] <= start and end <= servers["last"]:
            whole += 1
            for name, value in truth.items():
                assert point[name] == pytest.approx(value, rel=1e-9), (step, start, name)
            assert point["prompt_tokens"] == pytest.approx(truth["prompt_tokens_per_second"] * step, rel=1e-9)
            assert point["coverage"] == pytest.approx(1.0), (step, start)
            assert not point["restarts"]  # null where no interval starts in the bucket
        elif point["prompt_tokens_per_second"] is not None:
            right = point["prompt_tokens_per_second"] == pytest.approx(truth["prompt_tokens_per_second"], rel=1e-9)
            assert right or point["coverage"] < 0.999, (step, start, point)
        elif end > servers["first"] and start < servers["last"]:
            raise AssertionError(f"no data in a bucket the data overlaps ({start}, step {step})")
    return whole


@pytest.mark.django_db
@pytest.mark.parametrize("step", STEPS)
def test_a_deployments_series_reads_its_replicas_true_rates_at_any_step(servers, step):
    body = _series(servers, "/api/model-servers/ai/llama/", step)
    assert body["source"] == SOURCE[step] and body["step"] == step
    assert _check(servers, body, ["llama-1", "llama-2"], step) >= 2


@pytest.mark.django_db
@pytest.mark.parametrize("step", STEPS)
def test_a_standalone_pods_series_reads_its_own_rates_at_any_step(servers, step):
    body = _series(servers, "/api/model-servers/ai/sg-0/?kind=pod", step)
    assert _check(servers, body, ["sg-0"], step) >= 2


@pytest.mark.django_db
def test_a_step_of_45_s_spreads_15_s_samples_over_the_buckets_they_overlap(servers):
    # 45 s buckets start at every third 15 s tick but cut 10 s samples in half: only spreading
    # by overlap reads 90 prompt tokens/s in every whole bucket of llama-1 and llama-2 together.
    body = _series(servers, "/api/model-servers/ai/llama/", 45)
    whole = [p for p in body["points"] if p["coverage"] == pytest.approx(1.0)]
    assert len(whole) > 100 and all(p["prompt_tokens"] == pytest.approx(90 * 45, rel=1e-9) for p in whole)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", [60, 3600])
def test_refreshed_serving_rollups_read_the_same_exact_series(servers, step):
    reset_rollups()
    result = rollups.refresh(now=servers["now"])
    assert not result.poisoned
    if backend.storage_tier() != "tsl":
        # The buckets are materialized now: the series reads the _mat tables below the watermark.
        with connection.cursor() as cursor:
            for name in ("serving", "serving_deployment", "serving_namespace"):
                cursor.execute(f"SELECT count(*) FROM {ENTITY[name].relation('1h')}_mat")
                assert cursor.fetchone()[0] >= 3, name
    body = _series(servers, "/api/model-servers/ai/llama/", step)
    assert _check(servers, body, ["llama-1", "llama-2"], step) >= 2
    body = _series(servers, "/api/model-servers/ai/sg-0/?kind=pod", step)
    assert _check(servers, body, ["sg-0"], step) >= 2
    namespace = series.series(
        series.Entity("serving_namespace", ("ai",)),
        series.resolve_window(start=servers["first"], end=servers["last"], step=step, now=servers["now"]),
        now=servers["now"], fields=series.SERVING_FIELDS,
    )
    whole = [p for p in namespace if p["coverage"] == pytest.approx(1.0)]
    assert whole and all(
        p["generation_tokens_per_second"] == pytest.approx(_truth(list(RATES))["generation_tokens_per_second"])
        for p in whole
    )
    reset_rollups()


@pytest.mark.django_db(transaction=True)
def test_a_late_serving_sample_is_rolled_up_at_the_next_refresh(client, ingest_token):
    reset_rollups()
    rollups.refresh()  # the watermark and invalidation threshold move to about a minute ago
    # A batch ten minutes late, whose serving block covers two ticks (a late scrape): the
    # invalidated range must reach back to the serving sample's start, in the minute before the
    # batch's own (:50 to :10).
    end = rollups.floor_to(timezone.now() - timedelta(minutes=10), timedelta(minutes=1)) + timedelta(seconds=10)
    batch = NodeBatches("gpu-late", pods=1, seed=3).batch(end)
    pod = batch["pods"][0]
    pod.update(deployment="late", model_server="vllm", model_name="m", serving={
        "interval_seconds": 20.0, "prompt_tokens": 400, "generation_tokens": 200, "requests_succeeded": 4,
    })
    assert post(client, ingest_token, batch).status_code == 201, "ingest"
    rollups.refresh()
    start = rollups.floor_to(end - timedelta(seconds=20), timedelta(minutes=1))
    window = series.resolve_window(start=start, end=end + timedelta(minutes=1), step=60)
    assert window.source == "1m"
    points = series.series(
        series.Entity("serving_deployment", (pod["namespace"], "late")), window, fields=series.SERVING_FIELDS
    )
    assert sum(p["generation_tokens"] or 0 for p in points) == pytest.approx(200)
    if backend.storage_tier() != "tsl":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT sum(generation_tokens) FROM {ENTITY['serving_deployment'].relation('1m')}_mat "
                "WHERE deployment = 'late'"
            )
            assert cursor.fetchone()[0] == pytest.approx(200)
    reset_rollups()


def test_retention_applies_to_the_serving_rollups_and_samples():
    from metrics import retention

    relations = retention.relations()
    for name in ("serving", "serving_namespace", "serving_deployment"):
        assert ENTITY[name].relation("1m") in relations["1m"], name
        assert ENTITY[name].relation("1h") in relations["1h"], name
    assert "metrics_servingsample" in relations["raw"]
